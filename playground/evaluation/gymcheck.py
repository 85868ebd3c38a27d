"""Reasoning Gym's side of the gym grader and of generated suites, run inside the checker worker
(worker.py): the library takes seconds to import and its generators and verifiers are its own
code, so the server process never imports it and a slow one is stopped at the pool's deadline.

An entry is stored as generated, round-tripped through JSON (tuples become lists): a suite keeps
only entries whose task's verifier still gives their own answer full marks after that trip, so a
stored cell grades the same way tomorrow as today.
"""

from __future__ import annotations

import dataclasses
import functools
import json

import reasoning_gym
from reasoning_gym.factory import DATASETS

FULL_MARKS = 1.0
HIDDEN_OPTIONS = ("seed", "size")  # set by the suite itself, never by a difficulty setting


def options(task: str) -> dict:
    """The task's difficulty settings and their defaults (JSON values)."""
    _, config_cls = DATASETS[task]
    out = {}
    for f in dataclasses.fields(config_cls):
        if f.name in HIDDEN_OPTIONS:
            continue
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        out[f.name] = json.loads(json.dumps(default, default=str))
    return out


def tasks() -> dict[str, dict]:
    """Every registered task with its settings, for listings and error messages."""
    return {name: options(name) for name in sorted(DATASETS)}


def check_config(task: str, config: dict) -> None:
    if task not in DATASETS:
        raise ValueError(f"no Reasoning Gym task {task!r}: python -m playground problems --list shows them")
    allowed = options(task)
    unknown = sorted(set(config) - set(allowed))
    if unknown:
        raise ValueError(f"{task} has no setting {', '.join(unknown)}; its settings: "
                         + ", ".join(f"{k}={v!r}" for k, v in allowed.items()))


@functools.lru_cache(maxsize=64)
def _dataset(task: str, config_json: str, seed: int, size: int):
    return reasoning_gym.create_dataset(task, seed=seed, size=size, **json.loads(config_json))


def _round_trip(value):
    return json.loads(json.dumps(value, default=str))


def generate(task: str, config: dict, count: int, seed: int) -> list[dict]:
    """`count` entries of the task, the same for the same (task, config, seed), each checked to
    grade its own answer with full marks after a JSON round trip."""
    check_config(task, config)
    ds = reasoning_gym.create_dataset(task, seed=seed, size=count, **config)
    scorer = _dataset(task, json.dumps(config, sort_keys=True), 0, 1)
    out = []
    for i in range(count):
        entry = _round_trip(ds[i])
        if isinstance(entry.get("answer"), str) and scorer.score_answer(entry["answer"], entry) < FULL_MARKS:
            raise ValueError(f"{task}'s verifier does not accept its own answer once stored (entry {i}): "
                             "this task cannot be graded reproducibly, pick another")
        out.append(entry)
    return out


def score(task: str, config: dict, entry: dict, answer: str) -> float:
    """The task's verifier on one answer: 0.0–1.0 (some tasks give part marks for a near miss)."""
    check_config(task, config)
    scorer = _dataset(task, json.dumps(config, sort_keys=True), 0, 1)
    return float(scorer.score_answer(answer, entry))
