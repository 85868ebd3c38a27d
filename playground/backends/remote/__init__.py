"""The remote backend: an OpenAI-compatible endpoint as a Backend (backend.py says what differs from a
local model). The names the rest of the app uses; the rooms behind them are private to this package."""

from playground.backends.remote.backend import RemoteBackend, RemoteRun
from playground.backends.remote.client import MAX_TIMEOUT_S, RemoteConfig, RemoteError, list_models
from playground.backends.remote.requests import SWITCHES
from playground.backends.remote.state import RemoteLane, spread

__all__ = ["MAX_TIMEOUT_S", "SWITCHES", "RemoteBackend", "RemoteConfig", "RemoteError", "RemoteLane", "RemoteRun",
           "list_models", "spread"]
