"""Paired generation: the lanes of a prompt as rows of one running batch, streamed as lane events.

The engine knows nothing of the UI. `Engine.start(...)` returns a `Run`; iterating it yields
torch-free `LaneUpdate`s (token ids, a UTF-8-safe text delta split into reasoning and answer,
and a monotonic timestamp taken right after the decode step). A remote backend can yield the
same updates. Each lane has its own sampling, seed, max tokens and thinking budget (rows.py
picks every row's token itself, with the row's own torch.Generator), so a lane's output never
depends on the other rows in the batch. The rows of every run on the engine, whoever started it,
share decode steps: they join the batch at the next step and leave it when they end
(scheduler.StepScheduler, on our own decode loop over the model's forward: stepper.DecodeBatch).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from playground.backends.local.admission import KvRoom
from playground.backends.local.scheduler import StepScheduler
from playground.config import MAX_CONCURRENT_RUNS
from playground.lanes import LaneResult, LaneSettings, LaneUpdate
from playground.prompting.prompts import LanePrompt, build_prompt


class Run:
    """One execution of one prompt over several lanes. Iterate it for LaneUpdates; `results` holds
    each lane's accumulated LaneResult; `stop()` ends generation within one decode step. `owner` (who
    the run is for) is what the scheduler's fairness counts; a run without one counts as its own."""

    def __init__(self, engine: Engine, prompts: dict[str, LanePrompt], settings: dict[str, LaneSettings],
                 owner: str | None = None):
        self.engine = engine
        self.prompts = prompts
        self.settings = settings
        self.owner = owner
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
    """Runs lanes on one loaded model: every run's rows share the decode steps of one batch, up to
    `max_runs` runs at once and as many as the memory plan's KV room holds (admission.KvRoom).
    Satisfies playground.backends.base.Backend, as the remote backend does."""

    kind = "local"

    def __init__(self, loaded, max_runs: int = MAX_CONCURRENT_RUNS):
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.lock = threading.Lock()  # held by the step loop while any row runs
        tok = self.tokenizer
        eos = loaded.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tok.eos_token_id is not None:
            eos_ids.add(tok.eos_token_id)
        self.eos_ids = eos_ids
        self.eos_list = sorted(eos_ids)
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        # Control tokens are stripped from text; think tags stay even where they are special tokens.
        self.skip_ids = {i for i in tok.all_special_ids if "think" not in str(tok.convert_ids_to_tokens(i))}
        self.room = KvRoom(loaded.plan)
        self.scheduler = StepScheduler(self, max_runs, self.room, self.lock)

    @property
    def style(self) -> str:
        return self.loaded.source.reasoning_style

    @property
    def max_runs(self) -> int:
        return self.scheduler.max_runs

    def start(self, prompt: str, system: str | None = None, lanes: dict[str, LaneSettings] | None = None,
              owner: str | None = None) -> Run:
        """Build every lane's prompt with the model's chat template and return a Run to iterate."""
        lanes = lanes or {"standard": LaneSettings(), "reasoning": LaneSettings()}
        prompts = {lane: build_prompt(self.tokenizer, self.style, lane, prompt, system) for lane in lanes}
        return Run(self, prompts, lanes, owner)

    def start_prompts(self, prompts: dict[str, LanePrompt], lanes: dict[str, LaneSettings],
                      owner: str | None = None) -> Run:
        return Run(self, prompts, lanes, owner)

    def _execute(self, run: Run) -> Iterator[LaneUpdate]:
        return self.scheduler.execute(run)

    def execute_alone(self, run: Run) -> Iterator[LaneUpdate]:
        """Run `run` on a step loop of its own that takes no lock: the ZeroGPU worker's way, whose
        parent holds the engine lock for it (the fork copied that lock held)."""
        return StepScheduler(self, 1, self.room, lock=None, idle_exit_s=0).execute(run)

    def reproducibility_record(self, run) -> dict:
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
            # Rows of other runs may share this run's decode steps; "shared_steps" (added when the run
            # ends) says how many. Greedy tokens do not depend on them; float rounding across batch
            # shapes can flip a near-tie.
            "scheduler": {"kind": "step", "max_runs": self.max_runs},
            "versions": {"playground": __version__, "torch": torch.__version__,
                         "transformers": transformers.__version__, "bitsandbytes": bitsandbytes.__version__},
        }


def generate_all(engine: Engine, prompt: str, system: str | None = None,
                 lanes: dict[str, LaneSettings] | None = None) -> dict[str, LaneResult]:
    """Run to completion and return each lane's result (the thin non-streaming wrapper)."""
    return engine.start(prompt, system, lanes).collect()


__all__ = ["Engine", "Run", "generate_all"]
