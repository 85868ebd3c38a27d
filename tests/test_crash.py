"""kill -9 the real server mid-run, start it again: the run is `interrupted` with its tokens kept."""

from __future__ import annotations

import os
import signal
import time

from gradio_client import Client

from bench.common import ServerProcess
from playground.store import open_store


def test_sigkill_mid_run_keeps_every_checkpointed_token(tmp_path, models_dir):
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(models_dir)  # reuse the converted model: no second conversion
    server = ServerProcess(home)
    try:
        server.wait_ready()
        client = Client(server.url, verbose=False)
        session = client.predict("crash", api_name="/new_session")
        cell = client.predict(session["id"], "Write a long story about a lighthouse.", "", api_name="/add_cell")
        long = {"max_new_tokens": 3000, "min_new_tokens": 3000}
        job = client.submit(cell["id"], "Write a long story about a lighthouse.", "", long, long,
                            api_name="/run_cell")
        deadline = time.time() + 120
        seen = 0
        while time.time() < deadline and seen < 40:  # ~2 s of tokens: at least one checkpoint written
            outs = job.outputs()
            seen = (outs[-1]["standard"]["metrics"] or {}).get("generated_tokens", 0) if outs else 0
            time.sleep(0.2)
        assert seen >= 40
        time.sleep(1.5)  # one more checkpoint interval
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=30)
    finally:
        server.stop()

    with open_store(home / "playground.db") as store:
        runs = store.get_session(store.owner_of_session(session["id"]), session["id"]).cells[0].latest.runs
        assert {r.status for r in runs.values()} == {"running"}  # nobody finished them: the process died
    restarted = ServerProcess(home)
    try:
        restarted.wait_ready()
    finally:
        restarted.stop()
    with open_store(home / "playground.db") as store:
        assert store.integrity_ok()
        runs = store.get_session(store.owner_of_session(session["id"]), session["id"]).cells[0].latest.runs
        for r in runs.values():
            assert r.status == "interrupted"
            assert r.generated_tokens >= 20 and len(r.token_ids) == len(r.token_times) == r.generated_tokens
            assert r.raw_text and r.token_times == sorted(r.token_times)
