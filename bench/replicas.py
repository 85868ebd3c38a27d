"""python -m bench.replicas: bench.load's crowd on two app replicas over one real PostgreSQL.

Goal (issue 19): runs_lost = 0, runs_failed = 0, cross_owner_leaks = 0, and every visitor's runs are
seen whole through the replica it did not run them on (seen_elsewhere = runs persisted).

A throwaway PostgreSQL cluster with the server's durable defaults (bench/pgcluster.py), two replicas
of the real app (web-1, web-2) on it with one PLAYGROUND_SECRET, so an owner cookie signed by one is
honoured by the other, as behind a sticky proxy. Visitors alternate between the replicas (the proxy's
stickiness: one browser stays on one replica for gradio's queue); each makes a session of CELLS cells
and runs them one after another, all visitors at once. Then each visitor reads its session through
the OTHER replica, and looks for the others' sessions on its own; and the database is counted as the
operator would, through open_store on the PostgreSQL URL. web-2 starts after web-1 has converted the
embedded model, so the two do not write the same model folder at once.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.common import ServerProcess, emit, table
from bench.load import LANES, Visitor, crowd, in_threads
from bench.pgcluster import PostgresCluster
from playground.evaluation.metrics import percentile

REPLICAS = ("web-1", "web-2")
SECRET = "bench-replicas-secret-" + "0" * 40  # one signing key for both replicas, as a deployment has


def read_elsewhere(v: Visitor, url: str) -> int:
    """The visitor's finished runs as the other replica serves them (same cookie, other process)."""
    from gradio_client import Client

    other = Client(url, verbose=False, headers={"Cookie": f"pg_owner={v.cookie}"})
    got = other.predict(v.session, api_name="/get_session")
    return sum(c["executions"] for c in got["cells"]
               if all(((c.get("latest") or {}).get(lane) or {}).get("status") == "done" for lane in LANES))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--visitors", type=int, default=16)
    ap.add_argument("--cells", type=int, default=3, help="cells each visitor runs")
    ap.add_argument("--standard-tokens", type=int, default=16)
    ap.add_argument("--reasoning-tokens", type=int, default=24)
    args = ap.parse_args()
    lanes = {"standard": {"max_new_tokens": args.standard_tokens, "min_new_tokens": args.standard_tokens},
             "reasoning": {"max_new_tokens": args.reasoning_tokens, "min_new_tokens": args.reasoning_tokens}}
    home = Path(tempfile.mkdtemp(prefix="bench-replicas-"))
    with PostgresCluster(durable=True) as cluster:
        env = {"PLAYGROUND_DB_URL": cluster.url, "PLAYGROUND_SECRET": SECRET}
        servers: list[ServerProcess] = []
        try:
            for name in REPLICAS:  # one after the other: the first converts the model, the second reuses it
                servers.append(ServerProcess(home, env={**env, "PLAYGROUND_REPLICA_ID": name}))
                servers[-1].wait_ready(timeout=600)
            urls = [s.url for s in servers]
            visitors, wall_s = crowd(urls, args, lanes)
            elsewhere = in_threads(lambda nv: read_elsewhere(nv[1], urls[(nv[0] + 1) % 2]), enumerate(visitors))
            seen = in_threads(lambda v: v.leaks([o for o in visitors if o is not v]), visitors)
        finally:
            for s in servers:
                s.stop()
        from playground.store import open_store

        persisted = 0
        with open_store(cluster.url) as store:
            for v in visitors:
                owner = store.owner_of_session(v.session)
                for cell in store.get_session(owner, v.session).cells:
                    persisted += sum(1 for ex in cell.executions if set(ex.runs) == set(LANES)
                                     and {r.status for r in ex.runs.values()} == {"done"})
    requested = args.visitors * args.cells
    failed = [f for v in visitors for f in v.failed]
    leaks = [line for lines in seen for line in lines]
    waits = [w for v in visitors for w in v.waits]
    tokens = sum(v.tokens for v in visitors)
    print(table([{"replica": name, "visitors": sum(1 for i in range(args.visitors) if i % 2 == k),
                  "runs done": sum(v.done for i, v in enumerate(visitors) if i % 2 == k)}
                 for k, name in enumerate(REPLICAS)]))
    print(table([
        {"check": "runs persisted in PostgreSQL (both lanes done)", "value": f"{persisted} / {requested}"},
        {"check": "runs seen through the other replica", "value": f"{sum(elsewhere)} / {requested}"},
        {"check": "runs failed", "value": len(failed)},
        {"check": "cross-owner leaks", "value": len(leaks)},
        {"check": "crowd tok/s (both replicas)", "value": round(tokens / wall_s, 2)},
        {"check": "wait p95 s", "value": round(percentile(waits, 95), 2) if waits else "-"},
    ]))
    for line in (failed + leaks)[:20]:
        print("  !", line)
    emit({"runs_requested": requested, "runs_persisted": persisted, "runs_lost": requested - persisted,
          "runs_failed": len(failed), "cross_owner_leaks": len(leaks), "seen_elsewhere": sum(elsewhere),
          "throughput_tok_s": round(tokens / wall_s, 2),
          "p95_wait_s": round(percentile(waits, 95), 3) if waits else None, "replicas": len(REPLICAS),
          "visitors": args.visitors})


if __name__ == "__main__":
    main()
