"""python -m bench.stream: does the UI hold generation back at long outputs?

Goals: efficiency ≥ 0.95 and late/early ≤ 1.2.

Starts the app on 127.0.0.1 with the embedded model, streams one notebook cell whose reasoning
lane makes 1,500 tokens through gradio_client, and compares the tokens/s the client receives
with the engine alone generating the same tokens in this process. The server logs what each UI
update cost it (time between handing an update to gradio and being asked for the next), early
and late in the run: that is where a UI that re-sends whole texts shows.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from pathlib import Path

from bench.common import ServerProcess, emit, machine, table

CLIENT_POLL_S = 0.02  # well under the server's update interval (0.1 s): no update waits long unseen
PROMPT = "Write a long, detailed essay about the history of the sea and the ships that sailed it."


def rate(points: list[tuple[float, int]]) -> float:
    """Tokens per second between the first and the last (time, token count) point."""
    (t0, n0), (t1, n1) = points[0], points[-1]
    return (n1 - n0) / (t1 - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tokens", type=int, default=1500, help="reasoning-lane tokens")
    ap.add_argument("--standard-tokens", type=int, default=32)
    args = ap.parse_args()
    std = {"max_new_tokens": args.standard_tokens, "min_new_tokens": args.standard_tokens}
    rsn = {"max_new_tokens": args.tokens, "min_new_tokens": args.tokens}

    home = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    server = ServerProcess(home, env={"PLAYGROUND_MAX_NEW_TOKENS": str(max(args.tokens, 8192))})
    # This process stands in for a browser on another machine: on a 2-core box it keeps to the last
    # core and yields to the server there, so it takes as little as it can of the server's CPU time.
    pinned = hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2
    if pinned:
        os.sched_setaffinity(0, {(os.cpu_count() or 2) - 1})
        os.nice(5)
    try:
        server.wait_ready(timeout=300)
        from gradio_client import Client

        client = Client(server.url, verbose=False)
        session = client.predict("stream bench", api_name="/new_session")
        cell = client.predict(session["id"], PROMPT, "", api_name="/add_cell")
        job = client.submit(cell["id"], PROMPT, "", std, rsn, api_name="/run_cell")
        points: list[tuple[float, int]] = []
        updates = 0
        # Polled every CLIENT_POLL_S rather than iterated: gradio_client's iterator wakes every
        # millisecond, and on a 2-core box that spin takes CPU from the server being measured.
        while True:
            outputs = job.outputs()
            now = time.perf_counter()
            for update in outputs[updates:]:
                m = (update.get("reasoning") or {}).get("metrics")
                if m and m.get("generated_tokens"):
                    points.append((now, m["generated_tokens"]))
            updates = len(outputs)
            if job.done() and len(job.outputs()) == updates:
                break
            time.sleep(CLIENT_POLL_S)
        final = job.outputs()[-1]
        assert final["reasoning"]["status"] == "done", final["reasoning"]["status"]
        client_tok_s = rate(points)
        server_tok_s = final["reasoning"]["metrics"]["decode_tok_s"]
        time.sleep(1.0)
        stats = re.findall(r"stream stats: updates=(\d+) tokens=(\d+) early_update_ms=([\d.]+) "
                           r"late_update_ms=([\d.]+)", server.log_path.read_text())
        n_updates, _tokens, early_ms, late_ms = stats[-1]
        # The same cell again without reading the stream: the engine's speed in the same server when
        # no update is consumed. Equal speeds mean streaming costs the engine nothing.
        quiet = client.submit(cell["id"], PROMPT, "", std, rsn, api_name="/run_cell").result()
        unstreamed_tok_s = quiet["reasoning"]["metrics"]["decode_tok_s"]
    finally:
        server.stop()

    from playground.engine import Engine, LaneSettings
    from playground.loading import load_model

    if pinned:  # the engine alone gets every core, as the server had
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    engine = Engine(load_model("embedded", "nf4", models_dir=home / "models"))
    res = engine.start(PROMPT, None, {"standard": LaneSettings(**std), "reasoning": LaneSettings(**rsn)}).collect()
    r = res["reasoning"]
    engine_tok_s = (len(r.token_ids) - 1) / (r.token_times[-1] - r.token_times[0])
    efficiency = client_tok_s / engine_tok_s
    ratio = float(late_ms) / float(early_ms) if float(early_ms) > 0 else None
    print(table([
        {"measure": "engine alone, reasoning lane tok/s", "value": engine_tok_s},
        {"measure": "engine while serving, streamed tok/s", "value": server_tok_s},
        {"measure": "engine while serving, not streamed tok/s", "value": unstreamed_tok_s},
        {"measure": "client received tok/s", "value": client_tok_s},
        {"measure": "efficiency (client / engine)", "value": efficiency},
        {"measure": "updates sent", "value": int(n_updates)},
        {"measure": "server ms per update, early", "value": float(early_ms)},
        {"measure": "server ms per update, late", "value": float(late_ms)},
    ]))
    emit({"engine_tok_s": round(engine_tok_s, 2), "client_tok_s": round(client_tok_s, 2),
          "server_engine_tok_s": round(server_tok_s, 2), "efficiency": round(efficiency, 3),
          "server_unstreamed_tok_s": round(unstreamed_tok_s, 2),
          "streamed_over_unstreamed": round(server_tok_s / unstreamed_tok_s, 3),
          "early_update_ms": float(early_ms), "late_update_ms": float(late_ms),
          "late_over_early": round(ratio, 3) if ratio else None, "updates": int(n_updates),
          "client_updates": updates, "reasoning_tokens": args.tokens, "pinned_cores": pinned,
          "machine": machine()})


if __name__ == "__main__":
    main()
