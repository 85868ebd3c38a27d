"""Reasoning Gym suites: the same seed gives the same suite, the shipped samples are what their
recipe generates, a suite imports as graded cells, runs on the embedded model and is graded by the
task's own verifier (through the checker worker), reading the answer and never the reasoning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from playground.app.batch_files import import_rows, parse_batch_file
from playground.app.batch_jobs import plan_jobs, run_jobs
from playground.app.service import Playground
from playground.cli import main
from playground.config import Settings
from playground.errors import InvalidInput
from playground.evaluation.graders import check_grader, grade
from playground.evaluation.gym import (
    ANSWER_INSTRUCTION,
    MAX_SUITE_COUNT,
    extract_gym_answer,
    generate_suite,
    suite_jsonl,
)
from playground.evaluation.verdict import lane_grade, session_verdict
from playground.store import open_store
from tests.test_verdict import cell, run

ROOT = Path(__file__).resolve().parent.parent
# The shipped suites and the commands that made them (README: "Problem sets").
SHIPPED = {
    "gym-arithmetic.jsonl": ["gym:basic_arithmetic", "gym:chain_sum", "--count", "10", "--seed", "1",
                             "--set", "max_terms=3", "--set", "max_digits=2"],
    "gym-logic.jsonl": ["gym:syllogism", "gym:knights_knaves", "--count", "10", "--seed", "1"],
    "gym-gsm-symbolic.jsonl": ["gym:gsm_symbolic", "--count", "20", "--seed", "1"],
}


def test_the_same_seed_gives_the_same_suite_and_another_seed_another():
    tasks = [("basic_arithmetic", {"max_terms": 3}), ("syllogism", {})]
    a = generate_suite(tasks, 5, 11)
    assert suite_jsonl(a) == suite_jsonl(generate_suite(tasks, 5, 11))
    assert suite_jsonl(a) != suite_jsonl(generate_suite(tasks, 5, 12))
    assert [r["grader"]["task"] for r in a] == ["basic_arithmetic"] * 5 + ["syllogism"] * 5
    assert all(r["prompt"].endswith(ANSWER_INSTRUCTION) and r["grader"]["config"] == tasks[0][1] for r in a[:5])


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_each_shipped_suite_is_what_its_recipe_generates(name, tmp_path):
    out = tmp_path / name
    assert main(["problems", *SHIPPED[name], "--out", str(out)]) == 0
    assert out.read_text() == (ROOT / "samples" / name).read_text()


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_a_shipped_suite_imports_as_gym_graded_cells_that_pass_their_own_answers(name):
    path = ROOT / "samples" / name
    rows, errors = parse_batch_file(path.read_bytes(), path.name)
    assert errors == [] and len(rows) == 20
    for r in rows:
        assert r.grader["kind"] == "gym" and r.grader["entry"]["question"] in r.prompt
        assert grade(r.grader, r.expected, f"<answer>{r.expected}</answer>").status == "pass"
    wrong = grade(rows[0].grader, rows[0].expected, "<answer>not it</answer>")
    assert wrong.status == "fail" and wrong.extracted == "not it" and "verifier: score" in wrong.detail


def test_the_verifier_reads_the_answer_never_the_reasoning():
    row = generate_suite([("basic_arithmetic", {})], 1, 3)[0]
    c = cell(0, row["expected"], row["grader"], [])
    right = f"<answer>{row['expected']}</answer>"
    assert lane_grade(c, run("reasoning", right, 10, 1.0, reasoning="<answer>999999</answer>")).status == "pass"
    assert lane_grade(c, run("reasoning", "<answer>999999</answer>", 10, 1.0, reasoning=right)).status == "fail"
    assert lane_grade(c, run("reasoning", "", 10, 1.0, reasoning=right)).status == "fail"


def test_what_the_verifier_is_given():
    assert extract_gym_answer("think\n<answer>1</answer> then <answer> 42 </answer>") == "42"
    assert extract_gym_answer("so \\boxed{7}.") == "7"
    assert extract_gym_answer("  Yes \n") == "Yes"


def test_bad_suites_and_specs_are_refused_with_the_fix():
    with pytest.raises(InvalidInput, match="MAX_SUITE_COUNT"):
        generate_suite([("basic_arithmetic", {})], MAX_SUITE_COUNT + 1, 0)
    with pytest.raises(InvalidInput, match="has no setting bogus; its settings: min_terms=2"):
        generate_suite([("basic_arithmetic", {"bogus": 1})], 2, 0)
    with pytest.raises(InvalidInput, match="no Reasoning Gym task 'no_such_task'"):
        generate_suite([("no_such_task", {})], 2, 0)
    with pytest.raises(InvalidInput, match="needs the generated entry"):
        check_grader({"kind": "gym", "task": "basic_arithmetic"}, "3")
    with pytest.raises(InvalidInput, match="no Reasoning Gym task"):
        check_grader({"kind": "gym", "task": "no_such_task", "entry": {"question": "", "answer": "3"}}, "3")


def test_problems_cli_writes_a_batch_file_and_lists_tasks(tmp_path, capsys):
    out = tmp_path / "suite.jsonl"
    assert main(["problems", "gym:chain_sum", "--count", "3", "--seed", "5", "--set", "chain_sum.max_terms=2",
                 "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and all(r["grader"]["config"] == {"max_terms": 2} for r in rows)
    assert main(["problems", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "gym:gsm_symbolic  difficulty=1.0" in listed and "gym:basic_arithmetic " in listed
    assert main(["problems", "basic_arithmetic"]) == 1  # not gym:TASK
    assert "gym:TASK" in capsys.readouterr().err


# --- with the real model -----------------------------------------------------------------------
def test_a_generated_suite_runs_on_the_embedded_model_and_is_graded_by_its_verifier(engine, loaded_nf4, tmp_path):
    pg = Playground(Settings())
    pg.loaded, pg.backend = loaded_nf4, engine
    data = suite_jsonl(generate_suite([("basic_arithmetic", {"max_terms": 2, "max_digits": 1})], 4, 9)).encode()
    rows, errors = parse_batch_file(data, "suite.jsonl")
    assert errors == [] and len(rows) == 4
    with open_store(tmp_path / "gym.db") as store:
        sid = store.create_session("me", "gym").id
        # a thinking budget closes the reasoning early, so the reasoning lane writes an answer too
        import_rows(store, "me", sid, rows, settings={"standard": {"max_new_tokens": 12},
                                                      "reasoning": {"max_new_tokens": 32, "thinking_budget": 8}})
        jobs = plan_jobs(store.get_session("me", sid), engine, pg.recommended(), pg.settings.max_new_tokens)
        last = list(run_jobs(pg, store, "me", jobs, batch_size=4))[-1]
        assert last.finished and last.done == 4
        session = store.get_session("me", sid)
    runs = [r for c in session.cells for r in c.latest.runs.values()]
    assert len(runs) == 8 and all(r.status == "done" for r in runs)
    answered = [r for r in runs if r.answer_text.strip()]
    assert len(answered) >= 4
    for r in answered:  # each lane graded by the basic_arithmetic verifier, from its answer text
        assert r.grade["status"] in ("pass", "fail") and "basic_arithmetic verifier: score" in r.grade["detail"]
        assert r.grade["extracted"] == extract_gym_answer(r.answer_text)
    assert all(r.grade["status"] == "fail" for r in runs if r not in answered)
    assert session_verdict(session).to_dict()["cells_compared"] == 4
