"""Helpers shared by the benchmarks: an offline environment, a table printer, the JSON last line."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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
