"""Shared fixtures: an offline environment, one converted embedded model per test session, and
the real model loaded once per quantization."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

# No test may reach a model hub: every machine that runs them is offline.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def home(tmp_path_factory) -> Path:
    """A PLAYGROUND_HOME shared by the whole session, so the GGUF is converted only once."""
    h = tmp_path_factory.mktemp("home")
    os.environ["PLAYGROUND_HOME"] = str(h)
    return h


@pytest.fixture(scope="session")
def models_dir(home) -> Path:
    from playground.embedded import ensure_embedded_checkpoint

    d = home / "models"
    ensure_embedded_checkpoint(d)
    return d


@pytest.fixture(scope="session")
def loaded_nf4(models_dir):
    from playground.loading import load_model

    return load_model("embedded", "nf4", models_dir=models_dir)


@pytest.fixture(scope="session")
def engine(loaded_nf4):
    from playground.engine import Engine

    return Engine(loaded_nf4)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """The real app (`python app.py`) in a subprocess on 127.0.0.1."""

    def __init__(self, home: Path, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = home / f"server-{self.port}.log"
        full_env = dict(os.environ, PLAYGROUND_HOME=str(home), PLAYGROUND_PORT=str(self.port),
                        PLAYGROUND_HOST="127.0.0.1", PYTHONUNBUFFERED="1", **(env or {}))
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=full_env, stdout=self.log,
                                     stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 180) -> None:
        import httpx

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"server not ready in {timeout}s:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="session")
def server(models_dir, home):
    srv = ServerProcess(home)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()
