"""Replicas: several server processes on one database, and what "interrupted" means among them.

With one server per database, a run still "running" when the server starts was left by its dead
predecessor. With replicas, another replica's running runs are live. So each replica owns its
runs (runs.replica = its id) and keeps a heartbeat row fresh (BEATS_PER_LEASE times a lease); any
live replica marks a replica dead once its heartbeat is older than the lease, turns that replica's running runs
into "interrupted" (tokens of the last checkpoint kept) and drops its row. A replica restarting
under the same id (a container's hostname survives a restart) marks its own earlier runs at once.

Heartbeats carry each replica's own clock: the lease (30 s) is far wider than the skew of
NTP-synced machines. A replica frozen for longer than the lease (a paused VM) finds its runs
interrupted when it wakes: its checkpoints then write nothing, and its heartbeat re-registers it.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from sqlalchemy import Engine, delete, insert, or_, select, update

from playground.errors import InvalidInput, PlaygroundError

from .models import REPLICA_ID_CHARS, ReplicaRow, RunRow, utcnow
from .sqlite import WRITE

log = logging.getLogger(__name__)

# The lease (how long a silent replica counts as alive) is PLAYGROUND_REPLICA_LEASE_S, 30 s by default.
BEATS_PER_LEASE = 6  # so one or two lost beats (a slow database) never make a live replica look dead
replicas_t = ReplicaRow.__table__
runs_t = RunRow.__table__


def check_replica_id(replica: str) -> str:
    if not isinstance(replica, str) or not replica.strip() or len(replica) > REPLICA_ID_CHARS:
        raise InvalidInput(f"replica id {replica!r}: use 1–{REPLICA_ID_CHARS} characters (REPLICA_ID_CHARS), "
                           "unique per server process on this database, e.g. its hostname and port.")
    return replica


def _write(engine: Engine):
    return engine.execution_options(**{WRITE: True}).begin()


def beat(engine: Engine, replica: str, now: datetime | None = None) -> None:
    """Register the replica, or refresh its heartbeat."""
    now = now or utcnow()
    with _write(engine) as conn:
        fresh = conn.execute(update(replicas_t).where(replicas_t.c.id == replica).values(heartbeat_at=now))
        if fresh.rowcount == 0:
            conn.execute(insert(replicas_t).values(id=replica, started_at=now, heartbeat_at=now))


def reap_dead(engine: Engine, lease_s: float, now: datetime | None = None) -> int:
    """Mark interrupted every running run of a replica that is dead (heartbeat older than the lease)
    or unknown (never registered, or already reaped); drop the dead replicas' rows. Returns the
    number of runs marked. Runs of no replica (before revision 0004) are left to mark_interrupted."""
    cutoff = (now or utcnow()) - timedelta(seconds=lease_s)
    with _write(engine) as conn:
        dead = select(replicas_t.c.id).where(replicas_t.c.heartbeat_at < cutoff)
        known = select(replicas_t.c.id)
        marked = conn.execute(
            update(runs_t).where(runs_t.c.status == "running", runs_t.c.replica.is_not(None),
                                 or_(runs_t.c.replica.in_(dead), runs_t.c.replica.not_in(known)))
            .values(status="interrupted", finished_at=runs_t.c.updated_at)).rowcount
        conn.execute(delete(replicas_t).where(replicas_t.c.heartbeat_at < cutoff))
    return marked


def leave(engine: Engine, replica: str) -> None:
    """A clean shutdown: the replica's row goes (its runs were ended by the server's own shutdown)."""
    with _write(engine) as conn:
        conn.execute(delete(replicas_t).where(replicas_t.c.id == replica))


def live_replicas(engine: Engine, lease_s: float) -> list[str]:
    cutoff = utcnow() - timedelta(seconds=lease_s)
    with engine.connect() as conn:
        return sorted(conn.execute(select(replicas_t.c.id).where(replicas_t.c.heartbeat_at >= cutoff)).scalars())


class ReplicaLease:
    """The heartbeat of one replica, on a daemon thread: beat every `heartbeat_s`, reap the dead.

    A failed beat (the database briefly unreachable) is logged and retried on the next tick."""

    def __init__(self, engine: Engine, replica: str, lease_s: float):
        self.engine, self.replica = engine, check_replica_id(replica)
        self.heartbeat_s, self.lease_s = lease_s / BEATS_PER_LEASE, lease_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"replica-lease-{replica}", daemon=True)

    def start(self) -> int:
        """Register, reap what dead replicas left, start beating; returns the runs reaped now."""
        beat(self.engine, self.replica)
        reaped = reap_dead(self.engine, self.lease_s)
        self._thread.start()
        return reaped

    def _loop(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                beat(self.engine, self.replica)
                reaped = reap_dead(self.engine, self.lease_s)
                if reaped:
                    log.warning("marked %d run(s) of dead replica(s) interrupted", reaped)
            except Exception as exc:  # noqa: BLE001 - the heartbeat must outlive any one failure
                log.warning("replica heartbeat failed (retrying in %.0f s): %s", self.heartbeat_s, exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.heartbeat_s + 5)
        try:
            leave(self.engine, self.replica)
        except PlaygroundError as exc:
            log.warning("could not remove replica %s: %s", self.replica, exc)
