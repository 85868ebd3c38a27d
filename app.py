"""Entry point: `python app.py` serves the playground (what `make run`, the Dockerfile and a Hugging
Face Space run). Takes the same flags as `python -m playground serve`; with none, PLAYGROUND_*."""

from playground.config import apply_to_environ, parse_serve_args


def main() -> None:
    # Settings first, before the heavy imports: a bad value stops start-up in a moment with one line.
    settings = parse_serve_args()
    apply_to_environ(settings)
    from playground.web.server import serve

    serve(settings)


if __name__ == "__main__":
    main()
