"""python -m bench.grading: what grading a problem set costs.

1. Answers graded per second per grader kind, on answers made from a generated gym suite (half
   right, half wrong), through graders.grade as a batch grades them: math and gym in the checker
   workers, python tests in the sandbox (fewer of those: each is a process).
2. Math-Verify's cost per answer: through the checker worker (what grading pays) and called in this
   process (the library alone), median and p95; the difference is the worker's round trip.
3. The batch runner on a --cells gym suite with the embedded model, end to end: generate the
   suite, import it, run every cell batched (both lanes) and grade each lane with the verifier:
   cells/s.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import emit, machine, table

CHOICES = "ABCD"


def answers_for(kind: str, rows: list[dict]) -> list[tuple[dict | str, str, str]]:
    """(grader, expected, answer) per row for one grader kind; odd rows get a wrong answer."""
    out = []
    for i, row in enumerate(rows):
        right = row["expected"]
        value = right if i % 2 == 0 else str(int(right) + 1)
        if kind == "exact":
            out.append(("exact", right, f"Final answer: \\boxed{{{value}}}"))
        elif kind == "numeric":
            out.append(({"kind": "numeric"}, right, f"Adding it up, the total is {value} apples."))
        elif kind == "regex":
            out.append(("regex", rf"\b{right}\b", f"I get {value} in the end."))
        elif kind == "choice":
            letter = CHOICES[int(value) % 4]
            out.append(("choice", CHOICES[int(right) % 4], f"The answer is ({letter})."))
        elif kind == "math":
            out.append(("math", right, f"So the result is $\\boxed{{\\frac{{{2 * int(value)}}}{{2}}}}$."))
        elif kind == "gym":
            out.append((row["grader"], right, f"<answer>{value}</answer>"))
        elif kind == "python":
            out.append(("python", f"assert f() == {right}", f"```python\ndef f():\n    return {value}\n```"))
    return out


def grading_rates(rows: list[dict], python_rows: int) -> tuple[list[dict], dict]:
    from playground.evaluation.graders import grade
    from playground.evaluation.sandbox import run_code_test

    table_rows, rates = [], {}
    for kind in ("exact", "numeric", "regex", "choice", "math", "gym", "python"):
        cases = answers_for(kind, rows[:python_rows] if kind == "python" else rows)
        grade(cases[0][0], cases[0][1], cases[0][2], run_code_test)  # warm: a worker starts, a library loads
        t = time.perf_counter()
        statuses = [grade(g, e, a, run_code_test).status for g, e, a in cases]
        seconds = time.perf_counter() - t
        passed = statuses.count("pass")
        assert passed == (len(cases) + 1) // 2, (kind, statuses)  # the half that is right, and only it
        rates[kind] = len(cases) / seconds
        table_rows.append({"grader": kind, "answers": len(cases), "seconds": seconds,
                           "answers/s": rates[kind], "ms/answer": 1000 * seconds / len(cases)})
    return table_rows, rates


def math_verify_cost(rows: list[dict]) -> dict:
    from playground.evaluation.mathcheck import compare
    from playground.evaluation.pool import default_pool

    cases = [(e, a) for _, e, a in answers_for("math", rows)]
    pool = default_pool()
    pool.call("math", {"expected": cases[0][0], "answer": cases[0][1]})

    def per_answer(fn) -> list[float]:
        times = []
        for e, a in cases:
            t = time.perf_counter()
            fn(e, a)
            times.append(1000 * (time.perf_counter() - t))
        return sorted(times)

    worker = per_answer(lambda e, a: pool.call("math", {"expected": e, "answer": a}))
    compare(*cases[0])
    alone = per_answer(compare)

    def p95(xs: list[float]) -> float:
        return xs[min(len(xs) - 1, int(0.95 * len(xs)))]

    return {"worker_ms_p50": statistics.median(worker), "worker_ms_p95": p95(worker),
            "library_ms_p50": statistics.median(alone), "library_ms_p95": p95(alone)}


def batch_end_to_end(cells: int, seed: int, batch_size: int, model: str, quant: str) -> dict:
    from playground.app.batch_files import import_rows, parse_batch_file
    from playground.app.batch_jobs import plan_jobs, run_jobs
    from playground.app.service import Playground
    from playground.config import Settings
    from playground.evaluation.gym import generate_suite, suite_jsonl
    from playground.evaluation.verdict import session_verdict
    from playground.store import open_store

    pg = Playground(Settings())
    pg.load(model, quant)
    lanes = {"standard": {"max_new_tokens": 16}, "reasoning": {"max_new_tokens": 32, "thinking_budget": 16}}
    with tempfile.TemporaryDirectory() as tmp, open_store(Path(tmp) / "bench.db") as store:
        t0 = time.perf_counter()
        data = suite_jsonl(generate_suite([("basic_arithmetic", {"max_terms": 3, "max_digits": 2})], cells, seed))
        rows, errors = parse_batch_file(data.encode(), "suite.jsonl")
        assert not errors and len(rows) == cells, errors[:3]
        sid = store.create_session("bench", "bench.grading").id
        import_rows(store, "bench", sid, rows, settings=lanes)
        imported_s = time.perf_counter() - t0
        jobs = plan_jobs(store.get_session("bench", sid), pg.backend, pg.recommended(), pg.settings.max_new_tokens)
        list(run_jobs(pg, store, "bench", jobs[:1], batch_size=1, resume=False))  # a process's first generate pays once
        t1 = time.perf_counter()
        last = list(run_jobs(pg, store, "bench", jobs, batch_size=batch_size, resume=False))[-1]
        run_s = time.perf_counter() - t1
        verdict = session_verdict(store.get_session("bench", sid))
    total = imported_s + run_s
    return {"cells": cells, "generate_import_s": imported_s, "run_s": run_s, "total_s": total,
            "cells_per_s": cells / total, "tokens": last.tokens, "cells_compared": len(verdict.compared),
            "standard_accuracy": verdict.lanes["standard"].accuracy,
            "reasoning_accuracy": verdict.lanes["reasoning"].accuracy, "quant": pg.loaded.quant}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--answers", type=int, default=200, help="answers per grader kind")
    ap.add_argument("--python-answers", type=int, default=20, help="answers for the python grader (a process each)")
    ap.add_argument("--cells", type=int, default=200, help="cells of the gym suite the batch runner runs")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--quant", default="nf4")
    ap.add_argument("--skip-batch", action="store_true", help="grading figures only (no model)")
    args = ap.parse_args()

    from playground.evaluation.gym import generate_suite

    rows = [r for r in generate_suite([("gsm_symbolic", {})], args.answers, args.seed) if r["expected"].isdigit()]
    rates_table, rates = grading_rates(rows, args.python_answers)
    print(table(rates_table))
    mv = math_verify_cost(rows)
    print(f"\nMath-Verify per answer: {mv['worker_ms_p50']:.2f} ms through the worker (p95 {mv['worker_ms_p95']:.2f}), "
          f"{mv['library_ms_p50']:.2f} ms in this process (p95 {mv['library_ms_p95']:.2f})")
    figures = {"answers_per_s": {k: round(v, 1) for k, v in rates.items()},
               "math_verify": {k: round(v, 3) for k, v in mv.items()}, "answers": args.answers}
    if not args.skip_batch:
        b = batch_end_to_end(args.cells, args.seed, args.batch_size, args.model, args.quant)
        print()
        print(table([{"suite": f"{b['cells']} basic_arithmetic cells", "generate+import s": b["generate_import_s"],
                      "run+grade s": b["run_s"], "cells/s": b["cells_per_s"], "tokens": b["tokens"]}]))
        acc = {lane: "-" if b[f"{lane}_accuracy"] is None else f"{b[f'{lane}_accuracy']:.0%}"
               for lane in ("standard", "reasoning")}
        print(f"{args.model} in {b['quant']}, {args.batch_size} cells per generate; accuracy standard "
              f"{acc['standard']}, reasoning {acc['reasoning']} over {b['cells_compared']} cells")
        figures["batch"] = {k: round(v, 3) if isinstance(v, float) else v for k, v in b.items()}
    figures["machine"] = machine()
    emit(figures)


if __name__ == "__main__":
    main()
