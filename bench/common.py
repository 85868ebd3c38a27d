"""Helpers shared by the benchmarks: an offline environment, a table printer, the JSON last line."""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parent.parent

# Debian's chromium, driven by Playwright (tests and bench.page). The flags keep it from reaching out
# to the network, which is closed on every machine that runs them.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


# The notebook page as Playwright sees it (tests and bench.page).
LANE_STATUS = ".lane-{lane} .prose.lane-status"


def lane_status(cell, lane: str) -> str:
    return cell.locator(LANE_STATUS.format(lane=lane)).inner_text()


def wait_status(cell, lane: str, pattern: str, timeout_s: float = 120) -> None:
    """Wait until a lane's status line in this cell matches the regular expression `pattern`."""
    cell.page.wait_for_function("([el, pat]) => new RegExp(pat).test(el.innerText)",
                                arg=[cell.locator(LANE_STATUS.format(lane=lane)).element_handle(), pattern],
                                timeout=timeout_s * 1000)


def set_setting(cell, lane_index: int, label: str, value: str) -> None:
    """Lane settings are two columns of numbers (standard first); fill one by its label."""
    if not cell.locator("input[type=number]").first.is_visible():
        cell.locator(".label-wrap", has_text="Lane settings").click()
    field = cell.get_by_label(label, exact=True).nth(lane_index)
    field.fill(value)
    field.press("Tab")


def machine() -> dict:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu_count": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__, "gpu": gpu}


def timed(fn, repeats: int = 3) -> tuple[float, object]:
    """Median wall time of `repeats` calls, and the last result."""
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def table(rows: list[dict]) -> str:
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(_fmt(r[c])) for r in rows)) for c in cols}
    line = "  ".join(c.ljust(widths[c]) for c in cols)
    sep = "  ".join("-" * widths[c] for c in cols)
    body = "\n".join("  ".join(_fmt(r[c]).ljust(widths[c]) for c in cols) for r in rows)
    return f"{line}\n{sep}\n{body}"


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def emit(figures: dict) -> None:
    """The last line of every benchmark: one JSON object."""
    print(json.dumps(figures, sort_keys=True))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def converted_home(prefix: str) -> Path:
    """A fresh PLAYGROUND_HOME whose models folder links to the default home's, where the embedded
    model is converted once (not once per benchmark run: 260 MB and ~20 s each)."""
    import tempfile

    from playground.config import Settings
    from playground.models.embedded import ensure_embedded_checkpoint

    models = Settings().models_dir
    ensure_embedded_checkpoint(models)
    home = Path(tempfile.mkdtemp(prefix=prefix))
    (home / "models").symlink_to(models, target_is_directory=True)
    return home


class ServerProcess:
    """The real app (`python app.py`) in a subprocess on 127.0.0.1."""

    def __init__(self, home: Path, env: dict | None = None):
        self.home = home
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


JOB_POLL_S = 0.02  # well under the server's update interval (0.1 s): no update waits long unseen


def follow(job, poll_s: float = JOB_POLL_S):
    """Yield (receipt time, update) for each update of a gradio_client job, then return when it ends.

    Polled rather than iterated: gradio_client's iterator waits in a 1 ms sleep loop, and on a
    2-core box that spin takes CPU from the server being measured."""
    seen = 0
    while True:
        done = job.done()
        outputs = job.outputs()
        now = time.perf_counter()
        for update in outputs[seen:]:
            yield now, update
        seen = len(outputs)
        if done:
            return
        time.sleep(poll_s)
