"""What the notebook, the UI and the store need from whatever generates: a local model or a remote server.

Both `playground.backends.local.engine.Engine` (one batched `generate` on a model in this process) and
`playground.backends.remote.RemoteBackend` (two streaming requests to an OpenAI-compatible server) satisfy
`Backend`; their runs satisfy `RunLike` and yield the same `LaneUpdate`s into the same
`LaneResult`s, so metrics, charts, the store and exports never ask which one ran.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from playground.lanes import LaneResult, LaneSettings, LaneUpdate
from playground.prompting.prompts import LanePrompt

BACKEND_KINDS = ("local", "remote")


@runtime_checkable
class RunLike(Protocol):
    """One execution of one prompt over several lanes (engine.Run and remote.RemoteRun)."""

    prompts: dict[str, LanePrompt]  # input_ids may be [] where no local tokenizer exists
    settings: dict[str, LaneSettings]
    results: dict[str, LaneResult]
    record: dict
    t_submit: float
    t_start: float | None

    def __iter__(self) -> Iterator[LaneUpdate]: ...

    def stop(self) -> None: ...

    @property
    def finished(self) -> bool: ...

    def collect(self) -> dict[str, LaneResult]: ...


@runtime_checkable
class Backend(Protocol):
    """Starts runs. `lock` is held while a run generates where the backend cannot share (the local
    model); swapping backends waits on it. `style` is the reasoning family ("hermes", "qwen3", ...)."""

    kind: str  # one of BACKEND_KINDS
    lock: threading.Lock

    @property
    def style(self) -> str: ...

    def start(self, prompt: str, system: str | None = None,
              lanes: dict[str, LaneSettings] | None = None) -> RunLike: ...

    def reproducibility_record(self, run: RunLike) -> dict: ...


@runtime_checkable
class LocalBackend(Backend, Protocol):
    """A backend with the model in this process (kind "local"): it renders prompts with the model's
    own tokenizer and runs any set of keyed rows in one batch, which batch runs and sweeps need."""

    tokenizer: object
    loaded: object  # models.loading.LoadedModel

    def start_prompts(self, prompts: dict[str, LanePrompt], lanes: dict[str, LaneSettings],
                      owner: str | None = None) -> RunLike: ...
