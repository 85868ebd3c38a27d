"""Running a notebook cell with everything saved as it happens (no gradio).

A cell run saves the cell's inputs, starts the backend's run and hands it to a Recorder
(playground.app.recorder): one run row per lane, checkpoints at least once a second, each lane's
final state and the final reproducibility record as it ends, its grades, and, when the consumer
goes away mid-run (a closed tab, a cancelled event), what still runs saved as stopped.
"""

from __future__ import annotations

from collections.abc import Iterator

from playground.app.recorder import Execution, Recorder
from playground.app.service import LaneView, Playground
from playground.backends.base import RunLike
from playground.lanes import LaneSettings


class Notebook:
    """Cells of stored sessions run on the playground's backend."""

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
        cell = self.store.update_cell(owner, cell_id, prompt=prompt, system_prompt=system or None, settings=settings)
        run = self.pg.start_run(key, prompt, system, lanes, owner=owner)
        recorder = Recorder(self.store, owner, run, [Execution(cell, {lane: lane for lane in lanes})],
                            self.pg.require_backend().reproducibility_record(run), self.run_code)
        recorder.start()
        try:
            for views in self.pg.stream_views(key, run):
                recorder.step()
                yield views, run
        finally:
            recorder.close()
