"""Running a notebook cell with everything saved as it happens (no gradio).

A cell run saves the cell's inputs, starts the backend's run and hands it to a Recorder
(playground.app.recorder): one run row per lane, checkpoints at least once a second, each lane's
final state and the final reproducibility record as it ends, its grades, and, when the consumer
goes away mid-run (a closed tab, a cancelled event), what still runs saved as stopped.
"""

from __future__ import annotations

from collections.abc import Iterator

from playground.app.conversation import lane_histories
from playground.app.recorder import Execution, Recorder
from playground.app.service import LaneView, Playground
from playground.backends.base import RunLike
from playground.errors import InvalidInput
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
        yield from self._record(owner, run, key, Execution(cell, {lane: lane for lane in lanes}, prompt=prompt))

    def follow_up(self, owner: str, cell_id: str, key: str, prompt: str, lanes: dict[str, LaneSettings],
                  keep_reasoning: bool = False, parent: int | None = None
                  ) -> Iterator[tuple[dict[str, LaneView], RunLike]]:
        """Run the next turn of the cell's conversation (after execution `parent`, default the latest)
        in every lane, each with its own earlier turns; yields as run_cell does. Everything is checked
        (the cell is the owner's and ran, the prompt, the context) before anything is saved."""
        self.pg.check_run_input(prompt, None, lanes)
        full = self.store.get_cell_full(owner, cell_id)
        parent, histories = lane_histories(full, parent)
        if set(lanes) - set(histories):
            raise InvalidInput(f"The {', '.join(sorted(set(lanes) - set(histories)))} lane did not run in the turn "
                               "this follow-up continues: run the cell with that lane first.")
        run = self.pg.start_run(key, prompt, full.system_prompt, lanes, owner=owner, history=histories,
                                keep_reasoning=keep_reasoning)
        ex = Execution(full, {lane: lane for lane in lanes}, {"keep_reasoning": bool(keep_reasoning)},
                       parent=parent, prompt=prompt)
        yield from self._record(owner, run, key, ex)

    def _record(self, owner: str, run: RunLike, key: str, ex: Execution
                ) -> Iterator[tuple[dict[str, LaneView], RunLike]]:
        recorder = Recorder(self.store, owner, run, [ex], self.pg.require_backend().reproducibility_record(run),
                            self.run_code)
        recorder.start()
        try:
            for views in self.pg.stream_views(key, run):
                recorder.step()
                yield views, run
        finally:
            recorder.close()
