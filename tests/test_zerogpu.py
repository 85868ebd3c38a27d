"""ZeroGPU: generation runs inside spaces.GPU, in a forked worker, and nothing else can tell.

`tests/zero_gpu_stub/spaces` stands in for the platform (fork per call, pickled arguments and
results); the model, the engine and the server are the real ones."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from bench.common import ServerProcess
from playground.backends.local.engine import generate_all
from playground.lanes import LaneSettings

STUB = Path(__file__).parent / "zero_gpu_stub"
LANES = {"standard": LaneSettings(max_new_tokens=12), "reasoning": LaneSettings(max_new_tokens=24)}


@pytest.fixture
def zero_gpu(monkeypatch):
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    monkeypatch.syspath_prepend(str(STUB))
    sys.modules.pop("spaces", None)
    import spaces

    spaces.calls.clear()
    yield spaces
    sys.modules.pop("spaces", None)


@pytest.fixture
def zero_engine(zero_gpu, loaded_nf4):
    from playground.backends import local_backend
    from playground.backends.zerogpu import ZeroGpuEngine
    from playground.config import Settings

    eng = local_backend(loaded_nf4, Settings(zero_gpu_duration_s=77))
    assert isinstance(eng, ZeroGpuEngine)
    return eng


def test_off_zero_gpu_the_plain_engine_is_used(loaded_nf4, monkeypatch):
    from playground.backends import local_backend
    from playground.backends.zerogpu import ZeroGpuEngine
    from playground.config import Settings

    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    assert not isinstance(local_backend(loaded_nf4, Settings()), ZeroGpuEngine)


def test_runs_in_a_forked_worker_and_equals_the_local_engine(zero_engine, zero_gpu, engine):
    prompt = "Name a colour."
    local = generate_all(engine, prompt, lanes=LANES)
    remote = generate_all(zero_engine, prompt, lanes=LANES)
    assert len(zero_gpu.calls) == 1
    call = zero_gpu.calls[0]
    assert call["duration"] == 77 and call["pid"] not in (None, os.getpid())
    for lane in LANES:
        a, b = local[lane], remote[lane]
        # Greedy decoding: the same tokens, split the same way, whichever process made them.
        assert (b.text, b.reasoning, b.answer, b.token_ids, b.token_kinds) == (a.text, a.reasoning, a.answer,
                                                                              a.token_ids, a.token_kinds)
        assert b.status == a.status == "done" and len(b.token_times) == len(b.token_ids) > 0


def test_the_mirrored_result_is_what_the_worker_built(zero_engine):
    run = zero_engine.start("Say hello.", None, LANES)
    mirrored = {}
    for u in run:
        if u.kind == "done":
            r = run.results[u.lane]
            mirrored[u.lane] = (r.text, list(r.token_ids), list(r.token_kinds), r.status)
    # The worker's final results replaced the mirror at the end; they agree.
    for lane, r in run.results.items():
        assert mirrored[lane] == (r.text, r.token_ids, r.token_kinds, r.status)
    assert run.record["zero_gpu"] is True


def test_runs_saved_on_zero_gpu_store_the_flag(zero_engine, loaded_nf4, tmp_path):
    """ZeroGPU is known once the worker has started the run: the STORED record of a notebook cell and
    of a batch job (rows keyed per job in one worker call) both say zero_gpu."""
    from playground.app.batch_jobs import plan_jobs, run_jobs
    from playground.app.notebook import Notebook
    from playground.app.service import Playground
    from playground.store import open_store

    pg = Playground()
    pg.loaded, pg.backend = loaded_nf4, zero_engine
    with open_store(tmp_path / "zero.db") as store:
        sid = store.create_session("me", "zero").id
        cell = store.add_cell("me", sid, prompt="Name a colour.")
        batch_cell = store.add_cell("me", sid, prompt="Name a fruit.",
                                    settings={lane: {"max_new_tokens": 6} for lane in LANES})
        list(Notebook(pg, store).run_cell("me", cell.id, "k", "Name a colour.", None, LANES))
        jobs = plan_jobs(store.get_session("me", sid), zero_engine, pg.recommended(), pg.settings.max_new_tokens,
                         cell_ids=[batch_cell.id])
        list(run_jobs(pg, store, "me", jobs, batch_size=1, resume=False))
        cells = store.get_session("me", sid).cells
    for c in cells:
        for lane, run in c.latest.runs.items():
            assert run.status == "done", (c.prompt, lane)
            assert run.record["zero_gpu"] is True and run.record["model_id"] == loaded_nf4.model_id
    assert cells[1].latest.runs["reasoning"].record["batch_rows"] == 2


def test_stop_reaches_the_worker(zero_engine):
    long = LaneSettings(max_new_tokens=400)
    run = zero_engine.start("Write a long story about a lighthouse.", None, {"standard": long, "reasoning": long})
    for n, _update in enumerate(run):
        if n == 5:
            run.stop()
    assert {r.status for r in run.results.values()} == {"stopped"}
    assert all(len(r.token_ids) < 400 for r in run.results.values())


def test_a_failing_worker_ends_the_run_as_error_and_the_next_run_works(zero_engine, monkeypatch):
    import playground.backends.zerogpu as zg

    monkeypatch.setattr(zg, "_ENGINE", None)  # the forked worker inherits no engine: it fails at once
    results = generate_all(zero_engine, "Hi", lanes=LANES)
    assert {r.status for r in results.values()} == {"error"}
    assert all("GPU worker failed" in r.error for r in results.values())
    monkeypatch.undo()
    zg._ENGINE = zero_engine
    assert {r.status for r in generate_all(zero_engine, "Hi", lanes=LANES).values()} == {"done"}


def test_a_zero_gpu_space_serves_a_run(models_dir, tmp_path):
    """`python app.py` as a ZeroGPU Space starts it: it says so, and a run goes through spaces.GPU."""
    from gradio_client import Client

    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(models_dir, target_is_directory=True)
    srv = ServerProcess(home, env={"SPACE_ID": "user/playground", "SPACES_ZERO_GPU": "true",
                                   "PYTHONPATH": str(STUB), "PLAYGROUND_FETCH_EMBEDDED": "0"})
    try:
        srv.wait_ready()
        client = Client(srv.url, verbose=False)
        session = client.predict("zero", api_name="/new_session")
        cell = client.predict(session["id"], "What is 2 + 2?", "", api_name="/add_cell")
        final = client.submit(cell["id"], "What is 2 + 2?", "", {"max_new_tokens": 8}, {"max_new_tokens": 8},
                              api_name="/run_cell").result(timeout=180)
        assert {final[lane]["status"] for lane in ("standard", "reasoning")} == {"done"}
        log = srv.log_path.read_text()
        assert "ZeroGPU: yes" in log and "Traceback" not in log
    finally:
        srv.stop()
