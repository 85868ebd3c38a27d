"""Metrics for operators: GET /metrics in Prometheus' text format (prometheus-client, this room only).

One `Telemetry` per server process, with a registry of its own (no process-global state, so tests
and two apps in one process never mix counts). What it counts comes from two places:
- the store, as its listener (SessionStore.listener): every run row it starts, checkpoints and
  finishes, for a notebook cell, a batch or a sweep alike, and every store error by kind. A "run"
  is the store's: one lane of one execution. Tokens count at each checkpoint, so they move while a
  run streams;
- the server, at scrape time: gradio's queue (events waiting, workers busy), this replica's active
  rows (lanes started and not finished, read from the store), the model's load time.

Served when Settings.metrics_on (private: on; public: only with PLAYGROUND_METRICS=true, since it
tells anyone how loaded the server is); otherwise /metrics is a 404, as if it did not exist.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

PREFIX = "playground"
# Seconds: a cached small model answers in tens of milliseconds, a 405B's reasoning lane in minutes.
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
STORE_ERROR_KINDS = {"StoreBusy": "busy", "StoreFull": "full", "StoreUnavailable": "unavailable"}
MAX_TRACKED_RUNS = 10_000  # runs in flight remembered for their lane and backend; far above any real load


class Telemetry:
    """The process's counters, and the store listener that moves them."""

    def __init__(self, replica: str):
        self.registry = CollectorRegistry()
        self.replica = replica
        r = self.registry
        self.started = Counter(f"{PREFIX}_runs_started", "Runs started (one per lane of an execution)",
                               ["backend", "lane"], registry=r)
        self.finished = Counter(f"{PREFIX}_runs_finished", "Runs finished, by final status",
                                ["backend", "lane", "status"], registry=r)
        self.tokens = Counter(f"{PREFIX}_tokens_generated", "Tokens generated, counted at each checkpoint",
                              ["lane"], registry=r)
        self.ttft = Histogram(f"{PREFIX}_time_to_first_token_seconds", "Time to a run's first token",
                              ["backend", "lane"], buckets=TTFT_BUCKETS, registry=r)
        self.duration = Histogram(f"{PREFIX}_run_duration_seconds", "A run's generation time, start to last token",
                                  ["backend", "lane"], buckets=DURATION_BUCKETS, registry=r)
        self.store_errors = Counter(f"{PREFIX}_store_errors", "Store calls that failed, by kind (busy, full, "
                                    "unavailable)", ["kind"], registry=r)
        self.model_load = Gauge(f"{PREFIX}_model_load_seconds", "How long loading the current model took",
                                ["model"], registry=r)
        self.queue_depth = Gauge(f"{PREFIX}_queue_depth", "Requests waiting in the queue", registry=r)
        self.queue_active = Gauge(f"{PREFIX}_queue_active", "Requests being handled by the queue's workers",
                                  registry=r)
        self.active_rows = Gauge(f"{PREFIX}_active_rows", "This replica's runs started and not finished "
                                 "(each a row of a batched generate)", registry=r)
        Gauge(f"{PREFIX}_replica_info", "Which replica this is", ["replica"], registry=r).labels(replica).set(1)
        self._lock = threading.Lock()
        self._runs: dict[str, tuple[str, str, int]] = {}  # run id -> (backend, lane, tokens counted so far)

    # --- the store's listener --------------------------------------------------------------------
    def runs_started(self, run_ids: dict[str, str], record: dict) -> None:
        backend = str(record.get("backend") or "unknown")
        with self._lock:
            for lane, run_id in run_ids.items():
                self.started.labels(backend, lane).inc()
                if len(self._runs) < MAX_TRACKED_RUNS:
                    self._runs[run_id] = (backend, lane, 0)

    def run_progress(self, run_id: str, generated_tokens: int) -> None:
        with self._lock:
            self._count_tokens(run_id, generated_tokens, keep=True)

    def run_finished(self, run_id: str, status: str, generated_tokens: int, metrics: dict | None) -> None:
        with self._lock:
            backend, lane = self._count_tokens(run_id, generated_tokens, keep=False)
        self.finished.labels(backend, lane, status).inc()
        metrics = metrics or {}
        if isinstance(metrics.get("ttft_s"), int | float):
            self.ttft.labels(backend, lane).observe(metrics["ttft_s"])
        if isinstance(metrics.get("total_s"), int | float):
            self.duration.labels(backend, lane).observe(metrics["total_s"])

    def store_error(self, kind: str) -> None:
        self.store_errors.labels(STORE_ERROR_KINDS.get(kind, "unavailable")).inc()

    def _count_tokens(self, run_id: str, generated_tokens: int, keep: bool) -> tuple[str, str]:
        backend, lane, counted = self._runs.pop(run_id, ("unknown", "unknown", 0))
        if generated_tokens > counted:
            self.tokens.labels(lane).inc(generated_tokens - counted)
        if keep:
            self._runs[run_id] = (backend, lane, max(counted, generated_tokens))
        return backend, lane

    # --- read at scrape time ---------------------------------------------------------------------
    def model_loaded(self, model: str, seconds: float) -> None:
        self.model_load.clear()
        self.model_load.labels(model).set(seconds)

    def watch(self, queue_depth: Callable[[], float], queue_active: Callable[[], float],
              active_rows: Callable[[], float]) -> None:
        self.queue_depth.set_function(queue_depth)
        self.queue_active.set_function(queue_active)
        self.active_rows.set_function(active_rows)

    def render(self) -> tuple[bytes, str]:
        """The text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def gradio_queue(api):
    """The queue of the gradio app mounted on `api`, found by duck typing (only ui/ imports gradio):
    the Mount whose app has get_blocks(). None before the page is mounted."""
    for route in getattr(api, "routes", ()):
        blocks = getattr(getattr(route, "app", None), "get_blocks", None)
        if callable(blocks):
            return getattr(blocks(), "_queue", None)  # gradio 6.31 keeps it there (ui/app.py sets it up)
    return None
