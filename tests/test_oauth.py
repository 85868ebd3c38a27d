"""Sign in with Hugging Face: on a Space with `hf_oauth: true`, sessions belong to HF users.

The server is real and runs gradio's real OAuth routes and session middleware. hf.co cannot be
reached from here, so the one thing stood in for is the login itself: the test writes the signed
session cookie that gradio's /login/callback writes after Hugging Face says who the visitor is.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from bench.common import ServerProcess
from playground.config import Settings, load_settings

CLIENT_SECRET = "oauth-test-secret"
SPACE_ENV = {"SYSTEM": "spaces", "SPACE_ID": "user/playground", "SPACE_HOST": "user-playground.hf.space",
             "OAUTH_CLIENT_ID": "oauth-test-client", "OAUTH_CLIENT_SECRET": CLIENT_SECRET,
             "OAUTH_SCOPES": "openid profile", "OPENID_PROVIDER_URL": "https://huggingface.co",
             "PLAYGROUND_FETCH_EMBEDDED": "0"}


def session_cookie(username: str, secret: str = CLIENT_SECRET, expires_in: float = 3600) -> str:
    """The cookie gradio's OAuth callback sets: starlette's SessionMiddleware format, with gradio's key."""
    from itsdangerous import TimestampSigner

    session = {"oauth_info": {"access_token": "hf_x", "scope": "openid profile",
                              "expires_at": int(time.time() + expires_in),
                              "userinfo": {"preferred_username": username, "name": username.title()}}}
    signer = TimestampSigner(hashlib.sha256((secret + "-v4").encode()).hexdigest())
    return signer.sign(base64.b64encode(json.dumps(session).encode())).decode()


def client_as(server, cookie: str | None) -> Client:
    headers = {"Cookie": f"session={cookie}"} if cookie else None
    return Client(server.url, headers=headers, verbose=False)


@pytest.fixture(scope="module")
def oauth_server(tmp_path_factory, models_dir):
    home = tmp_path_factory.mktemp("oauth-home")
    (home / "models").symlink_to(models_dir, target_is_directory=True)
    srv = ServerProcess(home, env=SPACE_ENV)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def test_the_setting_follows_the_space_and_refuses_two_logins(monkeypatch):
    monkeypatch.delenv("OAUTH_CLIENT_ID", raising=False)
    assert not Settings().hf_oauth_on and not Settings().login_on
    monkeypatch.setenv("OAUTH_CLIENT_ID", "abc")
    assert Settings().hf_oauth_on and Settings().login_on
    assert not Settings(hf_oauth=False).hf_oauth_on
    monkeypatch.setenv("PLAYGROUND_AUTH", "ann:very-secret-pw")
    with pytest.raises(SystemExit) as exc:
        load_settings()
    msg = str(exc.value)
    assert "choose one" in msg and "very-secret-pw" not in msg and "\n" not in msg
    assert load_settings(hf_oauth="false").auth_pairs == [("ann", "very-secret-pw")]


def test_the_page_offers_sign_in_and_the_startup_log_says_so(oauth_server):
    config = httpx.get(oauth_server.url + "/config", timeout=10).json()
    assert any(c.get("props", {}).get("elem_id") == "hf-login" for c in config["components"])
    assert "login: Sign in with Hugging Face" in oauth_server.log_path.read_text()
    assert httpx.get(oauth_server.url + "/healthz").json()["ok"] is True


def test_a_visitor_who_has_not_signed_in_reaches_nothing(oauth_server):
    anon = client_as(oauth_server, None)
    for args, api in ((("notes",), "/new_session"), (("",), "/sessions")):
        with pytest.raises(AppError, match="Sign in with Hugging Face"):
            anon.predict(*args, api_name=api)
    with pytest.raises(AppError, match="Sign in with Hugging Face"):
        anon.predict("embedded", "nf4", "", api_name="/load")
    # A cookie signed with another key, or an expired login, is no login.
    for cookie in (session_cookie("ann", secret="guess"), session_cookie("ann", expires_in=-60)):
        with pytest.raises(AppError, match="Sign in with Hugging Face"):
            client_as(oauth_server, cookie).predict("", api_name="/sessions")
    assert httpx.post(oauth_server.url + "/api/import", json={}).status_code == 401
    assert httpx.get(oauth_server.url + "/s/" + "x" * 43).status_code == 404  # share pages stay open


def test_signed_in_users_each_see_only_their_own_sessions(oauth_server):
    ann = client_as(oauth_server, session_cookie("ann"))
    bob = client_as(oauth_server, session_cookie("bob"))
    mine = ann.predict("ann's notes", api_name="/new_session")
    assert [s["id"] for s in ann.predict("", api_name="/sessions")] == [mine["id"]]
    assert mine["id"] not in [s["id"] for s in bob.predict("", api_name="/sessions")]
    with pytest.raises(AppError):
        bob.predict(mine["id"], api_name="/get_session")
    # The same HF user from another browser (a fresh cookie) finds their sessions again.
    again = client_as(oauth_server, session_cookie("ann"))
    assert again.predict(mine["id"], api_name="/get_session")["id"] == mine["id"]
    from playground.store import open_store

    with open_store(oauth_server.home / "playground.db") as store:
        assert store.owner_of_session(mine["id"]) == "hf:ann"
