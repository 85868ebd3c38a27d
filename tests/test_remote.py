"""The remote backend against a real OpenAI-compatible server (`transformers serve` on the embedded model),
and against a small local server that injects the errors a real one cannot be made to give on demand.

Happy path, real: both lanes stream concurrently, the reasoning split works whether the reasoning
arrives as <think> text in the content or in the server's `reasoning_content` field, metrics and
storage are filled, stop works. Errors, injected: 401, 404, 429 (+ Retry-After), a stream cut
mid-way, a server that never answers, a closed port: each run ends `error`, fast, with the cause
named and the partial text kept. The API key never reaches the database, exports, share pages,
logs or a run's record.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from bench.common import free_port
from playground.app.service import Playground
from playground.backends.remote import RemoteBackend, RemoteConfig, RemoteError, list_models, spread
from playground.config import Settings
from playground.errors import InvalidInput
from playground.evaluation.metrics import result_metrics
from playground.lanes import LaneSettings
from playground.prompting.reasoning import parse_text

SECRET = "sk-test-7f3a9c-never-stored"
PROMPT = "What is 12*7? Think step by step."
SERVER_READY_S = 120

# The embedded model's template, plus the Qwen3 / R1 convention: with enable_thinking the template opens
# the assistant turn with <think> (the model writes reasoning after it). A real server-side switch.
THINK_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    "{% if enable_thinking is defined and enable_thinking %}{{ '<think>\n' }}{% endif %}{% endif %}"
)
# transformers serve splits reasoning into `reasoning_content` itself when the tokenizer has this.
RESPONSE_TEMPLATE = {
    "defaults": {"role": "assistant"}, "start_anchor": "<|im_start|>assistant\n",
    "fields": {"reasoning_content": {"open": "<think>", "close": "</think>", "content": "text"},
               "content": {"close_pattern": r"\s*(?:<\|im_end\|>|<\|endoftext\|>)", "content": "text"}},
}


def _variant(src: Path, dst: Path, response_template: bool) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.suffix == ".safetensors":
            (dst / f.name).symlink_to(f)  # 260 MB: share the weights
        else:
            shutil.copy(f, dst / f.name)
    (dst / "chat_template.jinja").write_text(THINK_TEMPLATE)
    if response_template:
        cfg = json.loads((dst / "tokenizer_config.json").read_text())
        cfg["response_template"] = RESPONSE_TEMPLATE
        (dst / "tokenizer_config.json").write_text(json.dumps(cfg))
    return dst


@pytest.fixture(scope="module")
def served(models_dir, tmp_path_factory):
    """`transformers serve` on 127.0.0.1 with three folders of the embedded model: as converted ("plain"),
    with a thinking template ("think", reasoning as <think> text) and with a response template too
    ("split", reasoning in reasoning_content)."""
    from playground.models.embedded import checkpoint_dir

    plain = checkpoint_dir(models_dir)
    root = tmp_path_factory.mktemp("served")
    folders = {"plain": str(plain), "think": str(_variant(plain, root / "think", False)),
               "split": str(_variant(plain, root / "split", True))}
    port = free_port()
    log_path = root / "serve.log"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    cli = Path(sys.executable).parent / "transformers"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(cli), "serve", "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
                                 "--log-level", "warning"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + SERVER_READY_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"transformers serve exited:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                pytest.fail(f"transformers serve not ready in {SERVER_READY_S}s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
        yield {"url": url, **folders, "log": log_path}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def lanes(std=48, rsn=64, **rsn_kw) -> dict[str, LaneSettings]:
    return {"standard": LaneSettings(max_new_tokens=std), "reasoning": LaneSettings(max_new_tokens=rsn, **rsn_kw)}


# --- the real server ------------------------------------------------------------------------------------


def test_connection_test_lists_the_servers_models(served):
    # transformers serve lists the models it has loaded (or cached from the Hub): run one first.
    pg = Playground(Settings(remote_url=served["url"], remote_model=served["plain"]))
    pg.use_remote()
    assert pg.remote.switch == "system_prompt"  # auto, for a model of no known family
    assert "network time" in pg.footer() and pg.recommended()[1].max_new_tokens > 0
    run = pg.start_run("k", PROMPT, None, lanes(std=4, rsn=4))
    assert {r.status for r in run.collect().values()} == {"done"}
    assert served["plain"] in pg.test_remote()


def test_paired_run_streams_both_lanes_at_once_with_reasoning_as_think_text(served):
    # top_k is not an OpenAI field: transformers serve rejects it by name, and the backend asks again without.
    backend = RemoteBackend(RemoteConfig(served["url"], model=served["think"], switch="template_kwargs"))
    run = backend.start(PROMPT, None, lanes(top_k=20))
    assert run.prompts["reasoning"].starts_in_reasoning and not run.prompts["standard"].starts_in_reasoning
    kinds_seen = {"standard": set(), "reasoning": set()}
    for u in run:
        if u.kind == "token":
            kinds_seen[u.lane].add("reasoning" if u.reasoning else "answer" if u.answer else "")
    std, rsn = run.results["standard"], run.results["reasoning"]
    assert (std.status, rsn.status) == ("done", "done"), (std.error, rsn.error)
    assert std.answer.strip() and not std.reasoning  # reasoning off
    assert rsn.reasoning.strip() and "reasoning" in kinds_seen["reasoning"]  # reasoning on, split out
    assert "top_k" in backend.dropped_fields
    # Two concurrent requests: both responses had started before either lane finished. (transformers serve
    # without --continuous-batching then generates them one after the other; vLLM batches them.)
    assert set(run.opened) == {"standard", "reasoning"}
    assert max(run.opened.values()) < min(std.t_end, rsn.t_end) - run.t_start
    for r in (std, rsn):
        m = result_metrics(r)
        assert m.ttft_s is not None and m.ttft_s > 0 and m.generated_tokens == len(r.token_times) > 0
        assert r.prompt_tokens > 10 and all(t >= r.t_start for t in r.token_times)
    assert result_metrics(rsn).reasoning_tokens > 0 and result_metrics(std).answer_tokens > 0
    assert run.record["token_count_source"] == {"standard": "usage", "reasoning": "usage"}
    assert {result_metrics(r).count_source for r in (std, rsn)} == {"usage"}
    assert run.record["backend"] == "remote" and "network time" in run.record["timing"]


def test_reasoning_in_the_servers_reasoning_content_field(served):
    backend = RemoteBackend(RemoteConfig(served["url"], model=served["split"], switch="template_kwargs"))
    run = backend.start(PROMPT, None, lanes(std=8, rsn=32))
    rsn = run.collect()["reasoning"]
    assert rsn.status == "done" and rsn.reasoning.strip()
    assert rsn.token_kinds[0] == "reasoning"
    # The raw text keeps the tags, so re-parsing it gives the split the stream gave.
    assert parse_text(rsn.text).reasoning.strip() == rsn.reasoning.strip()


def test_stop_ends_both_lanes_at_once_and_keeps_the_partial_text(served):
    backend = RemoteBackend(RemoteConfig(served["url"], model=served["think"], switch="template_kwargs"))
    run = backend.start("Write a long story about a dragon.", None, lanes(std=400, rsn=400, min_new_tokens=400))
    seen = 0
    t_stop = None
    for u in run:
        if u.kind == "token":
            seen += 1
            if seen == 6 and t_stop is None:
                t_stop = time.perf_counter()
                run.stop()
    elapsed = time.perf_counter() - t_stop
    assert elapsed < 1.0
    assert {r.status for r in run.results.values()} == {"stopped"}
    assert sum(len(r.text) for r in run.results.values()) > 0


def test_the_app_runs_cells_on_the_operators_endpoint(served, tmp_path, browser):
    """The real app started against the endpoint (no local model loaded), driven by gradio_client, and
    its model panel in a browser: the endpoint is chosen, the connection test lists the model."""
    from gradio_client import Client

    from bench.common import ServerProcess

    srv = ServerProcess(tmp_path, env={"PLAYGROUND_REMOTE_URL": served["url"],
                                       "PLAYGROUND_REMOTE_MODEL": served["think"],
                                       "PLAYGROUND_REMOTE_SWITCH": "template_kwargs",
                                       "PLAYGROUND_REMOTE_API_KEY": SECRET, "PLAYGROUND_LOG_LEVEL": "DEBUG"})
    try:
        srv.wait_ready()
        assert httpx.get(srv.url + "/healthz").json()["backend"] == "remote"
        client = Client(srv.url, verbose=False)
        session = client.predict("remote", api_name="/new_session")
        cell = client.predict(session["id"], PROMPT, "", api_name="/add_cell")
        last = client.submit(cell["id"], PROMPT, "", {"max_new_tokens": 32}, {"max_new_tokens": 48},
                             api_name="/run_cell").result()
        assert last["standard"]["status"] == last["reasoning"]["status"] == "done"
        stored = client.predict(session["id"], api_name="/get_session")["cells"][0]["latest"]
        assert stored["reasoning"]["reasoning"].strip() and stored["standard"]["answer"].strip()
        assert all(stored[lane]["status"] == "done" and stored[lane]["tokens"] > 0 for lane in stored)
        context = browser.new_context(viewport={"width": 1400, "height": 1200})
        try:
            page = context.new_page()
            page.goto(srv.url + "/")
            page.locator("#model-panel .label-wrap").first.click()
            assert page.locator("#backend-choice input[value='Remote endpoint']").is_checked()
            assert "network time" in page.locator("#footer").inner_text()
            page.get_by_role("button", name="Test connection").click()
            page.wait_for_function("s => document.querySelector(s).innerText.includes('Connected')",
                                   arg="#remote-status", timeout=20_000)
            assert served["think"] in page.locator("#remote-status").inner_text()
            page.locator("#backend-choice label", has_text="Local model").click()  # none is loaded here
            page.wait_for_function("s => document.querySelector(s).innerText.includes('No local model is loaded')",
                                   arg="#model-panel", timeout=20_000)
            assert "network time" in page.locator("#footer").inner_text()  # runs still go to the endpoint
        finally:
            context.close()
    finally:
        srv.stop()
    # The key: nowhere in the server's log (at DEBUG), the database, its records, exports or share pages.
    assert SECRET not in srv.log_path.read_text()
    for f in tmp_path.glob("playground.db*"):
        assert SECRET.encode() not in f.read_bytes()
    from playground.sharing import render_export
    from playground.sharing.page import share_page
    from playground.store import open_store

    with open_store(tmp_path / "playground.db") as store:
        full = store.get_session(store.owner_of_session(session["id"]), session["id"])
    runs = full.cells[0].latest.runs
    for r in runs.values():
        assert r.record["backend"] == "remote" and r.record["model_id"] == served["think"]
        assert "network time" in r.record["timing"] and r.metrics["ttft_s"] > 0
        assert SECRET not in json.dumps(r.record)
    for fmt in ("json", "md", "html"):
        assert SECRET not in render_export(full, fmt)[0]
    assert SECRET not in share_page(full, "nonce")


# --- injected errors ---------------------------------------------------------------------------------------


class _Faulty(BaseHTTPRequestHandler):
    """Behaviour picked by the request's model name, so one server covers every case."""

    release = threading.Event()  # set at teardown: lets the never-answering handler go
    hits: dict[str, int] = {}

    def log_message(self, *args):
        pass

    def _send(self, code: int, body: dict, headers: dict | None = None):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.headers.get("Authorization") != f"Bearer {SECRET}":
            return self._send(401, {"error": {"message": f"bad key {self.headers.get('Authorization')}"}})
        self._send(200, {"object": "list", "data": [{"id": "m1"}, {"id": "m2"}]})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        model = body["model"]
        n = _Faulty.hits[model] = _Faulty.hits.get(model, 0) + 1
        if model == "e401":  # echoes the key back, as some providers partly do: it must be scrubbed
            return self._send(401, {"error": {"message": f"Incorrect API key provided: {SECRET}"}})
        if model == "e404":
            return self._send(404, {"error": {"message": f"The model `{model}` does not exist."}})
        if model == "e429" or (model == "e429-once" and n == 1):
            return self._send(429, {"error": {"message": "Rate limit reached"}}, {"Retry-After": "1"})
        if model == "hang":
            _Faulty.release.wait(30)
            return
        if model == "no-stream":  # a server that ignores stream=true
            return self._send(200, {"choices": [{"index": 0, "finish_reason": "stop", "message": {
                "role": "assistant", "content": "<think>12*7 is 84</think>84"}}],
                "usage": {"prompt_tokens": 9, "completion_tokens": 12}})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for word in ("Twelve ", "times ", "seven "):
            chunk = {"choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        if model == "cut":
            return  # the connection closes with no finish_reason: a crashed server, a proxy timeout
        if model == "midstream-error":
            self.wfile.write(b'data: {"error": "CUDA out of memory"}\n\n')
            return
        done = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        self.wfile.write(f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n".encode())


@pytest.fixture(scope="module")
def faulty():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Faulty)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    _Faulty.release.set()
    server.shutdown()
    server.server_close()


def run_against(url: str, model: str, timeout_s: float = 5, key: str | None = SECRET):
    backend = RemoteBackend(RemoteConfig(url, model=model, api_key=key, timeout_s=timeout_s, switch="system_prompt"))
    t = time.perf_counter()
    results = backend.start(PROMPT, None, lanes()).collect()
    return results, time.perf_counter() - t


@pytest.mark.parametrize(("model", "words"), [
    ("e401", ("HTTP 401", "PLAYGROUND_REMOTE_API_KEY")),
    ("e404", ("HTTP 404", "'e404'", "Test connection")),
    ("e429", ("HTTP 429", "after waiting 1 s")),
    ("cut", ("ended before the server said it had finished",)),
    ("midstream-error", ("error mid-stream", "CUDA out of memory")),
])
def test_server_errors_end_the_run_with_the_cause_named(faulty, model, words):
    results, elapsed = run_against(faulty, model)
    assert elapsed < 5
    for r in results.values():
        assert r.status == "error" and r.t_end is not None
        assert all(w in r.error for w in words), r.error
        assert SECRET not in r.error
        if model in ("cut", "midstream-error"):
            assert r.answer == "Twelve times seven "  # the partial text is kept


def test_429_is_retried_once_after_retry_after(faulty):
    results, elapsed = run_against(faulty, "e429-once")
    assert {r.status for r in results.values()} == {"done"} and elapsed >= 1.0
    assert results["standard"].answer == "Twelve times seven "


def test_a_server_that_never_answers_times_out(faulty):
    results, elapsed = run_against(faulty, "hang", timeout_s=1)
    assert 1 <= elapsed < 4
    for r in results.values():
        assert r.status == "error" and "No data" in r.error and "timeout" in r.error


def test_a_closed_port_fails_at_once():
    results, elapsed = run_against(f"http://127.0.0.1:{free_port()}/v1", "any")
    assert elapsed < 3
    for r in results.values():
        assert r.status == "error" and "Could not connect" in r.error


def test_the_connection_test_names_a_wrong_key(faulty):
    with pytest.raises(RemoteError, match="HTTP 401") as exc:
        list_models(RemoteConfig(faulty, api_key="wrong"))
    assert "wrong" not in str(exc.value)
    assert list_models(RemoteConfig(faulty, api_key=SECRET)) == ["m1", "m2"]


def test_a_server_that_ignores_stream_true_still_gives_both_parts(faulty):
    results, _ = run_against(faulty, "no-stream")
    for r in results.values():
        assert r.status == "done" and (r.reasoning, r.answer) == ("12*7 is 84", "84")
        assert len(r.token_times) == 12 and r.prompt_tokens == 9  # the usage report's counts


def test_counts_without_usage_are_marked_estimates(faulty):
    backend = RemoteBackend(RemoteConfig(faulty, model="ok", switch="system_prompt"))
    run = backend.start(PROMPT, None, lanes())
    run.collect()
    assert run.record["token_count_source"] == {"standard": "estimate", "reasoning": "estimate"}
    # The lane's metrics (what the store keeps and the cell shows) say so too, as "≈ … (estimated)".
    from playground.evaluation.metrics import format_metrics

    for r in run.results.values():
        m = result_metrics(r)
        assert m.count_source == "estimate" and m.to_dict()["count_source"] == "estimate"
        assert "≈" in format_metrics(m) and "estimated" in format_metrics(m)


def test_a_saved_remote_run_stores_what_the_run_learned(faulty, tmp_path):
    """The record is written at the start and again at the finish: the stored one (and the JSON export)
    carries what only the run could tell, when each response started and where its counts came from."""
    from playground.app.notebook import Notebook
    from playground.sharing import render_export
    from playground.store import open_store

    pg = Playground(Settings(remote_url=faulty, remote_model="ok", remote_switch="system_prompt", home=tmp_path))
    pg.use_remote()
    with open_store(tmp_path / "remote.db") as store:
        sid = store.create_session("me", "remote").id
        cell = store.add_cell("me", sid, prompt=PROMPT)
        list(Notebook(pg, store).run_cell("me", cell.id, "k", PROMPT, None, lanes()))
        full = store.get_session("me", sid)
    runs = full.cells[0].latest.runs
    exported = json.loads(render_export(full, "json")[0])["session"]["cells"][0]["executions"][0]["runs"]
    for lane, run in runs.items():
        assert run.status == "done"
        for record in (run.record, exported[lane]["record"]):
            assert record["token_count_source"] == {"standard": "estimate", "reasoning": "estimate"}
            assert set(record["response_started_s"]) == {"standard", "reasoning"}
            assert all(0 <= t < 5 for t in record["response_started_s"].values())
            assert record["settings"] == lanes()[lane].to_dict()  # each row keeps its own lane's settings


# --- rules without a server ----------------------------------------------------------------------------------


def test_public_visitors_cannot_point_the_server_anywhere(tmp_path):
    pg = Playground(Settings(public=True, remote_url="http://127.0.0.1:9/v1", home=tmp_path))
    for kwargs in ({"url": "http://169.254.169.254/latest"}, {"api_key": "mine"}, {"model": "/etc"}):
        with pytest.raises(InvalidInput, match="only the operator's endpoint"):
            pg.remote_config(visitor=True, **kwargs)
    assert pg.remote_config(visitor=True).base_url == "http://127.0.0.1:9/v1"
    with pytest.raises(InvalidInput, match="no remote endpoint"):
        Playground(Settings(public=True, home=tmp_path)).remote_config("http://x/v1", visitor=True)


def test_a_thinking_budget_is_refused_before_anything_runs(tmp_path):
    pg = Playground(Settings(remote_url="http://127.0.0.1:9/v1", remote_model="m", home=tmp_path))
    pg.use_remote()
    with pytest.raises(InvalidInput, match="thinking budget"):
        pg.check_run_input(PROMPT, None, lanes(thinking_budget=10))


def test_every_switch_is_a_setting_and_asks_differently():
    from typing import get_args

    from playground.backends.remote import SWITCHES
    from playground.config import RemoteSwitch

    assert set(get_args(RemoteSwitch)) == set(SWITCHES)
    bodies = {}
    for switch in SWITCHES:
        b = RemoteBackend(RemoteConfig("http://127.0.0.1:9", model="NousResearch/Hermes-4-405B-FP8", switch=switch))
        assert b.style == "hermes" and b.preset.key == "hermes-4-405b"
        run = b.start(PROMPT, "Be brief.", lanes())
        bodies[switch] = {lane: {k: v for k, v in r.items() if k in ("messages", "chat_template_kwargs", "reasoning")}
                          for lane, r in run.requests.items()}
    assert bodies["auto"] == bodies["system_prompt"]  # Hermes: the thinking system prompt works on any server
    assert bodies["reasoning_field"]["reasoning"]["reasoning"] == {"enabled": True}
    assert bodies["template_kwargs"]["standard"]["chat_template_kwargs"]["thinking"] is False
    assert bodies["always"]["standard"] == bodies["always"]["reasoning"]
    assert len({json.dumps(b["reasoning"], sort_keys=True) for b in bodies.values()}) == len(SWITCHES) - 1


def test_bad_urls_and_timeouts_are_refused_by_name():
    for url in ("ftp://x", "not a url", ""):
        with pytest.raises(InvalidInput, match="URL"):
            RemoteConfig(url)
    with pytest.raises(InvalidInput, match="timeout"):
        RemoteConfig("http://x", timeout_s=0)
    with_userinfo = RemoteConfig("http://user:pw@host:8000")
    assert with_userinfo.base_url == "http://host:8000/v1"  # the URL httpx logs carries no credential
    assert with_userinfo.headers()["Authorization"].startswith("Basic ")
    assert "pw" not in RemoteBackend(RemoteConfig("http://user:pw@host:8000", model="m")).describe()
    assert SECRET not in repr(RemoteConfig("http://x", api_key=SECRET))


def test_both_backends_and_their_runs_offer_the_same_interface():
    from playground.backends.base import Backend, RunLike
    from playground.backends.local.engine import Engine, Run

    remote = RemoteBackend(RemoteConfig("http://127.0.0.1:9", model="m"))
    assert isinstance(remote, Backend) and isinstance(remote.start(PROMPT, None, lanes()), RunLike)
    # The local Engine needs a loaded model to instantiate: compare what its class provides instead.
    for name in ("kind", "style", "start", "reproducibility_record"):
        assert hasattr(Engine, name) and hasattr(RemoteBackend, name)
    for name in ("stop", "finished", "collect", "__iter__"):
        assert hasattr(Run, name)
    assert Engine.kind == "local" and RemoteBackend.kind == "remote"


def test_spread_gives_every_chunk_a_token_and_the_rest_by_length():
    assert spread([1, 1, 1], 3) == [1, 1, 1]
    assert spread([1, 9], 6) == [1, 5]
    assert sum(spread([3, 5, 2], 2)) == 2
