"""Shared fixtures: an offline environment, one converted embedded model per test session, the
real model loaded once per quantization, and a throwaway PostgreSQL cluster for the store's
second engine (tests marked `postgres`)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from bench.common import CHROMIUM, CHROMIUM_ARGS, ServerProcess

# No test may reach a model hub: every machine that runs them is offline.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# In CI the property tests draw the same examples every time, so a red build always reproduces;
# on a developer's machine they draw fresh ones, which is where new counterexamples are found.
if os.environ.get("CI"):
    from hypothesis import settings as _hypothesis_settings

    _hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
    _hypothesis_settings.load_profile("ci")


@pytest.fixture(scope="session")
def home(tmp_path_factory) -> Path:
    """A PLAYGROUND_HOME shared by the whole session, so the GGUF is converted only once."""
    h = tmp_path_factory.mktemp("home")
    os.environ["PLAYGROUND_HOME"] = str(h)
    return h


@pytest.fixture(scope="session")
def models_dir(home) -> Path:
    from playground.models.embedded import ensure_embedded_checkpoint

    d = home / "models"
    ensure_embedded_checkpoint(d)
    return d


@pytest.fixture(scope="session")
def loaded_nf4(models_dir):
    from playground.models.loading import load_model

    return load_model("embedded", "nf4", models_dir=models_dir)


@pytest.fixture(scope="session")
def engine(loaded_nf4):
    from playground.backends.local.engine import Engine

    return Engine(loaded_nf4)


@pytest.fixture(scope="session")
def server(models_dir, home):
    srv = ServerProcess(home)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()



@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed: run `apt-get install chromium` (make test does it)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def postgres_cluster():
    """A real PostgreSQL (Debian's package) on a free port on 127.0.0.1, for the whole test session."""
    from bench.pgcluster import PostgresCluster, pg_bin

    if pg_bin() is None:
        message = "PostgreSQL is not installed: run `apt-get install postgresql` (.ci/run does it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with PostgresCluster() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_target(request, tmp_path):
    """Where a fresh, empty store lives, once per engine: a SQLite file path, or a PostgreSQL URL
    (a new database of the session's cluster)."""
    if request.param == "sqlite":
        return tmp_path / "data" / "playground.db"
    return request.getfixturevalue("postgres_cluster").fresh_database(f"t_{uuid.uuid4().hex[:12]}")
