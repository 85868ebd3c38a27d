"""Every handler of the page answers a failure with a readable message, and the queue patch names the
gradio version it was checked against.

The app is the real one (create_app on a real SQLite store), served in this process on 127.0.0.1 and
called over gradio's HTTP API as the page calls it (private handlers included, by name). The fault is
injected: a store whose writes fail the way a full disk or a bug would make them fail.
"""

from __future__ import annotations

import logging

import gradio as gr
import httpx
import pytest

from bench.common import free_port
from playground.app.service import Playground
from playground.config import Settings
from playground.errors import StoreFull
from playground.sharing.schema import new_share_token
from playground.store import open_store
from playground.store.store import SessionStore
from playground.ui.app import TESTED_GRADIO, create_app, enable_queue

pytestmark = pytest.mark.timeout(120)

DISK_FULL = "The disk that holds the database is full: free some space (test fault)."


class FaultyStore(SessionStore):
    """The real store, except that creating a session fails: with our error, or with a bug's."""

    fault: Exception = StoreFull(DISK_FULL)

    def create_session(self, owner, title="Untitled"):
        raise self.fault


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    home = tmp_path_factory.mktemp("handlers")
    real = open_store(home / "playground.db")
    store = FaultyStore(real.engine)
    demo = create_app(Playground(Settings(home=home)), store, b"s" * 32)
    enable_queue(demo, 1, 16)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield demo, store, f"http://127.0.0.1:{port}"
    finally:
        demo.close()
        real.close()


def call(url: str, api_name: str, *data) -> str:
    """One call of a named handler over gradio's HTTP API; the server-sent events it answered with."""
    r = httpx.post(f"{url}/gradio_api/call/{api_name}", json={"data": list(data)}, timeout=30)
    assert r.status_code == 200, r.text
    return httpx.get(f"{url}/gradio_api/call/{api_name}/{r.json()['event_id']}", timeout=30).text


def test_every_handler_has_the_error_wrapper(app):
    demo, _store, _url = app
    unguarded = [f"{f.name} ({f.api_name})" for f in demo.fns.values()
                 if f.fn is not None and not getattr(f.fn, "guarded", False)
                 and type(getattr(f.fn, "__self__", None)).__name__ != "Renderable"]  # gradio's own re-render
    assert unguarded == []


def test_a_failing_store_call_shows_its_message_not_a_bare_error(app):
    _demo, store, url = app
    store.fault = StoreFull(DISK_FULL)
    events = call(url, "create_new")
    assert "event: error" in events and DISK_FULL in events, events


def test_a_bug_is_reported_as_one_and_the_server_keeps_serving(app):
    _demo, store, url = app
    store.fault = KeyError("lanes")
    events = call(url, "create_new")
    assert "event: error" in events and "Unexpected error (KeyError)" in events and "bug" in events, events
    # A share link the store does not know: the store's own message, through the same wrapper.
    events = call(url, "fork", f"http://127.0.0.1/s/{new_share_token()}")
    assert "event: error" in events and "does not exist or was revoked" in events, events
    assert httpx.get(f"{url}/gradio_api/info", timeout=10).status_code == 200


def test_the_queue_patch_warns_when_gradio_is_not_the_tested_release(monkeypatch, caplog):
    with gr.Blocks() as demo:
        gr.Markdown("x")
    with caplog.at_level(logging.WARNING, logger="playground.ui.app"):
        enable_queue(demo, 1, 4)
    assert gr.__version__ != TESTED_GRADIO or not caplog.records  # the pinned release: silent
    caplog.clear()
    monkeypatch.setattr(gr, "__version__", "99.0.0")
    with caplog.at_level(logging.WARNING, logger="playground.ui.app"):
        enable_queue(demo, 1, 4)
    assert any("99.0.0" in r.getMessage() and TESTED_GRADIO in r.getMessage() for r in caplog.records), caplog.text
