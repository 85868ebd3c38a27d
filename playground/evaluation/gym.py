"""Generated task suites from Reasoning Gym, and the `gym` grader that uses each task's own verifier.

A suite is tasks × count entries from one seed (the same seed gives the same suite), each a batch
row: the prompt is the entry's question plus ANSWER_INSTRUCTION, the expected answer is the entry's,
and the grader {"kind": "gym", "task", "config", "entry"} stores everything its verifier needs,
so grading is reproducible without regenerating anything. Reasoning Gym itself runs only in the
checker worker (gymcheck.py): this module is what the server and the command line call.
"""

from __future__ import annotations

import json
import re

from playground.errors import CheckerFailed, CheckTimeout, InvalidInput
from playground.evaluation.answers import boxed_values
from playground.evaluation.grade_types import Grade
from playground.evaluation.pool import CHECK_DEADLINE_S, CheckerPool, default_pool

# Named limits and strings of suites and the gym grader, each checked once.
MAX_SUITE_COUNT = 500  # entries per task (a batch file holds at most 500 rows too)
MAX_SUITE_TASKS = 8
MAX_SEED = 2**32 - 1
MAX_ENTRY_CHARS = 20_000  # one stored entry, as JSON
MAX_CONFIG_CHARS = 2_000
GENERATE_DEADLINE_S = 120.0  # a whole suite; the slowest small generators take a few seconds
PASS_SCORE = 1.0  # verifiers give part marks (0.01 for a badly formatted right answer): only full marks pass
ANSWER_INSTRUCTION = "Give your final answer inside <answer></answer> tags."
NO_ANSWER = "(any answer the task's verifier accepts)"  # tasks with many right answers store none
SOURCE_PREFIX = "gym:"
_TASK = re.compile(r"[a-z][a-z0-9_]{0,63}")
_ANSWER_TAG = re.compile(r"<answer>\s?(.*?)\s?</answer>", re.S)


def _pool(pool: CheckerPool | None) -> CheckerPool:
    return pool or default_pool()


def check_task(task) -> str:
    if not isinstance(task, str) or not _TASK.fullmatch(task):
        raise InvalidInput(f"task={task!r}: a Reasoning Gym task name, e.g. basic_arithmetic or gsm_symbolic.")
    return task


def check_config(config) -> dict:
    if config is None:
        return {}
    if not isinstance(config, dict) or not all(isinstance(k, str) for k in config):
        raise InvalidInput("A gym task's settings are an object of name: value, e.g. {\"max_terms\": 3}.")
    if len(json.dumps(config)) > MAX_CONFIG_CHARS:
        raise InvalidInput(f"The task's settings are over {MAX_CONFIG_CHARS:,} characters (MAX_CONFIG_CHARS).")
    return config


def check_gym_spec(spec: dict, *, ask_checker: bool = False, pool: CheckerPool | None = None) -> dict:
    """The canonical gym grader spec; InvalidInput naming the fix. ask_checker also asks the
    checker worker whether the task exists and takes these settings (grading reports it otherwise)."""
    unknown = set(spec) - {"kind", "task", "config", "entry"}
    if unknown:
        raise InvalidInput(f"The gym grader has no option {', '.join(sorted(unknown))}: it takes task, config "
                           "and entry (generate a suite with python -m playground problems gym:TASK).")
    task = check_task(spec.get("task"))
    entry = spec.get("entry")
    if not isinstance(entry, dict) or not isinstance(entry.get("question"), str) or "answer" not in entry:
        raise InvalidInput("The gym grader needs the generated entry (question, answer, metadata): import a "
                           "suite made by python -m playground problems gym:TASK rather than typing one.")
    if len(json.dumps(entry, default=str)) > MAX_ENTRY_CHARS:
        raise InvalidInput(f"The gym entry is over {MAX_ENTRY_CHARS:,} characters as JSON (MAX_ENTRY_CHARS).")
    config = check_config(spec.get("config"))
    if ask_checker:
        try:
            _pool(pool).call("gym_check", {"task": task, "config": config})
        except CheckTimeout:
            raise InvalidInput(f"Checking the {task} task took over {CHECK_DEADLINE_S:g} s (CHECK_DEADLINE_S).") \
                from None
        except CheckerFailed as exc:
            raise InvalidInput(str(exc)) from None
    return {"kind": "gym", "task": task, "config": config, "entry": entry}


def extract_gym_answer(answer: str) -> str:
    """What the verifier is given: the last <answer>…</answer>, else the last \\boxed{}, else the
    whole answer (verifiers compare a bare answer: "30", "Yes")."""
    tagged = _ANSWER_TAG.findall(answer)
    if tagged:
        return tagged[-1].strip()
    boxes = boxed_values(answer)
    return (boxes[-1] if boxes else answer).strip()


def grade_gym(spec: dict, answer: str, pool: CheckerPool | None = None) -> Grade:
    """Pass when the task's verifier gives the extracted answer full marks (PASS_SCORE)."""
    got = extract_gym_answer(answer)
    if not got:
        return Grade("fail", None, "no answer for the verifier (an empty <answer></answer>)")
    try:
        score = _pool(pool).call("gym", {"task": spec["task"], "config": spec.get("config") or {},
                                         "entry": spec["entry"], "answer": got})
    except CheckTimeout:
        return Grade("error", got, f"the {spec['task']} verifier took over {CHECK_DEADLINE_S:g} s "
                                   "(CHECK_DEADLINE_S) and was stopped")
    except CheckerFailed as exc:
        return Grade("error", got, f"the {spec['task']} verifier failed: {exc}")
    status = "pass" if score >= PASS_SCORE else "fail"
    return Grade(status, got, f"{spec['task']} verifier: score {score:g} (a pass needs {PASS_SCORE:g})")


def parse_source(source: str) -> str:
    """"gym:TASK" -> TASK (the command line's way of naming a generator)."""
    if not source.startswith(SOURCE_PREFIX):
        raise InvalidInput(f"source={source!r}: name a generator as gym:TASK, e.g. gym:basic_arithmetic.")
    return check_task(source[len(SOURCE_PREFIX):])


def check_suite(tasks, count, seed) -> None:
    if not tasks or len(tasks) > MAX_SUITE_TASKS:
        raise InvalidInput(f"Pick 1–{MAX_SUITE_TASKS} tasks (MAX_SUITE_TASKS).")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_SUITE_COUNT:
        raise InvalidInput(f"count={count!r}: use 1–{MAX_SUITE_COUNT} entries per task (MAX_SUITE_COUNT).")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InvalidInput(f"seed={seed!r}: use a whole number 0–{MAX_SEED} (MAX_SEED).")


def generate_suite(tasks: list[tuple[str, dict]], count: int, seed: int,
                   pool: CheckerPool | None = None) -> list[dict]:
    """Batch rows ({"prompt", "expected", "grader"}) for `count` entries of each (task, settings),
    task after task; the same arguments give the same rows."""
    check_suite(tasks, count, seed)
    rows = []
    for task, config in tasks:
        task, config = check_task(task), check_config(config)
        try:
            entries = _pool(pool).call("gym_generate", {"task": task, "config": config, "count": count,
                                                        "seed": seed}, GENERATE_DEADLINE_S)
        except CheckTimeout:
            raise InvalidInput(f"Generating {count} {task} entries took over {GENERATE_DEADLINE_S:g} s "
                               "(GENERATE_DEADLINE_S): ask for fewer, or easier settings.") from None
        except CheckerFailed as exc:
            raise InvalidInput(f"Reasoning Gym could not generate {task}: {exc}") from None
        for entry in entries:
            answer = entry.get("answer")
            expected = answer if isinstance(answer, str) and answer.strip() else NO_ANSWER
            spec = check_gym_spec({"kind": "gym", "task": task, "config": config, "entry": entry})
            rows.append({"prompt": f"{entry['question'].rstrip()}\n\n{ANSWER_INSTRUCTION}", "expected": expected,
                         "grader": spec})
    return rows


def list_tasks(pool: CheckerPool | None = None) -> dict[str, dict]:
    """Every Reasoning Gym task and its settings with their defaults."""
    return _pool(pool).call("gym_tasks", {}, GENERATE_DEADLINE_S)


def suite_jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
