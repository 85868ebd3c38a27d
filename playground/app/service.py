"""What the UI and the HTTP routes call: the loaded model, memory plans, and runs in flight.

Plain Python (no gradio): every handler's logic lives here so a test can call it directly,
and the UI stays a thin layer of components and event wiring.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from playground.app.conversation import start_conversation
from playground.backends import local_backend
from playground.backends.base import Backend, RunLike
from playground.backends.remote import RemoteBackend, RemoteConfig, list_models
from playground.config import Settings, normalize_base_url
from playground.errors import InvalidInput, NoModelLoaded, PlaygroundError, check_encodable
from playground.evaluation.metrics import RunningMetrics
from playground.lanes import LaneSettings, validate_settings
from playground.models.loading import LoadedModel, load_model, plan_config, plan_for, resolve, run_budget
from playground.models.memory import (
    GB,
    GPU0_EXTRA_BYTES,
    MemoryPlan,
    parse_hardware,
    rows_that_fit,
    tokens_per_row_that_fit,
)
from playground.prompting.catalog import PRESETS

log = logging.getLogger(__name__)

# Shortest interval between two UI updates of one run: at most 10 updates/s, whatever the token rate
# (bench.stream: one update per token cost the engine ~13% of its speed on 2 cores; 10/s still reads live).
UI_UPDATE_INTERVAL_S = 0.1
# The window of runs_per_visitor_per_hour.
RATE_WINDOW_S = 3600.0
MAX_WAITING_KEYS = 10_000  # queued-run markers kept; far above any queue_size


def validate_prompt(prompt, max_chars: int) -> str:
    if not isinstance(prompt, str):
        raise InvalidInput("The prompt must be text.")
    if "\x00" in prompt:
        raise InvalidInput("The prompt contains a NUL character: remove it.")
    if not prompt.strip():
        raise InvalidInput("The prompt is empty: write something to run.")
    check_encodable(prompt, "prompt")
    if len(prompt) > max_chars:
        raise InvalidInput(f"The prompt has {len(prompt):,} characters, over the limit of {max_chars:,} "
                           "(max_prompt_chars): shorten it.")
    return prompt


@dataclass
class LaneView:
    """What the UI shows of one lane at one moment."""

    status: str
    text: str
    reasoning: str
    answer: str
    metrics: dict | None


class Playground:
    """One per server: owns the loaded model and the runs in flight (by client key)."""

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings()
        self.loaded: LoadedModel | None = None
        # The active backend: one on `loaded` (local_backend), or a RemoteBackend.
        self.backend: Backend | None = None
        self._local_backend: Backend | None = None
        self._load_lock = threading.Lock()
        self._runs: dict[str, RunLike] = {}
        self._runs_lock = threading.Lock()
        self._waiting: dict[str, bool] = {}  # run key -> stopped while queued (see mark_waiting)
        self._run_times: dict[str, list[float]] = {}  # owner -> monotonic start times within RATE_WINDOW_S

    # --- models -----------------------------------------------------------------------------
    def load(self, ref: str, quant: str, hardware: str = "", progress=None, *, visitor: bool = False) -> LoadedModel:
        """Load a model; a visitor (the page or an API client, not the operator's start-up choice) may only
        load the presets the operator allows when the server is public."""
        if visitor and self.settings.public and not self.settings.model_allowed(ref):
            allowed = ", ".join(self.settings.allowed_models)
            raise InvalidInput(f"This public playground loads only these presets: {allowed}. Model ids and "
                               "folders are for the operator (PLAYGROUND_MODEL).")
        hw = self._hardware(hardware)
        with self._load_lock:
            # Wait for a generation in flight: swapping the model under it would break it.
            old = self.backend
            if old is not None:
                old.lock.acquire()
            try:
                loaded = load_model(ref, quant, self.settings.models_dir, hardware=hw,
                                    progress=progress or (lambda f, m: None), cpu_threads=self.settings.cpu_threads,
                                    settings=self.settings)
                self.loaded, self.backend = loaded, local_backend(loaded, self.settings)
            finally:
                if old is not None:
                    old.lock.release()
        return loaded

    def plan(self, ref: str, quant: str, hardware: str = "") -> MemoryPlan:
        hw = self._hardware(hardware)
        source = resolve(ref)
        plan, _quant, _reason = plan_for(plan_config(source, self.settings.models_dir), source.label, quant, hw,
                                         run_budget(source, self.settings))
        return plan

    @staticmethod
    def _hardware(spec: str):
        if not spec or not spec.strip():
            return None
        try:
            return parse_hardware(spec)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None

    def require_backend(self) -> Backend:
        if self.backend is None:
            raise NoModelLoaded("No model is loaded: load one in the model panel first.")
        return self.backend

    # --- remote endpoints ---------------------------------------------------------------------
    @property
    def remote(self) -> RemoteBackend | None:
        return self.backend if self.backend is not None and self.backend.kind == "remote" else None

    def remote_config(self, url: str = "", model: str = "", api_key: str = "", timeout_s=None, switch: str = "",
                      *, visitor: bool = False) -> RemoteConfig:
        """The endpoint to use: what was typed, falling back to the operator's settings field by field.
        On a public server a visitor gets the operator's endpoint only: letting visitors name a URL would
        let anyone make this server send requests to any address it can reach (SSRF)."""
        st = self.settings
        env_key = st.remote_api_key.get_secret_value() if st.remote_api_key else None
        if visitor and st.public:
            if not st.remote_url:
                raise InvalidInput("This public playground has no remote endpoint: the operator sets "
                                   "PLAYGROUND_REMOTE_URL to offer one.")
            # The model too: a visitor's model name is also looked up as a local tokenizer folder.
            if (url and url.strip() and normalize_base_url(url) != st.remote_url) or \
                    (model and model.strip() and model.strip() != st.remote_model) or \
                    (api_key and api_key.strip()):
                raise InvalidInput("This public playground uses only the operator's endpoint "
                                   "(PLAYGROUND_REMOTE_URL, PLAYGROUND_REMOTE_MODEL, PLAYGROUND_REMOTE_API_KEY): leave "
                                   "the URL, model and key empty.")
            url, api_key, timeout_s = st.remote_url, "", st.remote_timeout_s
        typed_key = api_key.strip() if api_key else ""
        base = url.strip() if url and url.strip() else st.remote_url
        if not base:
            raise InvalidInput("No endpoint URL: type the server's base URL (e.g. http://127.0.0.1:8000/v1) or set "
                               "PLAYGROUND_REMOTE_URL.")
        return RemoteConfig(base, model=(model or "").strip() or st.remote_model,
                            api_key=typed_key or env_key,
                            timeout_s=st.remote_timeout_s if timeout_s in (None, "") else timeout_s,
                            switch=(switch or "").strip() or st.remote_switch,
                            key_source="the model panel" if typed_key else "PLAYGROUND_REMOTE_API_KEY")

    def test_remote(self, url: str = "", api_key: str = "", timeout_s=None, *, visitor: bool = False) -> list[str]:
        """The models the endpoint lists (the panel's connection test)."""
        return list_models(self.remote_config(url, "", api_key, timeout_s, visitor=visitor))

    def use_remote(self, url: str = "", model: str = "", api_key: str = "", timeout_s=None, switch: str = "",
                   *, visitor: bool = False, resolve: bool = True) -> RemoteBackend:
        """Send runs to an endpoint from now on. A local model stays loaded (load() switches back).
        resolve=False (start-up) does not contact the server: a server still booting must not stop ours."""
        backend = RemoteBackend(self.remote_config(url, model, api_key, timeout_s, switch, visitor=visitor))
        if resolve and not backend.model:
            backend.resolve_model()  # asks the server now, so a wrong URL fails here and not at the first run
        with self._load_lock:
            if self.remote is None:
                self._local_backend = self.backend  # kept as it was built (e.g. for ZeroGPU), for use_local()
            self.backend = backend
        log.info("runs go to %s", backend.describe().replace("**", ""))
        return backend

    def use_local(self) -> None:
        """Back to the loaded local model after a remote endpoint."""
        if self.loaded is None:
            raise NoModelLoaded("No local model is loaded: load one in the model panel first.")
        with self._load_lock:
            if self.remote is not None:
                self.backend = self._local_backend or local_backend(self.loaded, self.settings)

    def model_name(self) -> str | None:
        if self.remote is not None:
            return self.remote.model
        return self.loaded.model_id if self.loaded else None

    def recommended(self) -> tuple[LaneSettings, LaneSettings]:
        """Default lane settings from the loaded preset's (or the remote model's family's) recommendations."""
        if self.remote is not None:
            preset = self.remote.preset
        else:
            preset = self.loaded.source.preset if self.loaded else None
        if preset is None:
            preset = PRESETS["embedded"]
        def conv(s):
            return LaneSettings(max_new_tokens=min(s.max_new_tokens, self.settings.max_new_tokens),
                                temperature=s.temperature, top_p=s.top_p, top_k=s.top_k)
        return conv(preset.standard), conv(preset.reasoning)

    # --- runs -------------------------------------------------------------------------------
    def check_run_input(self, prompt: str, system: str | None, lanes: dict[str, LaneSettings]) -> None:
        """Every named limit of a run, checked before anything is saved or started."""
        validate_prompt(prompt, self.settings.max_prompt_chars)
        if system is not None and not isinstance(system, str):
            raise InvalidInput("The system prompt must be text.")
        if system:
            check_encodable(system, "system prompt")
        if system and len(system) > self.settings.max_prompt_chars:
            raise InvalidInput(f"The system prompt is over the limit of {self.settings.max_prompt_chars:,} "
                               "characters (max_prompt_chars): shorten it.")
        for lane, s in lanes.items():
            validate_settings(s, self.settings.max_new_tokens, lane)
        if self.remote is not None:
            self.remote.check_lanes(lanes)

    def start_run(self, key: str, prompt: str, system: str | None, lanes: dict[str, LaneSettings],
                  owner: str | None = None, history: dict[str, tuple] | None = None,
                  keep_reasoning: bool = False) -> RunLike:
        """Start a run for `key`; `history` (lane -> its earlier turns) makes it a follow-up turn."""
        self.check_run_input(prompt, system, lanes)
        backend = self.require_backend()
        if history is not None:  # rendered and checked against the context before it counts as a run
            run = start_conversation(backend, self.settings.max_context_tokens, prompt, system or None, lanes,
                                     history, keep_reasoning)
        if owner is not None:
            self._count_run(owner)
        if history is None:
            run = backend.start(prompt, system or None, lanes)
        with self._runs_lock:
            previous = self._runs.get(key)
            if previous is not None:
                previous.stop()
            self._runs[key] = run
            if self._waiting.pop(key, False):  # Stop came while it was getting ready: it ends at once
                run.stop()
        return run

    def _count_run(self, owner: str) -> None:
        """The per-visitor run limit (runs_per_visitor_per_hour), kept server-side whatever the page allows."""
        limit = self.settings.runs_per_visitor_per_hour
        if not limit:
            return
        now = time.monotonic()
        with self._runs_lock:
            recent = [t for t in self._run_times.get(owner, []) if now - t < RATE_WINDOW_S]
            if len(recent) >= limit:
                wait = int(RATE_WINDOW_S - (now - recent[0])) + 1
                raise InvalidInput(f"You have started {limit} runs in the last hour, the limit of this playground "
                                   f"(runs_per_visitor_per_hour): try again in {wait // 60 + 1} minutes.")
            recent.append(now)
            self._run_times[owner] = recent

    def mark_waiting(self, key: str) -> None:
        """A run for `key` was asked for and waits in the queue: a Stop before it starts cancels it."""
        with self._runs_lock:
            if len(self._waiting) >= MAX_WAITING_KEYS:  # abandoned tabs never take theirs: forget the oldest
                self._waiting.pop(next(iter(self._waiting)))
            self._waiting[key] = False

    def cancelled_while_waiting(self, key: str) -> bool:
        """Asked as the queued run's turn comes: True when Stop came first (then it must not start).
        Otherwise the marker stays until start_run registers the run, so a Stop in between still lands."""
        with self._runs_lock:
            if self._waiting.get(key):
                del self._waiting[key]
                return True
            return False

    def stop(self, key: str) -> bool:
        """Stop the run in flight for `key`, or cancel the one still waiting for its turn."""
        with self._runs_lock:
            run = self._runs.get(key)
            if run is None and key in self._waiting:
                self._waiting[key] = True
                return True
        if run is None:
            return False
        run.stop()
        return True

    def stop_prefix(self, prefix: str) -> bool:
        """Stop every run whose key starts with prefix (all runs of one browser connection)."""
        with self._runs_lock:
            runs = [r for k, r in self._runs.items() if k.startswith(prefix)]
        for r in runs:
            r.stop()
        return bool(runs)

    def stream_views(self, key: str, run: RunLike) -> Iterator[dict[str, LaneView]]:
        """Iterate a run, yielding every lane's view at most every UI_UPDATE_INTERVAL_S, and at the end.

        Token timing lives in the engine; this only decides how often the UI hears about it, so a
        slow browser never slows generation down."""
        last = 0.0
        spent: list[float] = []  # time the consumer took per update (gradio's diff and send)
        live: dict[str, RunningMetrics] = {}
        try:
            for update in run:
                now = time.perf_counter()
                if update.kind != "token" or now - last >= UI_UPDATE_INTERVAL_S:
                    last = now
                    yield self.views(run, live)
                    spent.append(time.perf_counter() - now)
            yield self.views(run, live)
            log_stream_stats(run, spent)
        finally:
            with self._runs_lock:
                if self._runs.get(key) is run:
                    del self._runs[key]

    @staticmethod
    def views(run: RunLike, live: dict[str, RunningMetrics]) -> dict[str, LaneView]:
        """Every lane's view; `live` keeps each lane's metrics counted so far between calls."""
        out = {}
        for lane, r in run.results.items():
            tracker = live.setdefault(lane, RunningMetrics())
            metrics = tracker.of(r).to_dict() if r.token_times or r.status != "running" else None
            out[lane] = LaneView(r.status, r.text, r.reasoning, r.answer, metrics)
        return out

    # --- descriptions ----------------------------------------------------------------------
    def footer(self) -> str:
        if self.remote is not None:
            return self.remote.describe()
        lm = self.loaded
        if lm is None:
            return "No model loaded."
        extra = "".join(f" · {name.replace('_', ' ')} **{d.value}** ({d.reason})"
                        for name, d in lm.settings_reasons.items())
        return (f"Model **{lm.model_id}** · quantization **{lm.quant}** ({lm.quant_reason}) · "
                f"device **{lm.device.value}** ({lm.device.reason}) · dtype **{lm.dtype.value}** ({lm.dtype.reason})"
                f"{extra} · loaded in {lm.load_seconds:.1f} s")


def log_stream_stats(run: RunLike, spent: list[float]) -> None:
    """One line per run: how many updates reached the UI and what each cost the server early and late.
    A UI that re-renders whole texts shows late ≫ early here long before users notice."""
    if len(spent) < 10:
        return
    tenth = max(1, len(spent) // 10)
    early = sorted(spent[:tenth])[tenth // 2] * 1000
    late = sorted(spent[-tenth:])[tenth // 2] * 1000
    tokens = sum(len(r.token_ids) for r in run.results.values())
    log.info("stream stats: updates=%d tokens=%d early_update_ms=%.3f late_update_ms=%.3f",
             len(spent), tokens, early, late)


def plan_markdown(plan: MemoryPlan) -> str:
    """The plan as the Model panel and /plan show it: per device, weights, KV reserve, workspace and
    headroom; the tokens of reasoning that fit; and what to change when it does not fit."""
    rows = "\n".join(
        f"| {d.name} | {d.capacity_bytes / GB:,.1f} GB | {d.usable_bytes / GB:,.1f} GB | "
        f"{d.assigned_bytes / GB:,.2f} GB | {d.kv_bytes / GB:,.2f} GB | {d.workspace_bytes / GB:,.2f} GB | "
        f"{d.headroom_bytes / GB:,.2f} GB | {d.layer_range} |"
        for d in plan.devices)
    by_quant = " · ".join(f"{q}: {b / GB:,.2f} GB" for q, b in plan.weight_bytes_by_quant.items())
    verdict = "✅ fits" if plan.fits else f"❌ does not fit: short by {plan.shortfall_bytes / GB:,.1f} GB"
    budget = plan.budget
    kv = (f"KV cache: {plan.kv_bytes_per_token / 1024:,.0f} KiB per token, reserved for {budget.describe()}: "
          f"{plan.kv_tokens:,} tokens ({plan.kv_bytes_per_token * plan.kv_tokens / GB:,.1f} GB).")
    if len(plan.devices) > 1:
        kv += (" Layers are spread over the GPUs so each keeps headroom in proportion to the KV it holds "
               f"(balanced); GPU 0 keeps {GPU0_EXTRA_BYTES / GB:,.1f} GB more for the logits and outputs."
               if plan.strategy == "balanced" else
               " Devices are filled in order (sequential): a balanced split over the GPUs does not fit.")
    if plan.fits:
        per_row = tokens_per_row_that_fit(plan, budget.rows)
        limit = ""
        if plan.context_tokens and per_row > plan.context_tokens:
            per_row, limit = plan.context_tokens, " (the model's context length is the limit, not memory)"
        fit_rows = rows_that_fit(plan, budget.tokens_per_row)
        room = (f"Room: each of the {budget.rows} rows can hold {per_row:,} tokens{limit}, so up to "
                f"**{max(0, per_row - budget.prompt_tokens):,} tokens of reasoning** after a "
                f"{budget.prompt_tokens:,}-token prompt. At this budget {fit_rows} rows fit "
                f"({fit_rows // len(budget.new_tokens)} runs at once).")
    else:
        room = "To make it fit, change one of:\n" + "\n".join(f"- {a}" for a in plan.advice)
    return (f"**{plan.model}**, {plan.quant}, on {plan.hardware}: {verdict}\n\n"
            f"Weights per quantization: {by_quant}. {kv}\n\n{room}\n\n"
            "| device | memory | usable | weights | KV reserve | workspace | headroom | modules |\n"
            f"|---|---|---|---|---|---|---|---|\n{rows}")


def explain(exc: Exception) -> str:
    """A user-facing message for any exception: ours carry one; anything else is a bug."""
    if isinstance(exc, PlaygroundError):
        return str(exc)
    log.exception("unexpected error", exc_info=exc)
    return f"Unexpected error ({type(exc).__name__}): {exc}. This is a bug; the server keeps running."
