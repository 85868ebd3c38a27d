"""The HTTP server: the Gradio app mounted at / next to plain routes (/healthz).

A middleware gives every visitor a signed owner cookie on first contact: that cookie is what
makes sessions theirs (no login needed), and it is HttpOnly so page scripts cannot read it.
Every response names the replica that answered (REPLICA_HEADER, and /healthz's "replica"):
behind a load balancer that is how an operator checks that sessions stick.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from playground.app.service import Playground
from playground.app.startup import log_startup
from playground.config import Settings, load_settings
from playground.web.identity import COOKIE_MAX_AGE_S, COOKIE_NAME, load_secret, new_owner_id, sign, verify
from playground.web.metrics import Telemetry, gradio_queue

log = logging.getLogger(__name__)

# The page shows untrusted text (model output, prompts of imported or forked sessions): whatever
# might slip past the Markdown sanitizer still cannot make a visitor's browser load an image or
# media from another host (a tracking pixel, or a URL carrying the page's text out). Share pages
# set their own, stricter policy.
APP_CSP = "img-src 'self' data: blob:; media-src 'self' data: blob:"
REPLICA_HEADER = "x-playground-replica"


def build_server(pg: Playground, store, secret: bytes) -> FastAPI:
    from playground.ui import mount_page
    from playground.web.routes import add_share_routes

    api = FastAPI(title="Reasoning playground", docs_url=None, redoc_url=None)

    login_on = pg.settings.login_on
    replica = pg.settings.replica_id

    @api.middleware("http")
    async def owner_cookie(request: Request, call_next):
        path = request.url.path
        if login_on and (path.startswith("/api/") or (path.startswith("/s/") and path.endswith("/fork"))):
            # With login on, only share pages stay open; the page itself does share, export, import and
            # fork through gradio, behind the login, as the logged-in user.
            return JSONResponse({"error": "Log in first: this playground requires a login."}, status_code=401)
        response = await call_next(request)
        if verify(request.cookies.get(COOKIE_NAME), secret) is None and request.method == "GET" \
                and request.url.path in ("/", ""):
            response.set_cookie(COOKIE_NAME, sign(new_owner_id(), secret), max_age=COOKIE_MAX_AGE_S,
                                httponly=True, samesite="lax")
        response.headers.setdefault("content-security-policy", APP_CSP)
        response.headers[REPLICA_HEADER] = replica
        return response

    @api.get("/healthz")
    def healthz() -> dict:
        return {"ok": True, "model": pg.model_name(), "backend": pg.backend.kind if pg.backend else None,
                "replica": replica, "database": "postgresql" if store.postgres else "sqlite"}

    telemetry = add_metrics_route(api, pg, store)
    # Before gradio is mounted at "/": routes match in order, and its mount would take every path.
    add_share_routes(api, store, secret)
    app = mount_page(api, pg, store, secret)
    if telemetry is not None:
        queue = gradio_queue(app)
        telemetry.watch(queue_depth=lambda: len(queue) if queue is not None else float("nan"),
                        queue_active=lambda: queue.get_active_worker_count() if queue is not None else float("nan"),
                        active_rows=lambda: store.running_count(replica))
    return app


def add_metrics_route(api: FastAPI, pg: Playground, store) -> Telemetry | None:
    """GET /metrics (Prometheus text) when the settings allow it, else a 404 like any unknown path."""
    telemetry = Telemetry(pg.settings.replica_id) if pg.settings.metrics_on else None
    if telemetry is not None:
        store.listener = telemetry

    @api.get("/metrics")
    def metrics():
        if telemetry is None:
            return JSONResponse({"error": "Not found: metrics are off (PLAYGROUND_METRICS)."}, 404)
        if pg.loaded is not None:  # read now: a model loaded from the page counts too
            telemetry.model_loaded(pg.model_name() or "unknown", pg.loaded.load_seconds)
        body, media_type = telemetry.render()
        return Response(body, media_type=media_type)

    return telemetry


def serve(settings: Settings | None = None) -> None:
    import uvicorn

    from playground.store import ReplicaLease, default_target, describe, open_store

    settings = settings or load_settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    log_startup(settings, log)
    pg = Playground(settings)
    target = default_target()
    store = open_store(target, replica=settings.replica_id)
    interrupted = recover_runs(store, settings.replica_id)
    lease = ReplicaLease(store.engine, settings.replica_id, settings.replica_lease_s)
    interrupted += lease.start()  # and what replicas that died meanwhile left running
    log.info("home %s, database %s (%d interrupted run(s) recovered)", settings.home, describe(target), interrupted)
    try:
        if settings.remote_url:
            # Runs go to the operator's endpoint; no local model is loaded (the panel can still load one).
            pg.use_remote(resolve=False)
        else:
            pg.load(settings.model, settings.quant, progress=lambda f, m: log.info("%3.0f%% %s", f * 100, m))
        log.info("%s", pg.footer().replace("**", ""))
        app = build_server(pg, store, load_secret(settings.home))
        log.info("serving on http://%s:%d as replica %s", settings.host, settings.port, settings.replica_id)
        uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                    timeout_graceful_shutdown=2)
    finally:
        lease.stop()


def recover_runs(store, replica: str) -> int:
    """Runs a dead server left "running" become "interrupted". SQLite: one server per file, so every
    running run is its dead predecessor's. PostgreSQL: other replicas' runs are live; only this
    replica's own earlier ones (a restart under the same id), then what the lease reaps (dead ones')."""
    if not store.postgres:
        return store.mark_interrupted()
    return store.mark_interrupted(replica=replica)
