"""The remote backend: an OpenAI-compatible endpoint as a Backend (see backend.py)."""

from playground.backends.remote.backend import (
    MAX_TIMEOUT_S,
    SWITCHES,
    RemoteBackend,
    RemoteConfig,
    RemoteError,
    list_models,
    spread,
)

__all__ = ["MAX_TIMEOUT_S", "SWITCHES", "RemoteBackend", "RemoteConfig", "RemoteError", "list_models", "spread"]
