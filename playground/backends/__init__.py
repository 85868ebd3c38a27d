"""Whatever generates: the local engine (and its scheduler), ZeroGPU, or a remote endpoint.

All of them satisfy `base.Backend`; the service picks one with `local_backend` or builds a
`remote.RemoteBackend`, and nothing downstream asks which one ran.
"""

from __future__ import annotations

from playground.backends.base import Backend
from playground.config import Settings, on_zero_gpu


def local_backend(loaded, settings: Settings) -> Backend:
    """The backend for a model loaded in this process: generation inside spaces.GPU on ZeroGPU,
    in-process elsewhere, with runs of waiting visitors batched when max_concurrent_runs > 1."""
    if on_zero_gpu():
        from playground.backends.zerogpu import ZeroGpuEngine

        return ZeroGpuEngine(loaded, settings.zero_gpu_duration_s)
    from playground.backends.local.engine import Engine

    engine = Engine(loaded)
    if settings.max_concurrent_runs > 1:
        from playground.backends.local.scheduler import RunScheduler

        RunScheduler.attach(engine, settings.max_concurrent_runs)
    return engine
