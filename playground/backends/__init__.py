"""Whatever generates: the local engine (and its step scheduler), ZeroGPU, or a remote endpoint.

All of them satisfy `base.Backend`; the service picks one with `local_backend` or builds a
`remote.RemoteBackend`, and nothing downstream asks which one ran.
"""

from __future__ import annotations

from playground.backends.base import Backend
from playground.config import Settings, on_zero_gpu

# Runs at a time when "auto" has no local memory plan to read (a remote endpoint batches on its side).
REMOTE_AUTO_RUNS = 4


def concurrent_runs(settings: Settings, loaded=None) -> tuple[int, str]:
    """How many runs share the model at once (max_concurrent_runs, resolved), and why."""
    if settings.max_concurrent_runs != "auto":
        return settings.max_concurrent_runs, "set by PLAYGROUND_MAX_CONCURRENT_RUNS or --max-concurrent-runs"
    if on_zero_gpu():
        return 1, "auto: on ZeroGPU each run is one GPU call of its own"
    if loaded is None:
        return REMOTE_AUTO_RUNS, f"auto: no local model to plan for; {REMOTE_AUTO_RUNS} runs at a time"
    from playground.backends.local.admission import auto_concurrent_runs

    return auto_concurrent_runs(loaded.plan, loaded.device.value == "cpu")


def local_backend(loaded, settings: Settings) -> Backend:
    """The backend for a model loaded in this process: generation inside spaces.GPU on ZeroGPU,
    in-process elsewhere, with every run's rows sharing the decode steps of one batch. The number of
    runs at once, and why, joins the model's reasons (the footer shows them)."""
    from playground.models.hardware import Detected

    runs, why = concurrent_runs(settings, loaded)
    loaded.settings_reasons["max_concurrent_runs"] = Detected(str(runs), why)
    if on_zero_gpu():
        from playground.backends.zerogpu import ZeroGpuEngine

        return ZeroGpuEngine(loaded, settings.zero_gpu_duration_s)
    from playground.backends.local.engine import Engine

    return Engine(loaded, max_runs=runs)
