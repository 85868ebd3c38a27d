"""End-to-end tests of the real server (`python app.py`) with the embedded SmolLM2 model, over HTTP and
gradio_client: /healthz, streaming runs, stop, input validation, memory plans and loading errors.

No mocks: every request goes to the subprocess started by the `server` fixture. Timing is only bounded
generously (a noisy 2-core machine runs these), never measured.
"""

from __future__ import annotations

import re
import time

import httpx
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from playground.prompting.catalog import PRESETS

pytestmark = pytest.mark.timeout(300)

EMBEDDED_ID = PRESETS["embedded"].repo_id
# Outputs of /run, in order.
STD_STATUS, STD_ANSWER, RSN_STATUS, RSN_TRACE, RSN_ANSWER = range(5)
# "... reasoning 3 / answer 12 tokens ..." in a lane's metrics line.
TOKENS_RE = re.compile(r"reasoning (\d+) / answer (\d+) tokens")


def run_args(prompt: str = "What is 2+2?", system: str = "", *, s_max=24, s_temp=0, s_top_p=1, s_top_k=0, s_seed=0,
             r_max=24, r_temp=0, r_top_p=1, r_top_k=0, r_seed=0, r_budget=None) -> tuple:
    """The 13 inputs of /run in the order of `run_inputs` in playground/ui/app.py (greedy by default)."""
    return (prompt, system, s_max, s_temp, s_top_p, s_top_k, s_seed, r_max, r_temp, r_top_p, r_top_k, r_seed,
            r_budget)


def generated_tokens(status: str) -> int:
    m = TOKENS_RE.search(status)
    assert m, f"no token counts in status line {status!r}"
    return int(m.group(1)) + int(m.group(2))


def status_word(status: str) -> str:
    """'**Standard** ✅ done · TTFT …' -> 'done'."""
    return status.split(" · ")[0].split()[-1]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    """Poll `predicate` until it is truthy, at most `timeout` seconds (and a bounded number of polls)."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 1):
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            break
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def assert_finished_normally(out: tuple) -> None:
    for idx, lane in ((STD_STATUS, "Standard"), (RSN_STATUS, "Reasoning")):
        status = out[idx]
        assert status.startswith(f"**{lane}**"), status
        assert status_word(status) == "done", status
        # The metrics line follows the status once a lane is done.
        for part in ("TTFT", "first answer token", "tok/s", "ITL p50"):
            assert part in status, f"{part!r} missing from {status!r}"
        assert generated_tokens(status) > 0, status
    assert out[STD_ANSWER].strip(), "the standard lane gave an empty answer"


@pytest.fixture
def client(server) -> Client:
    return Client(server.url, verbose=False)


def test_healthz_reports_the_loaded_model(server):
    r = httpx.get(server.url + "/healthz", timeout=10)
    assert r.status_code == 200
    body = r.json()
    assert body["ok"] is True
    assert body["model"] == EMBEDDED_ID


def test_run_streams_updates_and_finishes_both_lanes(client):
    job = client.submit(*run_args("Name three colors."), api_name="/run")
    seen = []
    deadline = time.monotonic() + 120
    for out in job:  # ends when the job finishes; pytest-timeout guards a hung server
        seen.append(out)
        assert len(seen) < 10_000 and time.monotonic() < deadline, "the run streamed for too long"
    final = job.result(timeout=30)
    assert seen and tuple(seen[-1]) == tuple(final)
    assert len(seen) - 1 > 2, f"only {len(seen) - 1} intermediate updates before the final one"
    # The first update is the queued placeholder; later ones show the lanes running.
    assert status_word(seen[0][STD_STATUS]) == "queued"
    assert any(status_word(o[STD_STATUS]) == "running" for o in seen[1:-1])
    assert_finished_normally(final)
    # The standard lane never reasons; the reasoning trace is escaped text, never raw markup.
    assert "<think>" not in final[RSN_TRACE]
    assert generated_tokens(final[STD_STATUS]) <= 24 and generated_tokens(final[RSN_STATUS]) <= 24


def test_greedy_runs_are_reproducible(client):
    args = run_args("Name three colors.", s_max=20, r_max=20)
    first = client.submit(*args, api_name="/run").result(timeout=120)
    second = client.submit(*args, api_name="/run").result(timeout=120)
    assert_finished_normally(first)
    assert_finished_normally(second)
    for idx in (STD_ANSWER, RSN_TRACE, RSN_ANSWER):
        assert first[idx] == second[idx]
    for idx in (STD_STATUS, RSN_STATUS):
        # Everything but the timings matches: status, token counts and finish reason.
        assert status_word(first[idx]) == status_word(second[idx])
        assert TOKENS_RE.search(first[idx]).group(0) == TOKENS_RE.search(second[idx]).group(0)
        assert first[idx].rsplit(" · ", 1)[-1] == second[idx].rsplit(" · ", 1)[-1]


def test_stop_ends_a_long_run_and_the_client_can_run_again(client):
    job = client.submit(*run_args("Write a very long story about a dragon.", s_max=2000, r_max=2000),
                        api_name="/run")
    # Wait until generation has visibly started (the first update is only the queued placeholder).
    wait_until(lambda: any(o[STD_ANSWER] for o in job.outputs()), 60, "the first streamed tokens")
    assert client.predict(api_name="/stop") == "stopping"
    wait_until(job.done, 60, "the stopped run to finish")
    final = job.result(timeout=10)
    for idx in (STD_STATUS, RSN_STATUS):
        assert status_word(final[idx]) == "stopped", final[idx]
        assert final[idx].endswith("stopped"), final[idx]  # finish reason
        assert generated_tokens(final[idx]) < 2000, final[idx]
    assert final[STD_ANSWER].strip(), "the tokens streamed before the stop are kept"
    # Nothing is left running for this client, and it can run again normally.
    assert client.predict(api_name="/stop") == "nothing to stop"
    again = client.submit(*run_args(s_max=16, r_max=16), api_name="/run").result(timeout=120)
    assert_finished_normally(again)


def test_stop_from_another_client_does_not_touch_my_run(server, client):
    other = Client(server.url, verbose=False)
    job = client.submit(*run_args("Name three colors.", s_max=40, r_max=40), api_name="/run")
    wait_until(lambda: any(o[STD_ANSWER] or o[RSN_TRACE] for o in job.outputs()), 60, "the first streamed tokens")
    assert other.predict(api_name="/stop") == "nothing to stop"
    final = job.result(timeout=120)
    assert_finished_normally(final)


BAD_RUNS = [
    pytest.param(dict(prompt=""), ["empty"], id="empty-prompt"),
    pytest.param(dict(prompt="  \n\t  "), ["empty"], id="whitespace-prompt"),
    pytest.param(dict(prompt="x" * 20_001), ["20,001", "limit", "20,000"], id="prompt-over-limit"),
    pytest.param(dict(prompt="a\x00b"), ["NUL"], id="nul-in-prompt"),
    pytest.param(dict(s_max=0), ["standard", "max_new_tokens", "out of range"], id="max-tokens-0"),
    pytest.param(dict(s_max=-5), ["standard", "max_new_tokens", "-5"], id="max-tokens-negative"),
    pytest.param(dict(r_max=10**9), ["reasoning", "max_new_tokens", "8192"], id="max-tokens-huge"),
    pytest.param(dict(s_max=None), ["standard lane", "max_new_tokens", "empty"], id="max-tokens-missing"),
    pytest.param(dict(s_temp="abc"), ["temperature", "not a number"], id="temperature-abc"),
    # gradio_client cannot put a float NaN into JSON, so NaN travels as text here (raw JSON NaN: below).
    pytest.param(dict(s_temp="NaN"), ["temperature", "finite"], id="temperature-nan"),
    pytest.param(dict(r_temp=-1), ["reasoning", "temperature", "out of range"], id="temperature-negative"),
    pytest.param(dict(s_top_p=0), ["standard", "top_p", "(0, 1]"], id="top-p-0"),
    pytest.param(dict(r_top_p=2), ["reasoning", "top_p", "(0, 1]"], id="top-p-2"),
    pytest.param(dict(r_budget=-1), ["thinking_budget"], id="budget-negative"),
]


@pytest.mark.parametrize(("change", "expected"), BAD_RUNS)
def test_bad_run_input_gets_a_clear_error(client, change, expected):
    job = client.submit(*run_args(**change), api_name="/run")
    with pytest.raises(AppError) as err:
        job.result(timeout=60)
    message = str(err.value)
    assert "Unexpected error" not in message, message
    for part in expected:
        assert part in message, f"{part!r} missing from error {message!r}"


def test_nan_in_raw_json_gets_a_clear_error(server):
    """A NaN literal in the request JSON (what a non-Python client may send) is refused by name."""
    body = '{"data": ["Hi", "", 8, NaN, 1, 0, 0, 8, 0, 1, 0, 0, null]}'
    r = httpx.post(server.url + "/gradio_api/call/run", content=body,
                   headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 200, r.text
    event_id = r.json()["event_id"]
    events = httpx.get(f"{server.url}/gradio_api/call/run/{event_id}", timeout=60).text
    assert "event: error" in events, events
    assert "temperature" in events and "finite" in events, events


def test_server_still_serves_after_bad_input(client):
    out = client.submit(*run_args(s_max=16, r_max=16), api_name="/run").result(timeout=120)
    assert_finished_normally(out)


def test_plan_for_hermes_405b(client):
    fits = client.predict("hermes-4-405b", "nf4", "2×H200", api_name="/plan")
    assert "✅ fits" in fits and "does not fit" not in fits, fits
    assert "Hermes 4 405B" in fits and "nf4" in fits
    assert "H200#0" in fits and "H200#1" in fits, fits

    short = client.predict("hermes-4-405b", "nf4", "1×H200", api_name="/plan")
    assert "does not fit" in short and "✅" not in short, short
    assert "short by" in short
    assert "H200#0" in short and "H200#1" not in short


@pytest.mark.parametrize(("ref", "hardware", "expected"), [
    pytest.param("hermes-4-405b", "2×B999", ["unknown GPU", "B999", "H200"], id="unknown-gpu"),
    pytest.param("hermes-4-405b", "0×H200", ["GPU count 0", "1–64"], id="zero-gpus"),
    pytest.param("no-such-preset", "1×H200", ["no-such-preset", "neither a preset"], id="unknown-model"),
])
def test_plan_errors_are_clear(client, ref, hardware, expected):
    job = client.submit(ref, "nf4", hardware, api_name="/plan")
    with pytest.raises(AppError) as err:
        job.result(timeout=60)
    message = str(err.value)
    assert "Unexpected error" not in message, message
    for part in expected:
        assert part in message, f"{part!r} missing from error {message!r}"


def test_load_errors_keep_the_old_model(server, client, tmp_path):
    job = client.submit("/nonexistent/model", "nf4", "", api_name="/load")
    with pytest.raises(AppError) as err:
        job.result(timeout=60)
    assert "/nonexistent/model" in str(err.value) and "does not exist" in str(err.value), str(err.value)

    # An existing folder that is not a model folder is named as such.
    job = client.submit(str(tmp_path), "nf4", "", api_name="/load")
    with pytest.raises(AppError) as err:
        job.result(timeout=60)
    assert "config.json" in str(err.value), str(err.value)

    assert httpx.get(server.url + "/healthz", timeout=10).json()["model"] == EMBEDDED_ID
    out = client.submit(*run_args(s_max=16, r_max=16), api_name="/run").result(timeout=120)
    assert_finished_normally(out)


# --- the notebook's named endpoints ----------------------------------------------------------------

def test_run_cell_streams_both_lanes_and_saves_them(server):
    client = Client(server.url, verbose=False)
    session = client.predict("api session", api_name="/new_session")
    cell = client.predict(session["id"], "What is 3 + 4?", "", api_name="/add_cell")
    job = client.submit(cell["id"], "What is 3 + 4?", "", {"max_new_tokens": 24}, {"max_new_tokens": 32},
                        api_name="/run_cell")
    updates = list(job)
    assert len(updates) >= 2
    final = job.outputs()[-1]
    assert {final[lane]["status"] for lane in ("standard", "reasoning")} == {"done"}
    saved = client.predict(session["id"], api_name="/get_session")
    latest = saved["cells"][0]["latest"]
    assert saved["cells"][0]["executions"] == 1
    for lane in ("standard", "reasoning"):
        assert latest[lane]["answer"] == final[lane]["answer"]
        assert latest[lane]["tokens"] == final[lane]["metrics"]["generated_tokens"]
    assert any(s["id"] == session["id"] for s in client.predict("", api_name="/sessions"))


def test_run_cell_refuses_bad_input_and_saves_nothing(server):
    client = Client(server.url, verbose=False)
    session = client.predict("bad input", api_name="/new_session")
    cell = client.predict(session["id"], "x", "", api_name="/add_cell")
    for prompt, std in [("  ", {}), ("hi", {"max_new_tokens": -1}), ("hi", {"temperature": "hot"}),
                        ("hi", {"nonsense": 1})]:
        with pytest.raises(AppError) as err:
            client.predict(cell["id"], prompt, "", std, {}, api_name="/run_cell")
        assert "Unexpected" not in str(err.value)
    assert client.predict(session["id"], api_name="/get_session")["cells"][0]["executions"] == 0


def test_follow_up_streams_both_lanes_and_get_session_shows_the_turns(server):
    client, mallory = Client(server.url, verbose=False), Client(server.url, verbose=False)
    session = client.predict("follow-ups", api_name="/new_session")
    cell = client.predict(session["id"], "What is 3 + 4?", "", api_name="/add_cell")
    with pytest.raises(AppError, match="not run yet"):
        client.predict(cell["id"], "And times two?", {}, {}, api_name="/follow_up")
    client.predict(cell["id"], "What is 3 + 4?", "", {"max_new_tokens": 12}, {"max_new_tokens": 12},
                   api_name="/run_cell")
    with pytest.raises(AppError):
        mallory.predict(cell["id"], "And times two?", {}, {}, api_name="/follow_up")
    with pytest.raises(AppError, match="keep_reasoning"):
        client.predict(cell["id"], "And times two?", {}, {"keep_reasoning": "yes"}, api_name="/follow_up")
    job = client.submit(cell["id"], "And times two?", {"max_new_tokens": 12},
                        {"max_new_tokens": 12, "keep_reasoning": True}, api_name="/follow_up")
    final = job.result(timeout=300)
    assert {final[lane]["status"] for lane in ("standard", "reasoning")} == {"done"}
    [saved] = client.predict(session["id"], api_name="/get_session")["cells"]
    assert saved["executions"] == 2
    assert [(t["turn"], t["prompt"]) for t in saved["turns"]] == [(1, "What is 3 + 4?"), (2, "And times two?")]
    second = saved["turns"][1]["lanes"]
    for lane in ("standard", "reasoning"):
        assert second[lane]["answer"] == final[lane]["answer"]
        assert second[lane]["prompt_tokens"] > saved["turns"][0]["lanes"][lane]["prompt_tokens"]


def test_stop_cell_stops_a_long_run(server):
    client = Client(server.url, verbose=False)
    session = client.predict("stop me", api_name="/new_session")
    cell = client.predict(session["id"], "Write a long story.", "", api_name="/add_cell")
    long = {"max_new_tokens": 2000, "min_new_tokens": 2000}
    job = client.submit(cell["id"], "Write a long story.", "", long, long, api_name="/run_cell")
    deadline = time.time() + 60
    while time.time() < deadline and not any((u.get("standard") or {}).get("text") for u in job.outputs()):
        time.sleep(0.2)
    assert client.predict(cell["id"], api_name="/stop_cell") == "stopping"
    final = job.result(timeout=60)
    assert final["standard"]["status"] == "stopped"
    assert final["standard"]["metrics"]["generated_tokens"] < 2000


def test_a_client_cannot_reach_another_clients_session(server):
    alice, mallory = Client(server.url, verbose=False), Client(server.url, verbose=False)
    session = alice.predict("alice's secrets", api_name="/new_session")
    cell = alice.predict(session["id"], "private prompt", "", api_name="/add_cell")
    with pytest.raises(AppError):
        mallory.predict(session["id"], api_name="/get_session")
    with pytest.raises(AppError):
        mallory.predict(cell["id"], "hijack", "", {}, {}, api_name="/run_cell")
    assert all(s["id"] != session["id"] for s in mallory.predict("", api_name="/sessions"))


def test_public_mode_refuses_model_paths_but_not_presets(models_dir, tmp_path):
    from playground.app.service import Playground
    from playground.config import Settings
    from playground.errors import InvalidInput

    pg = Playground(Settings(public=True, allowed_models=["embedded"], home=tmp_path))
    for ref in ("/etc", "../models", "NousResearch/Hermes-4-14B", "hermes-4-405b"):
        with pytest.raises(InvalidInput) as err:
            pg.load(ref, "nf4", visitor=True)
        assert "public" in str(err.value)
    with pytest.raises(Exception) as err:  # the operator's own choice is not limited (and fails offline here)
        pg.load("NousResearch/Hermes-4-14B", "nf4")
    assert "public" not in str(err.value)


def test_public_endpoints_keep_their_names(server):
    """A UI handler named like an endpoint (a batch panel's `stop`) must not push /stop to /stop_1."""
    import re

    import httpx

    names = set(httpx.get(server.url + "/gradio_api/info", timeout=10).json()["named_endpoints"])
    assert {"/run", "/stop", "/sessions", "/new_session", "/get_session", "/add_cell", "/run_cell",
            "/stop_cell", "/follow_up"} <= names
    assert not [n for n in names if re.search(r"_\d+$", n)]
