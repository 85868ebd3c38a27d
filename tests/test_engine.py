"""The paired engine on the real embedded model (NF4, CPU, greedy unless a test says otherwise).

Equalities across batch shapes (a lane paired vs alone, two runs sharing steps vs each alone) are
asserted in float32 (`fp32_engine`): in bf16 the same row's K/V differ in the last bits with the
batch's shape, which can flip a near-tie (tests/test_batching.py says more)."""

from __future__ import annotations

import math
import threading

import pytest

from playground.backends.local.engine import Engine
from playground.errors import InvalidInput
from playground.evaluation.metrics import result_metrics
from playground.lanes import LaneSettings, validate_settings
from playground.prompting.reasoning import parse_text

PROMPT = "What is the capital of France?"


@pytest.fixture(scope="module")
def fp32_engine(loaded_fp32):
    return Engine(loaded_fp32)


def run(engine: Engine, prompt=PROMPT, system=None, **lanes):
    return engine.start(prompt, system, lanes).collect()


def test_greedy_pair_equals_each_lane_alone(fp32_engine, engine):
    std, rsn = LaneSettings(max_new_tokens=24), LaneSettings(max_new_tokens=40)
    pair = run(fp32_engine, standard=std, reasoning=rsn)
    alone_std = run(fp32_engine, standard=std)["standard"]
    alone_rsn = run(fp32_engine, reasoning=rsn)["reasoning"]
    assert pair["standard"].token_ids == alone_std.token_ids
    assert pair["reasoning"].token_ids == alone_rsn.token_ids
    assert pair["standard"].text == alone_std.text and pair["standard"].text.strip()
    # In NF4 (bf16) the first token, picked from the same prefill, holds.
    nf4 = run(engine, standard=std, reasoning=rsn)
    for lane, settings in (("standard", std), ("reasoning", rsn)):
        assert nf4[lane].token_ids[0] == run(engine, **{lane: settings})[lane].token_ids[0]


def test_lanes_finish_independently(engine):
    r = engine.start("Write a long story about a dragon.", None,
                     {"standard": LaneSettings(max_new_tokens=6), "reasoning": LaneSettings(max_new_tokens=30,
                                                                                           min_new_tokens=30)})
    updates = list(r)
    std = r.results["standard"]
    assert len(std.token_ids) == 6 and std.finish_reason == "length" and std.status == "done"
    assert len(r.results["reasoning"].token_ids) == 30
    done_at = next(i for i, u in enumerate(updates) if u.lane == "standard" and u.kind == "done")
    assert not [u for u in updates[done_at + 1:] if u.lane == "standard"], "a finished lane produced events"
    assert [u.kind for u in updates if u.lane == "reasoning"][-1] == "done"


def test_text_deltas_are_utf8_safe_and_add_up(engine):
    r = engine.start("Écris trois mots français avec des accents, puis un emoji 🎉.", None,
                     {"standard": LaneSettings(max_new_tokens=40), "reasoning": LaneSettings(max_new_tokens=40)})
    pieces: dict[str, list[str]] = {"standard": [], "reasoning": []}
    for u in r:
        pieces[u.lane].append(u.text)
        assert "\ufffd" not in u.text
    for lane, res in r.results.items():
        assert "".join(pieces[lane]) == res.text
        assert res.text == engine.tokenizer.decode(res.token_ids, skip_special_tokens=True)


def test_reasoning_split_matches_the_parser(engine):
    res = run(engine, standard=LaneSettings(max_new_tokens=20), reasoning=LaneSettings(max_new_tokens=40))
    for lane, r in res.items():
        parsed = parse_text(r.text, starts_in_reasoning=(lane == "reasoning"))
        assert (r.reasoning, r.answer) == (parsed.reasoning, parsed.answer)
    # The embedded model's reasoning lane is prefilled with <think>: its first tokens are reasoning.
    assert res["reasoning"].token_kinds[0] == "reasoning"
    assert set(res["standard"].token_kinds) == {"answer"}


def test_stop_ends_within_one_step_and_keeps_the_partial_run(engine):
    r = engine.start("Write a very long essay about the sea.", None,
                     {"standard": LaneSettings(max_new_tokens=400, min_new_tokens=400),
                      "reasoning": LaneSettings(max_new_tokens=400, min_new_tokens=400)})
    after_stop = 0
    for u in r:
        if r.stop_event.is_set() and u.kind == "token":
            after_stop += 1
        if u.kind == "token" and len(r.results["standard"].token_ids) == 5 and not r.stop_event.is_set():
            r.stop()
    for res in r.results.values():
        assert res.status == "stopped" and res.finish_reason == "stopped"
        assert 5 <= len(res.token_ids) <= 7
        assert len(res.token_times) == len(res.token_ids) and res.text
    assert after_stop <= 2 * 2  # at most one more decode step per lane (plus the step in flight)


def test_thinking_budget_closes_reasoning(engine):
    tok = engine.tokenizer
    res = run(engine, "Think about 17 * 23.", reasoning=LaneSettings(max_new_tokens=60, min_new_tokens=60,
                                                                      thinking_budget=5))["reasoning"]
    close_ids = tok("</think>\n\n", add_special_tokens=False)["input_ids"]
    first_forced = res.forced.index(True)
    assert first_forced <= 5
    assert res.token_ids[first_forced:first_forced + len(close_ids)] == close_ids
    assert sum(res.forced) == len(close_ids)
    assert "</think>" in res.text and res.answer.strip()
    assert res.token_kinds.count("reasoning") <= 5 + len(close_ids)


def test_thinking_budget_zero_closes_at_once(engine):
    res = run(engine, "Think about 17 * 23.", reasoning=LaneSettings(max_new_tokens=30, min_new_tokens=30,
                                                                      thinking_budget=0))["reasoning"]
    n_close = sum(res.forced)
    assert n_close > 0 and all(res.forced[:n_close])
    assert res.reasoning == "" and res.answer.strip()


def test_seeds_reproduce_and_lanes_sample_independently(engine, fp32_engine):
    lanes = dict(standard=LaneSettings(max_new_tokens=24),
                 reasoning=LaneSettings(max_new_tokens=24, temperature=1.0, top_p=0.95, top_k=50, seed=11))
    a = run(engine, "Tell me a story.", **lanes)
    b = run(engine, "Tell me a story.", **lanes)
    assert a["reasoning"].token_ids == b["reasoning"].token_ids
    other = run(engine, "Tell me a story.", reasoning=LaneSettings(max_new_tokens=24, temperature=1.0, top_p=0.95,
                                                                    top_k=50, seed=12))
    assert other["reasoning"].token_ids != a["reasoning"].token_ids
    a = run(fp32_engine, "Tell me a story.", **lanes)
    greedy_alone = run(fp32_engine, "Tell me a story.", standard=LaneSettings(max_new_tokens=24))
    assert a["standard"].token_ids == greedy_alone["standard"].token_ids  # greedy lane unaffected by sampling


def test_injected_failure_ends_run_as_error_and_engine_recovers(engine):
    layer = engine.loaded.model.model.layers[3]
    calls = {"n": 0}

    def boom(module, args, output):
        calls["n"] += 1
        if calls["n"] > 3:  # fail mid-run, after a few tokens streamed
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB (injected)")

    handle = layer.register_forward_hook(boom)
    try:
        r = engine.start(PROMPT, None, {"standard": LaneSettings(max_new_tokens=30),
                                        "reasoning": LaneSettings(max_new_tokens=30)})
        kinds = [u.kind for u in r]
    finally:
        handle.remove()
    assert "error" in kinds
    for res in r.results.values():
        assert res.status == "error" and "Out of memory" in res.error
    after = run(engine, standard=LaneSettings(max_new_tokens=8))["standard"]
    assert after.status == "done" and len(after.token_ids) == 8


def test_two_requests_at_once_do_not_mix(fp32_engine):
    prompts = ["Name a fruit.", "Name a planet."]
    settings = dict(standard=LaneSettings(max_new_tokens=16), reasoning=LaneSettings(max_new_tokens=16))
    alone = {p: run(fp32_engine, p, **settings) for p in prompts}
    together: dict[str, dict] = {}

    def worker(p):
        together[p] = run(fp32_engine, p, **settings)

    threads = [threading.Thread(target=worker, args=(p,)) for p in prompts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for p in prompts:
        for lane in ("standard", "reasoning"):
            assert together[p][lane].token_ids == alone[p][lane].token_ids


def test_metrics_and_reproducibility_record(engine):
    r = engine.start(PROMPT, None, {"standard": LaneSettings(max_new_tokens=12, seed=3),
                                    "reasoning": LaneSettings(max_new_tokens=12, thinking_budget=4)})
    r.collect()
    for lane, res in r.results.items():
        m = result_metrics(res)
        assert m.generated_tokens == len(res.token_ids) == m.reasoning_tokens + m.answer_tokens
        assert res.token_times == sorted(res.token_times)
        assert 0 < m.ttft_s <= m.total_s
        assert m.prompt_tokens == len(r.prompts[lane].input_ids)
        assert m.decode_tok_s and m.decode_tok_s > 0 and m.itl_p50_ms <= m.itl_p95_ms
    rec = r.record
    assert rec["model_id"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and rec["quant"] == "nf4"
    assert rec["settings"]["standard"]["seed"] == 3 and rec["settings"]["reasoning"]["thinking_budget"] == 4
    assert {"torch", "transformers", "bitsandbytes", "playground"} <= set(rec["versions"])
    assert rec["placement"]["devices"][0]["device"] == "cpu"
    assert rec["scheduler"]["kind"] == "step" and rec["shared_steps"]["rows_max"] == 2


@pytest.mark.parametrize("change", [
    dict(max_new_tokens=0), dict(max_new_tokens=-5), dict(max_new_tokens=10**9), dict(temperature=-1),
    dict(temperature=math.nan), dict(temperature="hot"), dict(top_p=0), dict(top_p=1.5), dict(top_k=-1),
    dict(seed=-1), dict(thinking_budget=-3), dict(min_new_tokens=50, max_new_tokens=10), dict(max_new_tokens=2.5),
])
def test_invalid_settings_are_refused_with_the_setting_named(change):
    with pytest.raises(InvalidInput) as err:
        validate_settings(LaneSettings(**change), max_new_tokens_limit=4096, lane="reasoning")
    assert next(iter(change)) in str(err.value) and "reasoning lane" in str(err.value)
