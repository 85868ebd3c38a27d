"""Talking to an OpenAI-compatible server: the endpoint's settings, its errors worded once, its model list.

The API key lives only in this process's memory (a `RemoteConfig` field with no repr); it is sent as
a header and never written to a record, a log line or an error message (`scrub`).
"""

from __future__ import annotations

import base64
import email.utils
import json
import time
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

import httpx

from playground.backends.remote.requests import SWITCHES
from playground.config import normalize_base_url, safe_url
from playground.errors import InvalidInput, PlaygroundError

# Named limits, each checked once.
DEFAULT_TIMEOUT_S = 120.0
MAX_TIMEOUT_S = 3600.0
CONNECT_TIMEOUT_S = 10.0  # a refused or unroutable address should not wait the whole request timeout
MAX_RETRY_AFTER_S = 60.0  # a 429 asking for a longer wait ends the run instead of hanging it
DEFAULT_RETRY_AFTER_S = 1.0  # a 429 without Retry-After is retried once after this
MAX_ERROR_DETAIL_CHARS = 300


class RemoteError(PlaygroundError):
    """The endpoint could not be used; the message names the cause and the fix."""


def check_timeout(value) -> float:
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"The request timeout {value!r} is not a number of seconds.") from None
    if not 1 <= t <= MAX_TIMEOUT_S:
        raise InvalidInput(f"The request timeout {value!r} is out of range: use 1–{MAX_TIMEOUT_S:.0f} seconds.")
    return t


@dataclass(frozen=True)
class RemoteConfig:
    base_url: str
    model: str = ""
    api_key: str | None = field(default=None, repr=False)  # never printed, logged or stored
    timeout_s: float = DEFAULT_TIMEOUT_S
    switch: str = "auto"
    key_source: str = "none"  # where the key came from, for the footer: "PLAYGROUND_REMOTE_API_KEY" | "typed"
    basic_auth: tuple[str, str] | None = field(default=None, repr=False)

    def __post_init__(self):
        base = normalize_base_url(self.base_url)
        parts = urlsplit(base)
        if parts.username or parts.password:
            # user:password@ in the URL becomes basic auth, so the URL httpx logs carries no credential.
            object.__setattr__(self, "basic_auth", (unquote(parts.username or ""), unquote(parts.password or "")))
            base = safe_url(base)
        object.__setattr__(self, "base_url", base)
        object.__setattr__(self, "timeout_s", check_timeout(self.timeout_s))
        object.__setattr__(self, "model", (self.model or "").strip())
        if self.switch not in SWITCHES:
            raise InvalidInput(f"Unknown reasoning switch {self.switch!r}: use one of {', '.join(SWITCHES)}.")
        if self.api_key is not None and not self.api_key.strip():
            object.__setattr__(self, "api_key", None)

    def headers(self) -> dict[str, str]:
        h = {"Accept": "text/event-stream, application/json"}
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        elif self.basic_auth:
            h["Authorization"] = "Basic " + base64.b64encode(":".join(self.basic_auth).encode()).decode()
        return h

    def timeout(self) -> httpx.Timeout:
        # read= is the longest silence between two chunks: a server that stops answering ends the run.
        return httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, CONNECT_TIMEOUT_S))

    def scrub(self, text: str) -> str:
        """Remove the key from text that came from the server (some echo it in their error messages)."""
        for secret in (self.api_key, self.basic_auth[1] if self.basic_auth else None):
            if secret:
                text = text.replace(secret, "***")
        return text


# --- errors, worded once ------------------------------------------------------------------------------


def error_detail(cfg: RemoteConfig, body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    msg = body
    if isinstance(data, dict):
        err = data.get("error")
        msg = ((err.get("message") if isinstance(err, dict) else err) or data.get("detail") or data.get("message")
               or body)
    msg = cfg.scrub(str(msg)).strip().replace("\n", " ")
    if len(msg) > MAX_ERROR_DETAIL_CHARS:
        msg = msg[:MAX_ERROR_DETAIL_CHARS] + "…"
    return f": “{msg}”" if msg else ""


def status_message(cfg: RemoteConfig, status: int, body: str, path: str, waited: float | None = None) -> str:
    where = f"{safe_url(cfg.base_url)}{path}"
    d = error_detail(cfg, body)
    if status in (401, 403):
        return (f"The endpoint refused the API key (HTTP {status} from {where}){d}. Set PLAYGROUND_REMOTE_API_KEY "
                "to a key this server accepts, or type it in the model panel.")
    if status == 404:
        return (f"HTTP 404 from {where}{d}: the server does not know the model {cfg.model!r}, or the base URL is "
                "wrong (OpenAI-compatible servers answer under /v1). Test connection lists the server's models.")
    if status == 429:
        after = f" and again after waiting {waited:.0f} s as it asked" if waited is not None else ""
        return (f"The endpoint is rate limiting (HTTP 429 from {where}){after}{d}. Wait a minute and run again, "
                "or ask the provider for a higher limit.")
    if status in (400, 422):
        return (f"The endpoint rejected the request (HTTP {status} from {where}){d}. If it names "
                "chat_template_kwargs, pick the 'system_prompt' reasoning switch in the model panel.")
    return (f"The endpoint failed (HTTP {status} from {where}){d}. Check the server's log; some servers (transformers "
            f"serve) answer 500 for a model they cannot load: is {cfg.model!r} one that Test connection lists?")


def transport_message(cfg: RemoteConfig, exc: Exception) -> str:
    where = safe_url(cfg.base_url)
    if isinstance(exc, httpx.ConnectTimeout):
        return (f"Could not connect to {where} within {min(cfg.timeout_s, CONNECT_TIMEOUT_S):.0f} s: check the "
                "address and that the server is reachable from this machine.")
    if isinstance(exc, httpx.ConnectError):
        return (f"Could not connect to {where} ({cfg.scrub(str(exc)) or 'connection refused'}): check that the server "
                "is running and the base URL, host and port are right.")
    if isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout)):
        return (f"No data from {where} for {cfg.timeout_s:.0f} s (the request timeout): the server may be overloaded "
                "or still loading the model. Raise the timeout (PLAYGROUND_REMOTE_TIMEOUT_S or the panel) or check "
                "the server.")
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
        return (f"The connection to {where} broke mid-stream ({type(exc).__name__}): the server may have crashed or "
                "a proxy cut the stream. The text received so far is kept.")
    return f"The request to {where} failed: {type(exc).__name__}: {cfg.scrub(str(exc))}"


STREAM_CUT = ("The stream from {where} ended before the server said it had finished (no finish_reason): the "
              "server may have crashed or a proxy cut the connection. The text received so far is kept.")


def retry_after_s(headers) -> float:
    """Seconds from a Retry-After header (seconds or an HTTP date); DEFAULT_RETRY_AFTER_S without one."""
    raw = headers.get("retry-after")
    if not raw:
        return DEFAULT_RETRY_AFTER_S
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(raw).timestamp() - time.time())
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER_S


def list_models(cfg: RemoteConfig) -> list[str]:
    """The ids the server lists at /models (the connection test). Raises RemoteError naming the cause."""
    try:
        with httpx.Client(timeout=cfg.timeout()) as client:
            resp = client.get(cfg.base_url + "/models", headers=cfg.headers())
    except httpx.HTTPError as exc:
        raise RemoteError(transport_message(cfg, exc)) from None
    if resp.status_code != 200:
        raise RemoteError(status_message(cfg, resp.status_code, resp.text, "/models"))
    try:
        data = resp.json().get("data") or []
        return [str(m["id"]) for m in data if isinstance(m, dict) and "id" in m]
    except (ValueError, AttributeError):
        raise RemoteError(f"{safe_url(cfg.base_url)}/models did not answer with an OpenAI model list: is this an "
                          "OpenAI-compatible server?") from None
