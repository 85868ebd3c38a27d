"""The sessions column: search, pick, rename, new, duplicate, delete; and share, export, import, fork.

Every handler that changes which session is open returns (session id, the dropdown, the title); the
notebook follows the session id's change event.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from playground.errors import InvalidInput
from playground.sharing import EXPORT_FORMATS, is_share_token, new_share_token, parse_import, render_export

from .common import listen, owner_of
from .views import EXAMPLES

FIRST_SESSION_TITLE = "My first session"
CONFIRM_DELETE_JS = "(sid, _c) => [sid, confirm('Delete this session and all its runs? This cannot be undone.')]"


@dataclass
class SessionControls:
    """The components other panels read or write: the open session's id, the list, the title."""

    sid: gr.State
    dropdown: gr.Dropdown
    title: gr.Textbox

    @property
    def opened(self) -> list:
        return [self.sid, self.dropdown, self.title]


def session_choices(store, owner: str, query: str = "") -> list[tuple[str, str]]:
    return [(f"{s.title} · {s.updated_at:%Y-%m-%d %H:%M}", s.id) for s in store.list_sessions(owner, query)]


def opened(store, owner: str, session) -> tuple:
    """What every handler that opens a session returns (SessionControls.opened)."""
    return session.id, gr.Dropdown(choices=session_choices(store, owner), value=session.id), session.title


def sessions_panel(store, secret: bytes) -> SessionControls:
    """The session picker and its buttons (inside the page's left column)."""
    sid = gr.State(None)
    search_box = gr.Textbox(label="Search sessions", placeholder="title or prompt text")
    dropdown = gr.Dropdown([], label="Sessions", elem_id="sessions")
    title = gr.Textbox(label="Title", elem_id="session-title")
    with gr.Row():
        new_btn = gr.Button("New", size="sm")
        dup_btn = gr.Button("Duplicate", size="sm")
        del_btn = gr.Button("Delete", size="sm", variant="stop")
    confirm_flag = gr.Checkbox(visible=False)
    controls = SessionControls(sid, dropdown, title)

    def switch(session_id, request: gr.Request):
        if not session_id:
            return gr.skip(), gr.skip()
        session = store.get_session(owner_of(request, secret), session_id)
        return session_id, session.title

    listen(dropdown.input, switch, dropdown, [sid, title])

    def search(query, request: gr.Request):
        return gr.Dropdown(choices=session_choices(store, owner_of(request, secret), query or ""))

    listen(search_box.input, search, search_box, dropdown, trigger_mode="always_last")

    def rename(session_id, text, request: gr.Request):
        owner = owner_of(request, secret)
        store.rename_session(owner, session_id, text)
        return gr.Dropdown(choices=session_choices(store, owner), value=session_id)

    listen([title.submit, title.blur], rename, [sid, title], dropdown)

    def create_new(request: gr.Request):
        owner = owner_of(request, secret)
        s = store.create_session(owner)
        store.add_cell(owner, s.id)
        return opened(store, owner, s)

    listen(new_btn.click, create_new, None, controls.opened, api_name="create_new")

    def duplicate(session_id, request: gr.Request):
        owner = owner_of(request, secret)
        return opened(store, owner, store.duplicate_session(owner, session_id))

    listen(dup_btn.click, duplicate, sid, controls.opened)

    def delete(session_id, confirmed, request: gr.Request):
        if not confirmed:
            return gr.skip(), gr.skip(), gr.skip()
        owner = owner_of(request, secret)
        store.delete_session(owner, session_id)
        remaining = store.list_sessions(owner)
        return opened(store, owner, remaining[0] if remaining else store.create_session(owner))

    listen(del_btn.click, delete, [sid, confirm_flag], controls.opened, js=CONFIRM_DELETE_JS)
    return controls


def open_first(store, secret: bytes, request: gr.Request) -> tuple:
    """The session a page load opens: ?session=… when it is the visitor's, else their latest, else a
    new one with an example cell."""
    owner = owner_of(request, secret)
    wanted = request.query_params.get("session") if request else None
    sessions = store.list_sessions(owner)
    chosen = next((s for s in sessions if s.id == wanted), None) or (sessions[0] if sessions else None)
    if chosen is None:
        chosen = store.create_session(owner, FIRST_SESSION_TITLE)
        store.add_cell(owner, chosen.id, prompt=EXAMPLES["Arithmetic"])
    return opened(store, owner, chosen)


def share_panel(store, secret: bytes, controls: SessionControls) -> None:
    """Read-only links, exports, imports and forks of the open session."""
    with gr.Accordion("Share, import, fork", open=False, elem_id="share-panel"):
        share_btn = gr.Button("Create a read-only link", size="sm", elem_id="share-btn")
        revoke_btn = gr.Button("Revoke this session's links", size="sm")
        share_md = gr.Markdown(elem_id="share-link")
        export_fmt = gr.Radio(list(EXPORT_FORMATS), value="json", label="Export format")
        export_btn = gr.Button("Export this session", size="sm", elem_id="export-btn")
        export_file = gr.File(label="Exported file", interactive=False, elem_id="export-file")
        import_file = gr.File(label="Import a JSON export", file_types=[".json"], type="binary", elem_id="import-file")
        fork_box = gr.Textbox(label="Fork a shared link", placeholder="paste a /s/… link")
        fork_btn = gr.Button("Fork into my sessions", size="sm")
    sid = controls.sid

    def share(session_id, request: gr.Request):
        token = store.create_share(owner_of(request, secret), session_id, new_share_token())
        host = request.headers.get("host", "127.0.0.1")
        scheme = request.headers.get("x-forwarded-proto", "http")
        url = f"{scheme}://{host}/s/{token}"
        return f"Read-only link (anyone with it can read this session): [{url}]({url})"

    listen(share_btn.click, share, sid, share_md)

    def revoke(session_id, request: gr.Request):
        owner = owner_of(request, secret)
        shares = [x for x in store.list_shares(owner, session_id) if x.revoked_at is None]
        for x in shares:
            store.revoke_share(owner, x.token)
        return f"Revoked {len(shares)} link(s)."

    listen(revoke_btn.click, revoke, sid, share_md)

    def export(session_id, fmt, request: gr.Request):
        """The export as a file to download (through gradio, so it works with login on too)."""
        body, _media, filename = render_export(store.get_session(owner_of(request, secret), session_id), fmt)
        path = Path(tempfile.mkdtemp(prefix="export-")) / filename
        path.write_text(body, encoding="utf-8")
        return str(path)

    listen(export_btn.click, export, [sid, export_fmt], export_file)

    def import_session(data, request: gr.Request):
        if data is None:
            return gr.skip(), gr.skip(), gr.skip()
        owner = owner_of(request, secret)
        return opened(store, owner, store.import_sessions(owner, [parse_import(data)])[0])

    listen(import_file.upload, import_session, import_file, controls.opened)

    def fork(link, request: gr.Request):
        owner = owner_of(request, secret)
        token = (link or "").strip().rstrip("/").rsplit("/s/", 1)[-1].split("/")[0].split("?")[0]
        if not is_share_token(token):
            raise InvalidInput("That is not a share link: paste a link that looks like …/s/<token>.")
        return opened(store, owner, store.fork_session(owner, share_token=token))

    listen(fork_btn.click, fork, fork_box, controls.opened, api_name="fork")
