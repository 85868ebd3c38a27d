"""Paired generation: several lanes of one prompt in ONE batched `generate`, streamed as lane events.

The engine knows nothing of the UI. `Engine.start(...)` returns a `Run`; iterating it yields
torch-free `LaneUpdate`s (token ids, a UTF-8-safe text delta split into reasoning and answer,
and a monotonic timestamp taken right after the decode step). A remote backend can yield the
same updates. Each lane has its own sampling, seed, max tokens and thinking budget: the
per-row sampling happens in `LaneSampler`, which picks every row's token itself (with the
row's own torch.Generator) and hands generate a one-hot score, so generate runs greedy and a
lane's output never depends on the other rows in the batch.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator

from playground.backends.local.decoding import LocalLane
from playground.lanes import LaneResult, LaneSettings, LaneUpdate
from playground.prompting.prompts import LanePrompt, build_prompt
from playground.prompting.reasoning import ThinkParser

log = logging.getLogger(__name__)

class _Row:
    """Generation-thread state of one batch row."""

    def __init__(self, lane: str, prompt: LanePrompt, settings: LaneSettings, close_ids: list[int], device,
                 stop: threading.Event | None = None):
        import torch

        self.lane = lane
        self.stop = stop  # this row's own Stop, when runs of several visitors share one generate
        self.settings = settings
        self.count = 0
        self.done = False
        self.close_ids = close_ids
        self.forcing: list[int] = []
        self.budget_spent = False
        self.reasoning_tokens = 0
        self.parser = ThinkParser(prompt.starts_in_reasoning)
        self.generator = torch.Generator(device=device).manual_seed(settings.seed)
        if settings.thinking_budget == 0 and prompt.starts_in_reasoning and close_ids:
            # A budget of 0 on a prompt that already opened the reasoning closes it before any token.
            self.forcing = list(close_ids)
            self.budget_spent = True

    @property
    def stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()


class LaneSampler:
    """Per-row logits processing: forced tokens (thinking budget), min tokens, temperature, top-k,
    top-p and seeded sampling. Returns a one-hot score so generate's greedy pick is our pick."""

    def __init__(self, rows: list[_Row], tokenizer, eos_ids: set[int]):
        self.rows = rows
        self.tok = tokenizer
        self.eos = sorted(eos_ids)
        self.forced_flags: list[bool] = [False] * len(rows)

    def __call__(self, input_ids, scores):
        import torch

        out = torch.full_like(scores, float("-inf"))
        for i, row in enumerate(self.rows):
            self.forced_flags[i] = False
            if row.done:
                out[i, 0] = 0.0  # finished rows get pad tokens from generate anyway
                continue
            if row.forcing:
                out[i, row.forcing.pop(0)] = 0.0
                self.forced_flags[i] = True
                continue
            logits = scores[i]
            if row.count < row.settings.min_new_tokens and self.eos:
                logits = logits.clone()
                logits[self.eos] = float("-inf")
            out[i, self._pick(logits, row)] = 0.0
        return out

    def _pick(self, logits, row: _Row) -> int:
        import torch

        s = row.settings
        if s.temperature <= 0:
            return int(torch.argmax(logits))
        logits = logits / s.temperature
        if s.top_k and s.top_k < logits.shape[-1]:
            kth = torch.topk(logits, s.top_k).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        if s.top_p < 1.0:
            sorted_p, idx = torch.sort(probs, descending=True)
            cum = torch.cumsum(sorted_p, dim=-1)
            drop = cum - sorted_p > s.top_p  # keep the smallest prefix whose mass reaches top_p
            sorted_p = sorted_p.masked_fill(drop, 0.0)
            probs = torch.zeros_like(probs).scatter(0, idx, sorted_p)
        return int(torch.multinomial(probs, 1, generator=row.generator))


class _Stopper:
    """Per-row stopping: a row stops at its own max_new_tokens; all stop when the user stops.

    generate calls this before handing the step's tokens to the streamer, so the row's length is
    read from input_ids (which already holds the new token), not from the streamer's count."""

    def __init__(self, rows: list[_Row], stop: threading.Event, prompt_width: int):
        self.rows = rows
        self.stop = stop
        self.width = prompt_width

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        generated = input_ids.shape[1] - self.width
        stop_all = self.stop.is_set()
        return torch.tensor([stop_all or r.done or r.stopped or generated >= r.settings.max_new_tokens
                             for r in self.rows], device=input_ids.device)


class _Streamer:
    """Receives each decode step's tokens inside generate; timestamps them and queues them."""

    def __init__(self, rows: list[_Row], sampler: LaneSampler, q: queue.Queue, tokenizer, eos_ids: set[int]):
        self.rows = rows
        self.sampler = sampler
        self.q = q
        self.tok = tokenizer
        self.eos = eos_ids
        self.prompt_seen = False

    def put(self, value):
        t = time.perf_counter()
        if not self.prompt_seen:  # generate first hands us the prompt
            self.prompt_seen = True
            return
        tokens = value.tolist()
        for i, (row, tok) in enumerate(zip(self.rows, tokens)):
            if row.done:
                continue
            if row.stopped:  # its visitor pressed Stop: the row ends here, the batch's other rows go on
                row.done = True
                self.q.put(("stopped", i, None, t, False))
                continue
            row.count += 1
            forced = self.sampler.forced_flags[i]
            if tok in self.eos and not forced:
                row.done = True
                self.q.put(("eos", i, tok, t, forced))
                continue
            self._track_budget(row, tok)
            self.q.put(("token", i, tok, t, forced))
            if row.count >= row.settings.max_new_tokens:
                row.done = True
                self.q.put(("length", i, None, t, False))

    def _track_budget(self, row: _Row, tok: int) -> None:
        """Count reasoning tokens and queue the close once the row's thinking budget is spent."""
        budget = row.settings.thinking_budget
        if budget is None or row.budget_spent:
            return
        was_in = row.parser.in_reasoning
        row.parser.feed(self.tok.decode([tok], skip_special_tokens=False))
        if was_in and row.parser.in_reasoning:
            row.reasoning_tokens += 1
        if row.parser.in_reasoning and row.reasoning_tokens >= budget and not row.forcing:
            row.forcing = list(row.close_ids)
            row.budget_spent = True
        if row.parser.reasoning_closed:
            row.budget_spent = True

    def end(self):
        pass


class Run:
    """One execution of one prompt over several lanes. Iterate it for LaneUpdates; `results` holds
    each lane's accumulated LaneResult; `stop()` ends generation within one decode step."""

    def __init__(self, engine: Engine, prompts: dict[str, LanePrompt], settings: dict[str, LaneSettings]):
        self.engine = engine
        self.prompts = prompts
        self.settings = settings
        self.stop_event = threading.Event()
        self.t_submit = time.perf_counter()
        self.t_start: float | None = None
        self.results: dict[str, LaneResult] = {}
        self.record: dict = {}
        self._iterated = False

    def stop(self) -> None:
        self.stop_event.set()

    @property
    def finished(self) -> bool:
        return bool(self.results) and all(r.status != "running" for r in self.results.values())

    def __iter__(self) -> Iterator[LaneUpdate]:
        if self._iterated:
            raise RuntimeError("a Run can be iterated once")
        self._iterated = True
        return self.engine._execute(self)

    def collect(self) -> dict[str, LaneResult]:
        for _ in self:
            pass
        return self.results


class Engine:
    """Runs lanes on one loaded model, one run at a time (a second waits for the lock), or, with a
    `scheduler` attached (playground.backends.local.scheduler), runs waiting for the model generated
    together. Satisfies playground.backends.base.Backend, as the remote backend does."""

    kind = "local"

    def __init__(self, loaded):
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.lock = threading.Lock()
        self.scheduler = None  # set by scheduler.RunScheduler.attach
        tok = self.tokenizer
        eos = loaded.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tok.eos_token_id is not None:
            eos_ids.add(tok.eos_token_id)
        self.eos_ids = eos_ids
        # Control tokens are stripped from text; think tags stay even where they are special tokens.
        self.skip_ids = {i for i in tok.all_special_ids if "think" not in str(tok.convert_ids_to_tokens(i))}

    @property
    def style(self) -> str:
        return self.loaded.source.reasoning_style

    def start(self, prompt: str, system: str | None = None, lanes: dict[str, LaneSettings] | None = None) -> Run:
        """Build every lane's prompt with the model's chat template and return a Run to iterate."""
        lanes = lanes or {"standard": LaneSettings(), "reasoning": LaneSettings()}
        prompts = {lane: build_prompt(self.tokenizer, self.style, lane, prompt, system) for lane in lanes}
        return Run(self, prompts, lanes)

    def start_prompts(self, prompts: dict[str, LanePrompt], lanes: dict[str, LaneSettings]) -> Run:
        return Run(self, prompts, lanes)

    def _execute(self, run: Run) -> Iterator[LaneUpdate]:
        if self.scheduler is not None:  # runs of several visitors may share one generate
            yield from self.scheduler.execute(run)
            return
        with self.lock:
            yield from self.generate_rows(run)

    def generate_rows(self, run: Run, row_stops: dict[str, threading.Event] | None = None) -> Iterator[LaneUpdate]:
        """Generate every lane of `run` as one left-padded batch; the caller holds `lock`. `row_stops`
        (lane -> Event) lets lanes stop one by one: the scheduler gives each visitor's rows their own Stop."""
        import torch
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        tok, model = self.tokenizer, self.loaded.model
        names = list(run.prompts)
        device = model.get_input_embeddings().weight.device
        rows = []
        for lane in names:
            p = run.prompts[lane]
            close_ids = tok(p.close_text, add_special_tokens=False)["input_ids"] if p.close_text else []
            rows.append(_Row(lane, p, run.settings[lane], close_ids, device, (row_stops or {}).get(lane)))
        # 1) left-pad the prompts so every row's next token is at the same position
        width = max(len(run.prompts[n].input_ids) for n in names)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        ids = [[pad] * (width - len(run.prompts[n].input_ids)) + list(run.prompts[n].input_ids) for n in names]
        mask = [[0] * (width - len(run.prompts[n].input_ids)) + [1] * len(run.prompts[n].input_ids) for n in names]
        input_ids = torch.tensor(ids, device=device)  # (lanes, width)
        attention_mask = torch.tensor(mask, device=device)
        q: queue.Queue = queue.Queue()
        sampler = LaneSampler(rows, tok, self.eos_ids)
        streamer = _Streamer(rows, sampler, q, tok, self.eos_ids)
        gen_config = GenerationConfig(
            do_sample=False, max_new_tokens=max(r.settings.max_new_tokens for r in rows),
            eos_token_id=sorted(self.eos_ids) or None, pad_token_id=pad,
            temperature=None, top_p=None, top_k=None)
        run.t_start = time.perf_counter()
        for lane, row in zip(names, rows):
            run.results[lane] = LaneResult(lane, len(run.prompts[lane].input_ids), row.settings, run.t_start)
        run.record = self.reproducibility_record(run)

        def work():
            try:
                with torch.inference_mode():
                    model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=gen_config,
                                   logits_processor=LogitsProcessorList([sampler]),
                                   stopping_criteria=StoppingCriteriaList([_Stopper(rows, run.stop_event, width)]),
                                   streamer=streamer)
                q.put(("end", None, None, time.perf_counter(), False))
            except BaseException as exc:  # reported as the run's error, never raised into the server
                q.put(("error", None, exc, time.perf_counter(), False))

        # 2) generate in a worker thread made for this run; this thread turns tokens into updates
        thread = threading.Thread(target=work, name="generate", daemon=True)
        thread.start()
        lanes = {lane: LocalLane(run.results[lane], run.prompts[lane], tok, self.skip_ids) for lane in names}
        try:
            while True:
                kind, i, payload, t, forced = q.get()
                if kind == "token":
                    yield lanes[names[i]].on_token(payload, t, forced)
                elif kind in ("eos", "length"):
                    yield from lanes[names[i]].finish("done", "stop" if kind == "eos" else "length", t)
                elif kind == "stopped":
                    yield from lanes[names[i]].finish("stopped", "stopped", t)
                elif kind == "end":
                    for row, st in zip(rows, lanes.values()):
                        stopped = run.stop_event.is_set() or row.stopped
                        yield from st.finish(*(("stopped", "stopped") if stopped else ("done", "length")), t)
                    break
                elif kind == "error":
                    msg = explain_failure(payload)
                    log.warning("generation failed: %s", msg)
                    for st in lanes.values():
                        yield from st.finish("error", "error", t, error=msg)
                    break
        finally:
            # A consumer that goes away (closed tab, cancelled event) must not leave generate running.
            run.stop_event.set()
            thread.join()
            for st in lanes.values():
                if st.result.status == "running":
                    list(st.finish("stopped", "stopped", time.perf_counter()))

    def reproducibility_record(self, run: Run) -> dict:
        import bitsandbytes
        import torch
        import transformers

        from playground import __version__

        lm = self.loaded
        return {
            "backend": "local",  # a remote run's record says "remote" (playground.backends.remote)
            "model_id": lm.model_id, "revision": lm.revision, "quant": lm.quant,
            "dtype": lm.dtype.value, "device": lm.device.value,
            "placement": lm.placement.to_dict(),
            "reasoning_style": lm.source.reasoning_style,
            "settings": {lane: s.to_dict() for lane, s in run.settings.items()},
            "prompts": {lane: {"text": p.text, "starts_in_reasoning": p.starts_in_reasoning}
                        for lane, p in run.prompts.items()},
            "versions": {"playground": __version__, "torch": torch.__version__,
                         "transformers": transformers.__version__, "bitsandbytes": bitsandbytes.__version__},
        }


def explain_failure(exc: BaseException) -> str:
    """A generate that raised, in the user's terms (out of memory says what to change)."""
    import torch

    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower():
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return ("Out of memory during generation: lower max new tokens, shorten the prompt, or load the "
                "model in nf4.")
    return f"Generation failed: {type(exc).__name__}: {exc}"


def generate_all(engine: Engine, prompt: str, system: str | None = None,
                 lanes: dict[str, LaneSettings] | None = None) -> dict[str, LaneResult]:
    """Run to completion and return each lane's result (the thin non-streaming wrapper)."""
    return engine.start(prompt, system, lanes).collect()


__all__ = ["Engine", "Run", "generate_all"]
