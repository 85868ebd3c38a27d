"""A remote backend: the two lanes as two concurrent streaming requests to an OpenAI-compatible server.

vLLM, SGLang, TGI, `transformers serve` and hosted endpoints all speak `/v1/chat/completions` with
server-sent events. `RemoteBackend.start(...)` returns a `RemoteRun` that yields the same
`LaneUpdate`s into the same `LaneResult`s as the local engine, so nothing downstream knows which
one ran. Differences a user must know, and where they are said:
- timings are taken when each chunk ARRIVES here, so network time is included (record, footer);
- one chunk is one timing entry (token id -1); token counts come from the server's usage report,
  else the local tokenizer, else the chunk count, which is an estimate (`token_count_source`);
- a thinking budget cannot be enforced (it forces the closing tag inside generation): refused.
The API key lives only in this process's memory (a `RemoteConfig` field with no repr); it is sent
as a header and never written to a record, a log line or an error message.
"""

from __future__ import annotations

import email.utils
import json
import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

import httpx

from playground.config import normalize_base_url, safe_url
from playground.errors import InvalidInput, PlaygroundError
from playground.lanes import LaneResult, LaneSettings, LaneUpdate, add_text, add_token
from playground.prompting.catalog import PRESETS, Preset, guess_style
from playground.prompting.prompts import (
    GENERIC_THINKING_PROMPT,
    HERMES_THINKING_PROMPT,
    LanePrompt,
    _render,
    ends_inside_think,
)
from playground.prompting.reasoning import ThinkParser

log = logging.getLogger(__name__)

# Named limits, each checked once.
DEFAULT_TIMEOUT_S = 120.0
MAX_TIMEOUT_S = 3600.0
CONNECT_TIMEOUT_S = 10.0  # a refused or unroutable address should not wait the whole request timeout
MAX_RETRY_AFTER_S = 60.0  # a 429 asking for a longer wait ends the run instead of hanging it
DEFAULT_RETRY_AFTER_S = 1.0  # a 429 without Retry-After is retried once after this
MAX_ERROR_DETAIL_CHARS = 300
CHARS_PER_TOKEN_ESTIMATE = 4  # prompt size without any tokenizer: a rough English average

# How the reasoning lane switches reasoning on (and the standard lane keeps it off).
SWITCHES: dict[str, str] = {
    "auto": "pick by the model's family",
    "template_kwargs": "chat_template_kwargs thinking / enable_thinking (vLLM, SGLang, transformers serve)",
    "system_prompt": "a thinking system prompt in the reasoning lane (works on any server)",
    "soft_switch": "Qwen3's /think and /no_think appended to the prompt",
    "reasoning_field": "the request's reasoning.enabled (OpenRouter-style hosted APIs)",
    "always": "none: the model always reasons (DeepSeek-R1), both lanes reason",
}
AUTO_SWITCH = {"hermes": "system_prompt", "qwen3": "template_kwargs", "r1": "always", "generic": "system_prompt"}
# Sent when set; a server that rejects one by name (HTTP 400/422) gets the request again without it.
OPTIONAL_FIELDS = ("top_k", "min_tokens", "seed", "stream_options")
TIMING_NOTE = "timings are taken when each chunk arrives here: network time is included"


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
            from urllib.parse import unquote

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
            import base64

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


def _detail(cfg: RemoteConfig, body: str) -> str:
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
    d = _detail(cfg, body)
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


# --- the family: what to ask for in each lane ---------------------------------------------------------------


def preset_for_model(name: str) -> Preset | None:
    """A preset whose repo id or key the served model's name contains (e.g. '…/Hermes-4-405B-FP8')."""
    low = name.lower()
    for p in sorted(PRESETS.values(), key=lambda p: -len(p.repo_id)):
        if p.key == "embedded":
            continue
        if low == p.key or p.repo_id.lower() in low or p.repo_id.split("/")[-1].lower() in low:
            return p
    return None


def style_for_model(name: str) -> str:
    p = preset_for_model(name)
    return p.reasoning_style if p else guess_style(name)[1]


def _join(*parts: str | None) -> str:
    return "\n\n".join(p for p in parts if p)


def lane_request(style: str, switch: str, lane: str, prompt: str, system: str | None) -> tuple[list[dict], dict]:
    """(messages, chat_template_kwargs) for one lane (reasoning_field is set on the body, in _body)."""
    on = lane == "reasoning"
    system = system if system and system.strip() else None
    kwargs: dict = {}
    if switch == "template_kwargs":
        # Hermes templates read `thinking`, Qwen3's `enable_thinking`; a template ignores keys it does not use.
        kwargs = {"thinking": on, "enable_thinking": on}
        if on and style == "hermes" and system:
            # Hermes ignores thinking=True when a system message is present: the prompt goes first instead.
            system = _join(HERMES_THINKING_PROMPT, system)
    elif switch == "system_prompt" and on:
        system = _join(HERMES_THINKING_PROMPT if style == "hermes" else GENERIC_THINKING_PROMPT, system)
    elif switch == "soft_switch":
        prompt = f"{prompt} {'/think' if on else '/no_think'}"
    elif switch == "always":
        prompt, system = _join(system, prompt), None  # R1: no system prompt, instructions in the user turn
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    return messages, kwargs


# --- the backend ------------------------------------------------------------------------------------------


class RemoteBackend:
    """An OpenAI-compatible endpoint as a Backend. Runs do not hold `lock`: the server batches them."""

    kind = "remote"

    def __init__(self, cfg: RemoteConfig):
        self.cfg = cfg
        self.lock = threading.Lock()
        self.dropped_fields: set[str] = set()  # optional fields this server rejected once
        self.last_count_source: str = "unknown until the first run ends"
        self._tokenizer = None
        self._tokenizer_tried = False
        self._tok_lock = threading.Lock()

    @property
    def model(self) -> str:
        return self.cfg.model

    @property
    def preset(self) -> Preset | None:
        return preset_for_model(self.cfg.model)

    @property
    def style(self) -> str:
        return style_for_model(self.cfg.model)

    @property
    def switch(self) -> str:
        return AUTO_SWITCH[self.style] if self.cfg.switch == "auto" else self.cfg.switch

    def resolve_model(self) -> str:
        """The configured model, or the server's only model when none was named."""
        if not self.cfg.model:
            models = list_models(self.cfg)
            if len(models) != 1:
                raise RemoteError(f"{safe_url(self.cfg.base_url)} serves {len(models)} models "
                                  f"({', '.join(models[:10]) or 'none'}): name one (PLAYGROUND_REMOTE_MODEL or the "
                                  "model panel).")
            self.cfg = replace(self.cfg, model=models[0])
        return self.cfg.model

    def tokenizer(self):
        """The served model's tokenizer when it is on this machine (a local folder, a cached hub id), else None.
        Used to see whether the server's template opens <think> itself, and to count tokens without usage."""
        with self._tok_lock:
            if not self._tokenizer_tried:
                self._tokenizer_tried = True
                names = [self.cfg.model] + ([self.preset.repo_id] if self.preset else [])
                for name in names:
                    try:
                        from transformers import AutoTokenizer

                        self._tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=True)
                        break
                    except Exception:  # not on this machine: counts fall back to usage / estimates
                        continue
            return self._tokenizer

    def check_lanes(self, lanes: dict[str, LaneSettings]) -> None:
        for lane, s in lanes.items():
            if s.thinking_budget is not None:
                raise InvalidInput(f"{lane} lane: a thinking budget needs the local model (it forces the closing tag "
                                   "during generation); a remote endpoint cannot do that. Clear the budget, or lower "
                                   "max_new_tokens instead.")

    def start(self, prompt: str, system: str | None = None, lanes: dict[str, LaneSettings] | None = None) -> RemoteRun:
        lanes = lanes or {"standard": LaneSettings(), "reasoning": LaneSettings()}
        self.check_lanes(lanes)
        self.resolve_model()
        tok = self.tokenizer()
        requests, prompts = {}, {}
        for lane, s in lanes.items():
            messages, kwargs = lane_request(self.style, self.switch, lane, prompt, system)
            requests[lane] = self._body(messages, kwargs, s)
            if self.switch == "reasoning_field":
                requests[lane]["reasoning"] = {"enabled": lane == "reasoning"}
            prompts[lane] = self._lane_prompt(tok, lane, messages, kwargs)
        return RemoteRun(self, prompts, lanes, requests)

    def _body(self, messages: list[dict], kwargs: dict, s: LaneSettings) -> dict:
        body = {"model": self.cfg.model, "messages": messages, "stream": True, "max_tokens": s.max_new_tokens,
                "temperature": s.temperature, "top_p": s.top_p, "seed": s.seed,
                "stream_options": {"include_usage": True}}
        if s.top_k:
            body["top_k"] = s.top_k
        if s.min_new_tokens:
            body["min_tokens"] = s.min_new_tokens
        if kwargs:
            body["chat_template_kwargs"] = kwargs
        for f in self.dropped_fields:
            body.pop(f, None)
        return body

    def _lane_prompt(self, tok, lane: str, messages: list[dict], kwargs: dict) -> LanePrompt:
        """The prompt as the server will render it, where the template is here to render it; whether it
        ends inside <think> decides how the stream is parsed (an R1-style template opens the block)."""
        if tok is not None and getattr(tok, "chat_template", None):
            try:
                text, suffix = _render(tok, messages, **kwargs)
                ids = list(tok(text, add_special_tokens=False)["input_ids"])
                return LanePrompt(lane, text, ids, ends_inside_think(suffix), "")
            except Exception as exc:  # a template that fails here may still work on the server
                log.info("could not render %s's template locally: %s", self.cfg.model, exc)
        text = "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)
        return LanePrompt(lane, text, [], self.switch == "always", "")

    def describe(self) -> str:
        key = f"API key from {self.cfg.key_source}" if self.cfg.api_key else "no API key"
        model = self.cfg.model or "(the only one served)"
        return (f"Remote endpoint **{safe_url(self.cfg.base_url)}** · model **{model}**"
                f" · reasoning switch **{self.switch}** ({SWITCHES[self.switch]}) · {key} · {TIMING_NOTE}")

    def reproducibility_record(self, run: RemoteRun) -> dict:
        """What ran, without the key: the endpoint (no credentials), model, switch and each lane's request."""
        from playground import __version__

        tok = self._tokenizer is not None
        return {
            "backend": "remote", "endpoint": safe_url(self.cfg.base_url), "model_id": self.cfg.model,
            "reasoning_style": self.style, "reasoning_switch": self.switch,
            "settings": {lane: s.to_dict() for lane, s in run.settings.items()},
            "prompts": {lane: {"text": p.text, "starts_in_reasoning": p.starts_in_reasoning}
                        for lane, p in run.prompts.items()},
            "requests": {lane: {k: v for k, v in body.items() if k != "stream"} for lane, body in run.requests.items()},
            "timing": TIMING_NOTE,
            "token_counts": ("the server's usage report; without one, the local tokenizer" if tok else
                             "the server's usage report; without one, one token per chunk (an estimate)"),
            # Per lane, once it finishes ("usage" | "tokenizer" | "estimate"); before that, what this server
            # did last time, so a stored record (written at the start) says where its counts will come from.
            "token_count_source": dict(run.count_sources) or self.last_count_source,
            "versions": {"playground": __version__, "httpx": httpx.__version__},
        }


# --- a run ------------------------------------------------------------------------------------------------


class RemoteRun:
    """Two (or more) lanes as concurrent streaming requests; iterate it for LaneUpdates, like engine.Run."""

    def __init__(self, backend: RemoteBackend, prompts: dict[str, LanePrompt], settings: dict[str, LaneSettings],
                 requests: dict[str, dict]):
        self.backend = backend
        self.prompts = prompts
        self.settings = settings
        self.requests = requests
        self.stop_event = threading.Event()
        self.t_submit = time.perf_counter()
        self.t_start: float | None = None
        self.results: dict[str, LaneResult] = {}
        self.record: dict = {}
        self.count_sources: dict[str, str] = {}
        # Seconds from t_start to each lane's response headers: both lanes open at once shows the requests
        # ran concurrently, even where the server then generates them one after the other.
        self.opened: dict[str, float] = {}
        self._queue: queue.Queue = queue.Queue()
        self._iterated = False

    def stop(self) -> None:
        self.stop_event.set()
        self._queue.put(("stop", None, None, time.perf_counter()))  # wakes the consumer even if no chunk comes

    @property
    def finished(self) -> bool:
        return bool(self.results) and all(r.status != "running" for r in self.results.values())

    def collect(self) -> dict[str, LaneResult]:
        for _ in self:
            pass
        return self.results

    def __iter__(self) -> Iterator[LaneUpdate]:
        if self._iterated:
            raise RuntimeError("a Run can be iterated once")
        self._iterated = True
        return self._execute()

    def _execute(self) -> Iterator[LaneUpdate]:
        tok = self.backend.tokenizer()
        self.t_start = time.perf_counter()
        states = {}
        for lane, p in self.prompts.items():
            prompt_tokens = len(p.input_ids) or len(p.text) // CHARS_PER_TOKEN_ESTIMATE
            self.results[lane] = LaneResult(lane, prompt_tokens, self.settings[lane], self.t_start)
            states[lane] = _LaneState(self.results[lane], p.starts_in_reasoning)
        self.record = self.backend.reproducibility_record(self)
        for lane in self.prompts:
            threading.Thread(target=_stream_lane, args=(self.backend, lane, self.requests[lane], self._queue,
                                                        self.stop_event), name=f"remote-{lane}", daemon=True).start()
        pending = set(self.prompts)
        try:
            while pending:
                kind, lane, payload, t = self._queue.get()
                if kind == "stop":
                    for name in sorted(pending):
                        yield from self._finish(states[name], "stopped", "stopped", t, None, tok)
                    break
                if lane not in pending:
                    continue
                if kind == "delta":
                    yield states[lane].on_delta(payload[0], payload[1], t)
                elif kind == "usage":
                    states[lane].usage = payload
                elif kind == "open":
                    self.opened[lane] = round(t - self.t_start, 6)
                    self.record["response_started_s"] = dict(self.opened)
                elif kind == "end":
                    status, reason, error = payload
                    if error:
                        log.warning("remote %s lane failed: %s", lane, error)
                    yield from self._finish(states[lane], status, reason, t, error, tok)
                    pending.discard(lane)
        finally:
            # A consumer that goes away must not leave requests streaming: the lane threads see the event
            # at their next chunk and close their connection, which cancels generation on the server.
            self.stop_event.set()
            for st in states.values():
                if st.result.status == "running":
                    list(self._finish(st, "stopped", "stopped", time.perf_counter(), None, tok))

    def _finish(self, st: _LaneState, status, reason, t, error, tok) -> Iterator[LaneUpdate]:
        # The counts are settled before anyone hears the lane ended: a consumer that saves the lane on
        # its "done" update (the notebook) must store the reconciled counts and their source.
        updates = list(st.finish(status, reason, t, error))
        self.count_sources[st.result.lane] = source = st.reconcile_counts(tok)
        st.result.count_source = source  # into the lane's stored metrics, so a saved run says it too
        if status == "done":  # a stopped or failed lane never gets a usage report: not the server's habit
            self.backend.last_count_source = source
        self.record["token_count_source"] = dict(self.count_sources)
        yield from updates


def _stream_lane(backend: RemoteBackend, lane: str, body: dict, q: queue.Queue, stop: threading.Event) -> None:
    """One lane's request in its own thread; always ends with exactly one ("end", ...) on the queue."""
    cfg = backend.cfg
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
                            end = _read_whole(cfg, resp, lane, q)
                        else:
                            end = _read_sse(cfg, resp, lane, q, stop)
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
                        backend.dropped_fields.update(rejected)
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


def _read_whole(cfg: RemoteConfig, resp: httpx.Response, lane: str, q: queue.Queue):
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


def _read_sse(cfg: RemoteConfig, resp: httpx.Response, lane: str, q: queue.Queue, stop: threading.Event):
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
            return ("error", "error", f"The server reported an error mid-stream{_detail(cfg, data)}. The text "
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


class _LaneState:
    """Consumer-side state of one remote lane: the reasoning/answer split and the accumulating result."""

    def __init__(self, result: LaneResult, starts_in_reasoning: bool):
        self.result = result
        self.parser = ThinkParser(starts_in_reasoning)
        self.server_split = False  # the server sends reasoning in its own field: content is all answer
        self.in_server_reasoning = False
        self.chunk_lens: list[int] = []
        self.usage: dict | None = None

    def on_delta(self, reasoning: str, content: str, t: float) -> LaneUpdate:
        r = self.result
        rd = ad = raw = ""
        if reasoning:
            if not self.server_split:
                raw += "<think>\n"  # raw text keeps tags, so parse_text(raw) gives the same split as here
            self.server_split = self.in_server_reasoning = True
            rd = reasoning.lstrip() if not r.reasoning else reasoning
            raw += reasoning
        if content:
            if self.server_split:
                if self.in_server_reasoning:
                    raw += "\n</think>\n\n"
                    self.in_server_reasoning = False
                ad = content.lstrip() if not r.answer else content
            else:
                d = self.parser.feed(content)
                rd, ad = rd + d.reasoning, d.answer
            raw += content
        # A chunk that holds both (the closing tag inside it) counts as reasoning, as the engine counts it.
        if rd or ad:
            kind = "reasoning" if rd else "answer"
        else:  # text held back by the parser (a possible tag): the state it was received in
            kind = "reasoning" if self.in_server_reasoning or (not self.server_split and self.parser.in_reasoning) \
                else "answer"
        add_token(r, -1, t, kind)  # a chunk, not a token id: servers do not send ids
        self.chunk_lens.append(len(reasoning) + len(content))
        return self._apply(raw, rd, ad, t)

    def _apply(self, raw: str, rd: str, ad: str, t: float) -> LaneUpdate:
        add_text(self.result, raw, rd, ad, t)
        return LaneUpdate(self.result.lane, "token", t, text=raw, reasoning=rd, answer=ad)

    def finish(self, status: str, reason: str, t: float, error: str | None) -> Iterator[LaneUpdate]:
        r = self.result
        if r.status != "running":
            return
        last = self.parser.finish()
        if last.reasoning or last.answer:
            yield self._apply("", last.reasoning, last.answer, t)
        r.end(status, reason, t, error)
        yield LaneUpdate(r.lane, "error" if status == "error" else "done", t, finish_reason=reason, error=error)

    def reconcile_counts(self, tok) -> str:
        """Make the timing entries number the tokens: the usage report's count, else the tokenizer's, else
        one per chunk. Extra entries go to the chunks in proportion to their text and keep their chunk's
        receipt time. Returns where the count came from: "usage" | "tokenizer" | "estimate"."""
        r = self.result
        usage = self.usage or {}
        if isinstance(usage.get("prompt_tokens"), int) and usage["prompt_tokens"] > 0:
            r.prompt_tokens = usage["prompt_tokens"]
        n, source = usage.get("completion_tokens"), "usage"
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            n, source = None, "estimate"
            if tok is not None:
                try:
                    n = sum(len(tok(x, add_special_tokens=False)["input_ids"]) for x in (r.reasoning, r.answer) if x)
                    source = "tokenizer"
                except Exception:
                    n = None
        if n is None or not self.chunk_lens:
            return source if n is not None else "estimate"
        counts = spread(self.chunk_lens, n)
        ids, times, kinds, forced = [], [], [], []
        for c, t, k in zip(counts, r.token_times, r.token_kinds):
            ids += [-1] * c
            times += [t] * c
            kinds += [k] * c
            forced += [False] * c
        r.token_ids, r.token_times, r.token_kinds, r.forced = ids, times, kinds, forced
        return source


def spread(lengths: list[int], n: int) -> list[int]:
    """n tokens over chunks: each chunk gets one when n allows, the rest by text length (largest remainder)."""
    m = len(lengths)
    base = [1] * m if n >= m else [0] * m
    extra = n - sum(base)
    weights = lengths if sum(lengths) > 0 else [1] * m
    total = sum(weights)
    quotas = [extra * w / total for w in weights]
    counts = [b + int(q) for b, q in zip(base, quotas)]
    left = n - sum(counts)
    for i in sorted(range(m), key=lambda i: quotas[i] - int(quotas[i]), reverse=True)[:left]:
        counts[i] += 1
    return counts
