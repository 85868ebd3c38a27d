"""Entry point: `python app.py` serves the playground (what `make run` and a Hugging Face Space run)."""

from playground.server import serve

if __name__ == "__main__":
    serve()
