"""The HTTP server: the Gradio app mounted at / next to plain routes (/healthz)."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from .config import Settings
from .service import Playground

log = logging.getLogger(__name__)


def build_server(pg: Playground) -> FastAPI:
    import gradio as gr

    from .ui import create_app

    api = FastAPI(title="Reasoning playground", docs_url=None, redoc_url=None)

    @api.get("/healthz")
    def healthz() -> dict:
        return {"ok": True, "model": pg.loaded.model_id if pg.loaded else None}

    demo = create_app(pg)
    # One generation at a time on the model: runs share the "gpu" pool and wait their turn.
    demo.queue(default_concurrency_limit=1, max_size=pg.settings.queue_size)
    return gr.mount_gradio_app(api, demo, path="/")


def serve(settings: Settings | None = None) -> None:
    import uvicorn

    settings = settings or Settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    pg = Playground(settings)
    log.info("home folder %s", settings.home)
    loaded = pg.load(settings.model, settings.quant, progress=lambda f, m: log.info("%3.0f%% %s", f * 100, m))
    log.info("%s", pg.footer().replace("**", ""))
    app = build_server(pg)
    log.info("serving on http://%s:%d", settings.host, settings.port)
    del loaded
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                timeout_graceful_shutdown=2)
