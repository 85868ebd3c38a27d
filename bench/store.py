"""python -m bench.store: is the store fast enough at scale? (goals: open ≤ 250 ms, list ≤ 50 ms,
finish ≤ 10 ms, checkpoint ≤ 5 ms, on each engine)

`--db postgres` measures a real PostgreSQL (a throwaway cluster with the server's durable defaults:
fsync on, synchronous_commit on) beside SQLite in the same run, on the same data, so the two read
as a ratio on one noisy machine.

Builds, in a temporary folder, 10,000 sessions of three cells (one short execution each), half
of them for one owner, and among those one session of 1,000 cells with one execution of two
1,000-token runs each (texts, ids, timings, kinds). Then times, as medians:
  open_session_ms   get_session of the 1,000-cell session, every run decoded
  list_sessions_ms  the first page of 50 for the owner with 5,000 sessions
  finish_run_ms     finish_run of one 1,000-token run
  checkpoint_ms     checkpoint_run of a running 1,000-token run
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import emit, machine, table, timed
from bench.pgcluster import PostgresCluster
from playground.store import CellFull, Execution, RunInfo, SessionFull, open_store

GOALS_MS = {"open_session_ms": 250, "list_sessions_ms": 50, "finish_run_ms": 10, "checkpoint_ms": 5}
MAIN_OWNER = "bench-owner"
WORDS = "the model thinks about each step before it answers so we count tokens and time them".split()


def lane_payload(rng: random.Random, lane: str, tokens: int) -> dict:
    """What a finished lane hands the store: 1,000 tokens with realistic full-precision timings."""
    t, times = 0.2 + rng.random() * 0.1, []
    for _ in range(tokens):
        t += rng.uniform(0.015, 0.045)
        times.append(t)
    thinking = int(tokens * 0.7) if lane == "reasoning" else 0
    words = [rng.choice(WORDS) for _ in range(tokens)]
    reasoning, answer = " ".join(words[:thinking]), " ".join(words[thinking:])
    return dict(raw_text=(f"<think>{reasoning}</think>" if thinking else "") + answer, reasoning_text=reasoning,
                answer_text=answer, token_ids=[rng.randrange(150_000) for _ in range(tokens)], token_times=times,
                token_kinds="r" * thinking + "a" * (tokens - thinking), forced="0" * tokens)


def metrics_for(payload: dict) -> dict:
    times = payload["token_times"]
    return {"prompt_tokens": 40, "generated_tokens": len(times), "ttft_s": times[0], "total_s": times[-1],
            "decode_tok_s": (len(times) - 1) / (times[-1] - times[0]), "itl_p50_ms": 30.0, "itl_p95_ms": 44.0}


RECORD = {"model_id": "NousResearch/Hermes-4-14B", "revision": "0" * 40, "quant": "nf4", "dtype": "bfloat16",
          "device": "cuda", "placement": {"cuda:0": "model.layers.0-39"}, "reasoning_style": "hermes4",
          "versions": {"playground": "0.1.0", "torch": "2.13.0", "transformers": "5.24.0"}}


def run_record(rng: random.Random, lane: str, tokens: int, when: datetime) -> RunInfo:
    p = lane_payload(rng, lane, tokens)
    return RunInfo(id="", cell_id="", execution=1, lane=lane, status="done", prompt_tokens=40,
                   generated_tokens=tokens, reasoning_tokens=p["token_kinds"].count("r"),
                   answer_tokens=p["token_kinds"].count("a"), metrics=metrics_for(p), finish_reason="stop",
                   error=None, record={**RECORD, "settings": {"seed": rng.randrange(2**31), "temperature": 0.6}},
                   started_at=when, finished_at=when, updated_at=when, **p)


def session_record(rng: random.Random, title: str, cells: int, tokens: int, when: datetime) -> SessionFull:
    cell_list = []
    for i in range(cells):
        runs = {lane: run_record(rng, lane, tokens, when) for lane in ("standard", "reasoning")}
        cell_list.append(CellFull(id="", session_id="", position=i, kind="prompt",
                                  prompt=f"{title}: question {i} " + " ".join(rng.choices(WORDS, k=12)),
                                  system_prompt=None, note="", settings={"standard": {}, "reasoning": {}},
                                  created_at=when, updated_at=when, executions=(Execution(1, runs),)))
    return SessionFull(id="", owner="", title=title, created_at=when, updated_at=when, cells=tuple(cell_list))


def build(store, rng: random.Random, sessions: int, big_cells: int, tokens: int) -> str:
    """Fill the store; returns the id of the big session. Imports go in bulk, one transaction per chunk."""
    now = datetime.now(UTC)
    ago = lambda: now - timedelta(minutes=rng.randrange(60 * 24 * 365))
    main = sessions // 2
    big = store.import_sessions(MAIN_OWNER, [session_record(rng, "The big one", big_cells, tokens, now)])[0]
    for start in range(1, main, 1000):
        store.import_sessions(MAIN_OWNER, [session_record(rng, f"Session {i}", 3, 20, ago())
                                           for i in range(start, min(start + 1000, main))])
    others = sessions - main
    for owner in range(100):
        store.import_sessions(f"owner-{owner}", [session_record(rng, f"Theirs {owner}/{i}", 3, 20, ago())
                                                 for i in range(owner, others, 100)])
    return big.id


def measure(store, rng: random.Random, args) -> tuple[dict, dict]:
    """Build the data set in `store`, then time the four operations (medians)."""
    t0 = time.perf_counter()
    big_id = build(store, rng, args.sessions, args.big_cells, args.tokens)
    build_s = time.perf_counter() - t0

    open_s, full = timed(lambda: store.get_session(MAIN_OWNER, big_id), max(3, args.repeats // 3))
    runs = sum(len(e.runs) for c in full.cells for e in c.executions)
    list_s, page = timed(lambda: store.list_sessions(MAIN_OWNER), args.repeats)
    search_s, hits = timed(lambda: store.list_sessions(MAIN_OWNER, "no such words"), args.repeats)

    # Runs in flight on cells of the big session, as the app would have them.
    cells = [c.id for c in full.cells[: args.repeats + 1]]
    payload = lane_payload(rng, "reasoning", args.tokens)
    running = iter([rid for cid in cells for rid in store.start_execution(
        MAIN_OWNER, cid, {"standard": {}, "reasoning": {}}, RECORD).values()])
    checkpoint_run = next(running)
    checkpoint_s, _ = timed(lambda: store.checkpoint_run(checkpoint_run, **payload), args.repeats)
    finish_s, done = timed(lambda: store.finish_run(next(running), status="done", **payload, prompt_tokens=40,
                                                    metrics=metrics_for(payload), finish_reason="stop",
                                                    error=None), args.repeats)
    assert done and store.integrity_ok()
    figures = {"open_session_ms": open_s * 1e3, "list_sessions_ms": list_s * 1e3,
               "finish_run_ms": finish_s * 1e3, "checkpoint_ms": checkpoint_s * 1e3}
    info = {"build_s": build_s, "cells": len(full.cells), "runs": runs, "page": len(page), "hits": len(hits),
            "search_miss_ms": search_s * 1e3}
    return figures, info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--sessions", type=int, default=10_000)
    ap.add_argument("--big-cells", type=int, default=1_000)
    ap.add_argument("--tokens", type=int, default=1_000, help="tokens per run of the big session")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite",
                    help="postgres: measure PostgreSQL too, beside SQLite")
    args = ap.parse_args()
    engines = ["sqlite"] + (["postgres"] if args.db == "postgres" else [])

    results, rows = {}, []
    for engine in engines:
        rng = random.Random(0)  # the same data on both engines
        with tempfile.TemporaryDirectory() as tmp:
            cluster = PostgresCluster(durable=True).start() if engine == "postgres" else None
            try:
                store = open_store(cluster.url if cluster else Path(tmp) / "bench.db")
                figures, info = measure(store, rng, args)
                if cluster:
                    info["db_mb"] = int(cluster.sql("SELECT pg_database_size('playground')")) / 2**20
                else:
                    info["db_mb"] = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 2**20
                store.close()
            finally:
                if cluster:
                    cluster.stop()
        results[engine] = (figures, info)
        rows += [{"engine": engine, "figure": k, "median_ms": v, "goal_ms": GOALS_MS[k], "meets_goal": v <= GOALS_MS[k]}
                 for k, v in figures.items()]
        rows.append({"engine": engine, "figure": "search_miss_ms (no goal)", "median_ms": info["search_miss_ms"],
                     "goal_ms": "-", "meets_goal": "-"})
    print(table(rows))
    for engine, (_, info) in results.items():
        print(f"{engine}: {args.sessions:,} sessions ({info['db_mb']:,.0f} MB, built in {info['build_s']:.1f} s); "
              f"the big one: {info['cells']:,} cells, {info['runs']:,} runs of {args.tokens:,} tokens; first page "
              f"{info['page']}, search hits {info['hits']}; medians of {args.repeats}")
    sqlite_figures, sqlite_info = results["sqlite"]
    out = {**{k: round(v, 3) for k, v in sqlite_figures.items()}, "goals_ms": GOALS_MS,
           "meets_goals": all(r["meets_goal"] is True for r in rows if r["goal_ms"] != "-"),
           "sessions": args.sessions, "big_session_runs": sqlite_info["runs"], "tokens_per_run": args.tokens,
           "db_mb": round(sqlite_info["db_mb"], 1), "machine": machine()}
    if "postgres" in results:
        pg_figures, pg_info = results["postgres"]
        out.update({f"postgres_{k}": round(v, 3) for k, v in pg_figures.items()})
        out["postgres_db_mb"] = round(pg_info["db_mb"], 1)
        out["postgres_over_sqlite"] = {k: round(pg_figures[k] / sqlite_figures[k], 2) for k in pg_figures}
    emit(out)


if __name__ == "__main__":
    main()
