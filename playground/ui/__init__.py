"""The Gradio page: the only room that imports gradio. `mount_page` puts it on the server."""

from .app import create_app, enable_queue, mount_page

__all__ = ["create_app", "enable_queue", "mount_page"]
