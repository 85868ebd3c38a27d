"""`python -m playground …`: the command line in cli.py."""

from .cli import main

raise SystemExit(main())
