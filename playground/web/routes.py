"""HTTP routes for sharing: share links, the read-only page at /s/<token>, exports, import, fork.

`add_share_routes(api, store, secret)` adds them to the FastAPI app before gradio is mounted at
"/", so they win over gradio's catch-all. Who a visitor is comes from the signed owner cookie
(identity.owner_of); a request without one owns nothing here: owner-only routes answer 404,
as they do for someone else's session, and import/fork give it a fresh cookie. Every HTML
answer carries a strict Content-Security-Policy; anything wrong with a /s/ link is one plain 404.

    POST   /api/sessions/{id}/share        -> {"token", "url"}    (owner)
    GET    /api/sessions/{id}/shares       -> [{"token", "url", "created_at", "revoked_at"}] (owner)
    DELETE /api/shares/{token}             -> {"revoked": true}   (owner)
    GET    /api/sessions/{id}/export?format=json|md|html           (owner)
    POST   /api/import                     -> {"id"}  multipart file or raw JSON body
    GET    /s/{token}                      read-only page (anyone with the token)
    GET    /s/{token}/export?format=json|md|html
    POST   /s/{token}/fork                 -> {"id"}  a copy in the visitor's own sessions
    GET    /static/plotly.min.js, /static/share.js, /static/share.css
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from playground.errors import InvalidInput, NotFound, PlaygroundError
from playground.sharing import (
    MAX_IMPORT_BYTES,
    PLOTLY_JS,
    STATIC_DIR,
    ImportTooLarge,
    is_share_token,
    new_share_token,
    not_found_page,
    parse_import,
    render_export,
    share_csp,
    share_page,
)
from playground.web.identity import COOKIE_MAX_AGE_S, COOKIE_NAME, new_owner_id, owner_of, sign

SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
STATIC_FILES = {"plotly.min.js": PLOTLY_JS, "share.js": STATIC_DIR / "share.js", "share.css": STATIC_DIR / "share.css"}
STATIC_CACHE = "public, max-age=3600"
# What a missing or foreign session, and a dead share link, are told: neither says which it was.
NO_SESSION = "No such session: it was deleted, or it belongs to someone else."
NO_SHARE = "This share link does not exist or was revoked."


def _visitor(request: Request, secret: bytes) -> str | None:
    # owner_of gives a cookieless request "anon:none", which every such request would share:
    # here that means nobody.
    owner = owner_of(request, secret)
    return None if owner.startswith("anon:") else owner


def _html(body: str, nonce: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status, headers={**SECURITY_HEADERS, "Content-Security-Policy": share_csp(nonce),
                                               "Cache-Control": "no-store"})


def _not_found_page() -> HTMLResponse:
    return _html(not_found_page(), secrets.token_urlsafe(16), 404)


def _error(exc: Exception) -> JSONResponse:
    status = 413 if isinstance(exc, ImportTooLarge) else 404 if isinstance(exc, NotFound) else 400
    return JSONResponse({"error": str(exc)}, status, headers=SECURITY_HEADERS)


def _cross_site() -> JSONResponse:
    return JSONResponse({"error": "Cross-site request refused."}, 403)


def _same_origin(request: Request) -> bool:
    """Refuse a POST that another site's page sent (the cookie is SameSite=Lax already; this also
    stops such a page from making a visitor import or fork into a fresh identity). Browsers say
    where a request came from in Sec-Fetch-Site, which survives proxies that rewrite Host; older
    ones only send Origin. A client that sends neither (curl, the CLI) is not a browser."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host")


def _download(body: str, media_type: str, filename: str) -> Response:
    return Response(body, media_type=media_type, headers={
        **SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"})


async def _read_bounded(request: Request) -> bytes:
    """The request body, refused past MAX_IMPORT_BYTES before it is all read or parsed."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_IMPORT_BYTES:
        raise ImportTooLarge(f"The upload has {int(declared):,} bytes, over the limit of {MAX_IMPORT_BYTES:,} "
                             "(MAX_IMPORT_BYTES).")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_IMPORT_BYTES:
            raise ImportTooLarge(f"The upload is over the limit of {MAX_IMPORT_BYTES:,} bytes (MAX_IMPORT_BYTES).")
        chunks.append(chunk)
    return b"".join(chunks)


async def _import_payload(request: Request) -> bytes:
    body = await _read_bounded(request)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return body

    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    # The body is already in memory and bounded: parse it from there, not from the socket again.
    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=5, max_part_size=MAX_IMPORT_BYTES)
    except (HTTPException, MultiPartException) as exc:
        raise InvalidInput(f"The upload is not a readable form ({getattr(exc, 'detail', exc)}): send the export "
                           "as the field 'file'.") from None
    try:
        value = form.get("file") or next(iter(form.values()), None)
        if value is None:
            raise InvalidInput("The form has no file: send the export as the field 'file'.")
        return await value.read() if hasattr(value, "read") else value.encode()
    finally:
        await form.close()


def _static_route(path):
    def serve_file():
        return FileResponse(path, headers={**SECURITY_HEADERS, "Cache-Control": STATIC_CACHE})

    return serve_file


def _with_owner_cookie(response: Response, minted: str | None, secret: bytes) -> Response:
    if minted is not None:
        response.set_cookie(COOKIE_NAME, sign(minted, secret), max_age=COOKIE_MAX_AGE_S, httponly=True,
                            samesite="lax")
    return response


def _owner_or_new(request: Request, secret: bytes) -> tuple[str, str | None]:
    """(owner, minted): the visitor, or a fresh owner id (also as `minted`, to set as their cookie)."""
    owner = _visitor(request, secret)
    if owner is not None:
        return owner, None
    minted = new_owner_id()
    return minted, minted


def _shared_or_none(store, token: str):
    """The session behind a live share token; None for a malformed, unknown or revoked one."""
    if not is_share_token(token):
        return None
    try:
        return store.shared_session(token)
    except NotFound:
        return None


def add_share_routes(api: FastAPI, store, secret: bytes) -> None:
    # Routes match in the order they are added: the catch-all under /s/ stays the last of them.
    _add_share_link_routes(api, store, secret)
    _add_export_import_routes(api, store, secret)
    _add_static_routes(api)
    _add_shared_page_routes(api, store, secret)


def _add_share_link_routes(api: FastAPI, store, secret: bytes) -> None:
    """The owner's share links: create, list, revoke."""

    @api.post("/api/sessions/{session_id}/share")
    def create_share(session_id: str, request: Request):
        owner = _visitor(request, secret)
        if owner is None:
            return _error(NotFound(NO_SESSION))
        if not _same_origin(request):
            return _cross_site()
        try:
            token = store.create_share(owner, session_id, new_share_token())
        except PlaygroundError as exc:
            return _error(exc)
        return {"token": token, "url": f"/s/{token}"}

    @api.get("/api/sessions/{session_id}/shares")
    def list_shares(session_id: str, request: Request):
        owner = _visitor(request, secret)
        try:
            if owner is None:
                raise NotFound(NO_SESSION)
            shares = store.list_shares(owner, session_id)
        except PlaygroundError as exc:
            return _error(exc)
        return [{"token": s.token, "url": f"/s/{s.token}", "created_at": s.created_at.isoformat(),
                 "revoked_at": s.revoked_at.isoformat() if s.revoked_at else None} for s in shares]

    @api.delete("/api/shares/{token}")
    def revoke_share(token: str, request: Request):
        owner = _visitor(request, secret)
        if owner is None or not is_share_token(token):
            return _error(NotFound(NO_SHARE))
        if not _same_origin(request):
            return _cross_site()
        try:
            store.revoke_share(owner, token)
        except PlaygroundError as exc:
            return _error(exc)
        return {"revoked": True}


def _add_export_import_routes(api: FastAPI, store, secret: bytes) -> None:
    """The owner's export of a session, and import into the visitor's sessions."""

    @api.get("/api/sessions/{session_id}/export")
    def export_own(session_id: str, request: Request, format: str = "json"):
        owner = _visitor(request, secret)
        try:
            if owner is None:
                raise NotFound(NO_SESSION)
            return _download(*render_export(store.get_session(owner, session_id), format))
        except PlaygroundError as exc:
            return _error(exc)

    @api.post("/api/import")
    async def import_session(request: Request):
        if not _same_origin(request):
            return _cross_site()
        owner, minted = _owner_or_new(request, secret)
        try:
            session = parse_import(await _import_payload(request))
            info = (await run_in_threadpool(store.import_sessions, owner, [session]))[0]
        except PlaygroundError as exc:
            return _error(exc)
        return _with_owner_cookie(JSONResponse({"id": info.id}, headers=SECURITY_HEADERS), minted, secret)


def _add_static_routes(api: FastAPI) -> None:
    # One route per file, not /static/{name}: gradio serves its own files under /static/ too.
    for name, path in STATIC_FILES.items():
        api.add_api_route(f"/static/{name}", _static_route(path), methods=["GET"], include_in_schema=False)


def _add_shared_page_routes(api: FastAPI, store, secret: bytes) -> None:
    """What anyone holding a live token may do: read the page, export it, fork it."""

    @api.api_route("/s/{token}", methods=["GET", "HEAD"])
    def shared(token: str):
        session = _shared_or_none(store, token)
        if session is None:
            return _not_found_page()
        nonce = secrets.token_urlsafe(16)  # new per response: one learned from a page is useless on the next
        return _html(share_page(session, nonce), nonce)

    @api.get("/s/{token}/export")
    def export_shared(token: str, format: str = "json"):
        session = _shared_or_none(store, token)
        if session is None:
            return _not_found_page()
        try:
            return _download(*render_export(session, format))
        except PlaygroundError as exc:
            return _error(exc)

    @api.post("/s/{token}/fork")
    def fork_shared(token: str, request: Request):
        if not is_share_token(token):
            return _error(NotFound(NO_SHARE))
        if not _same_origin(request):
            return _cross_site()
        owner, minted = _owner_or_new(request, secret)
        try:
            info = store.fork_session(owner, share_token=token)
        except PlaygroundError as exc:
            return _error(exc)
        return _with_owner_cookie(JSONResponse({"id": info.id}, headers=SECURITY_HEADERS), minted, secret)

    # Anything else under /s/ (encoded slashes, "..", extra segments) gets the same plain 404
    # rather than falling through to gradio.
    @api.api_route("/s/{rest:path}", methods=["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"])
    def shared_other(rest: str):
        return _not_found_page()
