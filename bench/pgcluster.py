"""A throwaway PostgreSQL cluster on 127.0.0.1 for tests and benchmarks: initdb, pg_ctl start, drop.

Debian's `postgresql` package (bookworm: 15) keeps initdb and pg_ctl in its own bin folder, not on
PATH. PostgreSQL refuses to run as root, so as root the cluster runs as the package's `postgres`
user (its folder under /tmp, which that user can reach: pytest's own tmp folders are mode 700).
Nothing listens beyond loopback: `listen_addresses=127.0.0.1`, a free port, and trust auth for
local connections only.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bench.common import free_port

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
RUN_AS = "postgres"  # the Debian package's user
START_TIMEOUT_S = 180  # initdb and a start take seconds; a crowded 2-core box can stretch that a lot
# A test cluster trades durability for speed (a crash of the test machine loses a throwaway
# database); a benchmark keeps the server's defaults (durable=True) so its figures are honest.
FAST_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def pg_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder, or None when the package is missing."""
    found = sorted(glob.glob(PG_BIN_GLOB), key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit()
                   else 0)
    if found:
        return Path(found[-1])
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresCluster:
    """One cluster in a fresh folder; `url` is an SQLAlchemy URL for its database `playground`."""

    def __init__(self, durable: bool = False, settings: dict | None = None):
        self.bin = pg_bin()
        if self.bin is None:
            raise RuntimeError("PostgreSQL is not installed: `apt-get install postgresql` (Debian's package "
                               "puts initdb and pg_ctl in /usr/lib/postgresql/<version>/bin).")
        self.root = Path(tempfile.mkdtemp(prefix="playground-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.settings = {**({} if durable else FAST_SETTINGS), **(settings or {})}
        self.user = RUN_AS if os.geteuid() == 0 else None
        self.url = f"postgresql+psycopg://playground@127.0.0.1:{self.port}/playground"
        self.admin_url = f"postgresql+psycopg://playground@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = START_TIMEOUT_S) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}): {done.stderr.strip()}\n{log}")
        return done

    def start(self) -> PostgresCluster:
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "playground", "--auth=trust", "-E", "UTF8",
                  "--locale=C.UTF-8", "--no-instructions", "--no-sync")
        self.start_server()
        self.sql("CREATE DATABASE playground", database="postgres")
        return self

    def start_server(self) -> None:
        options = " ".join([f"-c listen_addresses=127.0.0.1 -p {self.port}",
                            f"-c unix_socket_directories={self.root}",
                            *(f"-c {k}={v}" for k, v in self.settings.items())])
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
                  "-t", str(START_TIMEOUT_S), "start")

    def stop_server(self) -> None:
        """Stop the server (fast: sessions are cut off), keeping its data for start_server()."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def sql(self, statement: str, database: str = "playground") -> str:
        """Run one statement with psql (as the cluster's superuser); returns its unaligned output."""
        return self._run("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
                         "-p", str(self.port), "-U", "playground", "-d", database, "-c", statement).stdout

    def fresh_database(self, name: str) -> str:
        """A new empty database in this cluster; returns its URL."""
        self.sql(f'CREATE DATABASE "{name}"', database="postgres")
        return f"postgresql+psycopg://playground@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def wait_for(predicate, timeout_s: float, what: str, poll_s: float = 0.1):
    """Poll `predicate` until it returns something truthy; TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise TimeoutError(f"{what} did not happen in {timeout_s:g} s")
