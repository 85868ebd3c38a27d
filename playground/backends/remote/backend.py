"""A remote backend: the two lanes as two concurrent streaming requests to an OpenAI-compatible server.

vLLM, SGLang, TGI, `transformers serve` and hosted endpoints all speak `/v1/chat/completions` with
server-sent events. `RemoteBackend.start(...)` returns a `RemoteRun` that yields the same
`LaneUpdate`s into the same `LaneResult`s as the local engine, so nothing downstream knows which
one ran. Differences a user must know, and where they are said:
- timings are taken when each chunk ARRIVES here, so network time is included (record, footer);
- one chunk is one timing entry (token id -1); token counts come from the server's usage report,
  else the local tokenizer, else the chunk count, which is an estimate (`token_count_source`);
- a thinking budget cannot be enforced (it forces the closing tag inside generation): refused.
The rooms: client.py (the endpoint, its errors), requests.py (what each lane asks for), sse.py (one
lane's streaming request), state.py (one lane's split and counts), tokens.py (the optional tokenizer).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import httpx

from playground.backends.remote.client import RemoteConfig, RemoteError, list_models
from playground.backends.remote.requests import (
    AUTO_SWITCH,
    SWITCHES,
    lane_prompt,
    lane_request,
    preset_for_model,
    request_body,
    style_for_model,
)
from playground.backends.remote.sse import stream_lane
from playground.backends.remote.state import CHARS_PER_TOKEN_ESTIMATE, RemoteLane
from playground.backends.remote.tokens import LocalTokenizer
from playground.config import safe_url
from playground.errors import InvalidInput
from playground.lanes import LaneResult, LaneSettings, LaneUpdate
from playground.prompting.catalog import Preset
from playground.prompting.prompts import LanePrompt

log = logging.getLogger(__name__)

TIMING_NOTE = "timings are taken when each chunk arrives here: network time is included"


class RemoteBackend:
    """An OpenAI-compatible endpoint as a Backend. Runs do not hold `lock`: the server batches them."""

    kind = "remote"

    def __init__(self, cfg: RemoteConfig):
        self.cfg = cfg
        self.lock = threading.Lock()
        self.dropped_fields: set[str] = set()  # optional fields this server rejected once
        self.last_count_source: str = "unknown until the first run ends"
        self.local_tokenizer = LocalTokenizer()

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
        return self.local_tokenizer.get([self.cfg.model] + ([self.preset.repo_id] if self.preset else []))

    def check_lanes(self, lanes: dict[str, LaneSettings]) -> None:
        for lane, s in lanes.items():
            if s.thinking_budget is not None:
                raise InvalidInput(f"{lane} lane: a thinking budget needs the local model (it forces the closing tag "
                                   "during generation); a remote endpoint cannot do that. Clear the budget, or lower "
                                   "max_new_tokens instead.")

    def start(self, prompt: str, system: str | None = None, lanes: dict[str, LaneSettings] | None = None,
              history: dict[str, tuple] | None = None, keep_reasoning: bool = False) -> RemoteRun:
        """`history`: lane -> that lane's earlier turns (a follow-up), sent as messages."""
        lanes = lanes or {"standard": LaneSettings(), "reasoning": LaneSettings()}
        history = history or {}
        self.check_lanes(lanes)
        self.resolve_model()
        tok = self.tokenizer()
        requests, prompts = {}, {}
        for lane, s in lanes.items():
            messages, kwargs = lane_request(self.style, self.switch, lane, prompt, system, history.get(lane, ()),
                                            keep_reasoning)
            requests[lane] = request_body(self.cfg.model, self.switch, lane, messages, kwargs, s, self.dropped_fields)
            prompts[lane] = lane_prompt(tok, lane, messages, kwargs, self.switch, self.cfg.model)
        return RemoteRun(self, prompts, lanes, requests)

    def describe(self) -> str:
        key = f"API key from {self.cfg.key_source}" if self.cfg.api_key else "no API key"
        model = self.cfg.model or "(the only one served)"
        return (f"Remote endpoint **{safe_url(self.cfg.base_url)}** · model **{model}**"
                f" · reasoning switch **{self.switch}** ({SWITCHES[self.switch]}) · {key} · {TIMING_NOTE}")

    def reproducibility_record(self, run: RemoteRun) -> dict:
        """What ran, without the key: the endpoint (no credentials), model, switch and each lane's request."""
        from playground import __version__

        tok = self.local_tokenizer.loaded
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
            states[lane] = RemoteLane(self.results[lane], p.starts_in_reasoning)
        self.record = self.backend.reproducibility_record(self)
        for lane in self.prompts:
            args = (self.backend.cfg, lane, self.requests[lane], self._queue, self.stop_event,
                    self.backend.dropped_fields)
            threading.Thread(target=stream_lane, args=args, name=f"remote-{lane}", daemon=True).start()
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

    def _finish(self, st: RemoteLane, status, reason, t, error, tok) -> Iterator[LaneUpdate]:
        # The counts are settled before anyone hears the lane ended: a consumer that saves the lane on
        # its "done" update (the notebook) must store the reconciled counts and their source.
        updates = list(st.finish(status, reason, t, error))
        self.count_sources[st.result.lane] = source = st.reconcile_counts(tok)
        st.result.count_source = source  # into the lane's stored metrics, so a saved run says it too
        if status == "done":  # a stopped or failed lane never gets a usage report: not the server's habit
            self.backend.last_count_source = source
        self.record["token_count_source"] = dict(self.count_sources)
        yield from updates
