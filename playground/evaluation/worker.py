"""The checker worker: a child process that runs Math-Verify and Reasoning Gym's verifiers for the
graders, one request at a time (pool.py starts it and kills it at a request's deadline).

Why a process: Math-Verify bounds its own work with `signal.alarm`, which works only on the main
thread (every Gradio handler runs elsewhere) and cannot interrupt a long big-integer operation in
C anyway. So its timeouts are turned off here and the pool's deadline ends the whole process.

Protocol: one JSON object per line on stdin, {"id", "op", "args"}; one per line on stdout,
{"id", "ok": true, "result"} or {"id", "ok": false, "error"}. Libraries' own prints go to stderr,
so nothing they write can be read as a reply.
"""

from __future__ import annotations

import json
import resource
import sys

# Which library each op needs: "load" imports it under the start-up deadline, before the first
# request's own deadline starts (reasoning_gym takes ~3 s to import on a busy 2-core machine).
MAX_ERROR_CHARS = 600
FAMILIES = {"math": "math", "math_read": "math", "gym": "gym", "gym_generate": "gym", "gym_tasks": "gym",
            "gym_check": "gym"}


def load(family: str) -> str:
    if family == "math":
        from playground.evaluation import mathcheck  # noqa: F401
    elif family == "gym":
        from playground.evaluation import gymcheck  # noqa: F401
    else:
        raise ValueError(f"unknown family {family!r}")
    return family


def dispatch(op: str, args: dict):
    if op == "load":
        return load(args["family"])
    if op == "math":
        from playground.evaluation.mathcheck import compare

        return compare(args["expected"], args["answer"])
    if op == "math_read":
        from playground.evaluation.mathcheck import read_expected

        return read_expected(args["expected"])
    if op == "gym":
        from playground.evaluation.gymcheck import score

        return score(args["task"], args.get("config") or {}, args["entry"], args["answer"])
    if op == "gym_generate":
        from playground.evaluation.gymcheck import generate

        return generate(args["task"], args.get("config") or {}, args["count"], args["seed"])
    if op == "gym_check":
        from playground.evaluation.gymcheck import check_config

        return check_config(args["task"], args.get("config") or {})
    if op == "gym_tasks":
        from playground.evaluation.gymcheck import tasks

        return tasks()
    raise ValueError(f"unknown op {op!r}")


def serve(memory_bytes: int) -> None:
    # The limit is set by the worker on itself (no preexec_fn: unsafe in a threaded parent): a
    # runaway expression that tries to build a huge integer fails with MemoryError, not the host.
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    replies, sys.stdout = sys.stdout, sys.stderr
    for line in sys.stdin:
        req_id = None
        try:
            req = json.loads(line)
            req_id = req.get("id")
            reply = {"id": req_id, "ok": True, "result": dispatch(req["op"], req.get("args") or {})}
        except MemoryError:
            reply = {"id": req_id, "ok": False, "error": "the check ran out of memory (CHECK_MEMORY_BYTES)"}
        except ValueError as exc:  # worded for the user (gymcheck's checks, a bad setting)
            reply = {"id": req_id, "ok": False, "error": str(exc)[:MAX_ERROR_CHARS]}
        except Exception as exc:  # a library's failure on one answer is that answer's error, not the worker's
            reply = {"id": req_id, "ok": False, "error": f"{type(exc).__name__}: {str(exc)[:MAX_ERROR_CHARS]}"}
        replies.write(json.dumps(reply, ensure_ascii=True, default=str) + "\n")
        replies.flush()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
