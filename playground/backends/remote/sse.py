"""One lane's streaming request, in its own thread: server-sent events, or a whole-JSON answer.

Everything the lane receives goes on the run's queue as (kind, lane, payload, receipt time):
"open" (the response started), "delta" ((reasoning, content) text), "usage" (the server's token
counts) and exactly one "end" ((status, finish reason, error)). Times are taken when each chunk
ARRIVES here, so network time is included.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time

import httpx

from playground.backends.remote.client import (
    MAX_RETRY_AFTER_S,
    STREAM_CUT,
    RemoteConfig,
    error_detail,
    retry_after_s,
    status_message,
    transport_message,
)
from playground.backends.remote.requests import OPTIONAL_FIELDS
from playground.config import safe_url

log = logging.getLogger(__name__)


def stream_lane(cfg: RemoteConfig, lane: str, body: dict, q: queue.Queue, stop: threading.Event,
                dropped: set[str]) -> None:
    """One lane's request in its own thread; always ends with exactly one ("end", ...) on the queue.
    An optional field the server rejects by name goes into `dropped`, so later runs leave it out."""
    url = cfg.base_url + "/chat/completions"
    end = ("error", "error", f"The {lane} lane's request ended without a result: this is a bug.")
    waited: float | None = None
    dropped_once = False
    try:
        with httpx.Client(timeout=cfg.timeout()) as client:
            while True:
                if stop.is_set():  # stopped before the request went out (a newer run replaced this one)
                    end = ("stopped", "stopped", None)
                    return
                with client.stream("POST", url, json=body, headers=cfg.headers()) as resp:
                    if resp.status_code == 200:
                        q.put(("open", lane, None, time.perf_counter()))
                        if "application/json" in resp.headers.get("content-type", ""):
                            end = read_whole(cfg, resp, lane, q)
                        else:
                            end = read_sse(cfg, resp, lane, q, stop)
                        return
                    text = resp.read().decode("utf-8", errors="replace")
                if resp.status_code == 429 and waited is None:
                    waited = retry_after_s(resp.headers)
                    if waited <= MAX_RETRY_AFTER_S:
                        if stop.wait(waited):
                            end = ("stopped", "stopped", None)
                            return
                        continue
                if resp.status_code in (400, 422) and not dropped_once:
                    rejected = [f for f in OPTIONAL_FIELDS if f in body and f in text]
                    if rejected:  # an optional field this server does not take: ask again without it
                        dropped_once = True
                        dropped.update(rejected)
                        body = {k: v for k, v in body.items() if k not in rejected}
                        log.info("%s rejected %s: retrying without", safe_url(cfg.base_url), ", ".join(rejected))
                        continue
                end = ("error", "error", status_message(cfg, resp.status_code, text, "/chat/completions",
                                                        waited if resp.status_code == 429 else None))
                return
    except httpx.HTTPError as exc:
        end = ("stopped", "stopped", None) if stop.is_set() else ("error", "error", transport_message(cfg, exc))
    except Exception as exc:  # reported as the lane's error, never raised into the server
        end = ("error", "error", f"Remote request failed: {type(exc).__name__}: {cfg.scrub(str(exc))}")
    finally:
        q.put(("end", lane, end, time.perf_counter()))


def read_whole(cfg: RemoteConfig, resp: httpx.Response, lane: str, q: queue.Queue):
    """A server that ignores stream=true answers with one JSON completion: one chunk, timed at its arrival."""
    try:
        obj = json.loads(resp.read())
        choice = obj["choices"][0]
        message = choice.get("message") or {}
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return ("error", "error", f"{safe_url(cfg.base_url)} answered 200 with JSON that is not a chat completion: "
                                  "is this an OpenAI-compatible /chat/completions endpoint?")
    t = time.perf_counter()
    if isinstance(obj.get("usage"), dict):
        q.put(("usage", lane, obj["usage"], t))
    reasoning = message.get("reasoning_content") or message.get("reasoning") or ""
    content = message.get("content") or ""
    if reasoning or content:
        q.put(("delta", lane, (str(reasoning), str(content)), t))
    finish = choice.get("finish_reason") or "stop"
    return ("done", "stop" if finish in ("stop", "eos") else str(finish), None)


def read_sse(cfg: RemoteConfig, resp: httpx.Response, lane: str, q: queue.Queue, stop: threading.Event):
    """Queue each chunk's (reasoning, content) with its receipt time; return the lane's end."""
    finish = None
    for line in resp.iter_lines():
        t = time.perf_counter()
        if stop.is_set():
            return ("stopped", "stopped", None)
        if not line.startswith("data:"):
            continue  # blank separators, ": keep-alive" comments, "event:" lines
        data = line[5:].strip()
        if data == "[DONE]":
            break
        try:
            obj = json.loads(data)
        except ValueError:
            return ("error", "error", f"{safe_url(cfg.base_url)} sent a stream line that is not JSON: is this an "
                                      "OpenAI-compatible /chat/completions endpoint?")
        if not isinstance(obj, dict):
            continue
        if obj.get("error"):
            return ("error", "error", f"The server reported an error mid-stream{error_detail(cfg, data)}. The text "
                                      "received so far is kept.")
        if isinstance(obj.get("usage"), dict):
            q.put(("usage", lane, obj["usage"], t))
        choices = obj.get("choices") or []
        if choices and isinstance(choices[0], dict):
            delta = choices[0].get("delta") or {}
            reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
            content = delta.get("content") or ""
            if reasoning or content:
                q.put(("delta", lane, (str(reasoning), str(content)), t))
            finish = choices[0].get("finish_reason") or finish
    if finish is None:
        return ("error", "error", STREAM_CUT.format(where=safe_url(cfg.base_url)))
    return ("done", "stop" if finish in ("stop", "eos") else str(finish), None)
