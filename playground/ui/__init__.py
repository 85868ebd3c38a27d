"""The only package that imports gradio."""

from .app import create_app, enable_queue

__all__ = ["create_app", "enable_queue"]
