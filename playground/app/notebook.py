"""Running a notebook cell with everything saved as it happens (no gradio).

A cell run starts an execution in the store (one run row per lane, status "running"), streams
the engine's run, checkpoints every lane's partial text and timings at least once a second,
and writes each lane's final state in one transaction at the end — also when the consumer
goes away mid-run (a closed tab, a cancelled event), so nothing generated is ever lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from playground.app.service import LaneView, Playground
from playground.backends.base import RunLike
from playground.errors import StoreBusy
from playground.evaluation.graders import Grade
from playground.evaluation.metrics import result_metrics
from playground.lanes import LaneResult, LaneSettings

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_S = 1.0


def lane_payload(r: LaneResult) -> dict:
    """A lane's partial or final state in the store's terms (times relative to the run start)."""
    n = min(len(r.token_ids), len(r.token_times), len(r.token_kinds), len(r.forced))
    return dict(raw_text=r.text, reasoning_text=r.reasoning, answer_text=r.answer,
                token_ids=list(r.token_ids[:n]), token_times=[round(t - r.t_start, 6) for t in r.token_times[:n]],
                token_kinds=list(r.token_kinds[:n]), forced=list(r.forced[:n]))


class Notebook:
    """Cells of stored sessions run on the playground's engine."""

    def __init__(self, pg: Playground, store):
        self.pg = pg
        self.store = store

    @property
    def run_code(self):
        """The python grader's runner, or None where code grading is off (PLAYGROUND_CODE_GRADING)."""
        if not self.pg.settings.code_grading_on:
            return None
        from playground.evaluation.sandbox import run_code_test

        return run_code_test

    def run_cell(self, owner: str, cell_id: str, key: str, prompt: str, system: str | None,
                 lanes: dict[str, LaneSettings]) -> Iterator[tuple[dict[str, LaneView], RunLike]]:
        """Save the cell's inputs, run it, and yield (every lane's view, the run) at most ~25 times a second."""
        settings = {lane: s.to_dict() for lane, s in lanes.items()}
        # Validate, then save (which also proves the cell is this owner's), and only then start the run.
        self.pg.check_run_input(prompt, system, lanes)
        self.store.update_cell(owner, cell_id, prompt=prompt, system_prompt=system or None, settings=settings)
        run = self.pg.start_run(key, prompt, system, lanes, owner=owner)
        record = self.pg.require_backend().reproducibility_record(run)
        run_ids = self.store.start_execution(owner, cell_id, settings, record)
        last_checkpoint = time.perf_counter()
        finished: set[str] = set()
        try:
            for views in self.pg.stream_views(key, run):
                now = time.perf_counter()
                for lane, r in run.results.items():
                    if r.status != "running" and lane not in finished:
                        self._finish(run_ids[lane], r)
                        finished.add(lane)
                if now - last_checkpoint >= CHECKPOINT_INTERVAL_S:
                    last_checkpoint = now
                    self._checkpoint(run, run_ids, finished)
                yield views, run
        finally:
            run.stop()  # a no-op when the run already ended; stops it when the consumer went away
            for lane, run_id in run_ids.items():
                r = run.results.get(lane)
                if r is None:  # never started (the consumer left while queued): an empty stopped run
                    self.store.finish_run(run_id, status="stopped", prompt_tokens=len(run.prompts[lane].input_ids),
                                          metrics=None, finish_reason="stopped", error=None, raw_text="",
                                          reasoning_text="", answer_text="", token_ids=[], token_times=[],
                                          token_kinds=[], forced=[])
                elif lane not in finished:
                    if r.status == "running":
                        r.status, r.finish_reason = "stopped", "stopped"
                    self._finish(run_ids[lane], r)
            self._grade(owner, cell_id, run_ids, run)

    def _checkpoint(self, run: RunLike, run_ids: dict[str, str], finished: set[str]) -> None:
        """Save the partial lanes. A checkpoint is insurance against a crash, not the result: a database
        locked past its busy timeout costs this one and the run goes on (the finish writes everything).
        A full disk does stop the run: nothing more could be kept, so generating on would be waste."""
        try:
            for lane, r in run.results.items():
                if lane not in finished:
                    self.store.checkpoint_run(run_ids[lane], **lane_payload(r))
        except StoreBusy as exc:
            log.warning("checkpoint skipped, the run goes on: %s", exc)

    def _grade(self, owner: str, cell_id: str, run_ids: dict[str, str], run: RunLike) -> dict[str, Grade]:
        """Grade each finished lane's answer against the cell's expected answer and cache the grade
        on its run. A grade is derived data: a failure to grade is logged, never raised."""
        from types import SimpleNamespace

        from playground.evaluation.verdict import grade_record, has_grader, lane_grade

        try:
            cell = self.store.get_cell(owner, cell_id)
            if not has_grader(cell):
                return {}
            grades = {}
            for lane, run_id in run_ids.items():
                r = run.results.get(lane)
                if r is None or r.status == "running":
                    continue
                g = lane_grade(cell, SimpleNamespace(status=r.status, answer_text=r.answer, grade=None), self.run_code)
                self.store.set_grade(run_id, grade_record(cell, g))
                grades[lane] = g
            return grades
        except Exception:
            log.exception("grading cell %s failed", cell_id)
            return {}

    def _finish(self, run_id: str, r: LaneResult) -> None:
        m = result_metrics(r)
        self.store.finish_run(run_id, status=r.status, prompt_tokens=r.prompt_tokens, metrics=m.to_dict(),
                              finish_reason=r.finish_reason, error=r.error, **lane_payload(r))
