"""What start-up chose, and why: one log line per choice (device, dtype, quantization, model,
database, exposure, login, endpoint), each with its reason. Never a secret."""

from __future__ import annotations

import logging

from playground.config import DB_FILENAME, Settings, env_name, flag_name, on_space, on_zero_gpu, safe_url
from playground.models.hardware import describe_hardware
from playground.prompting.catalog import resolve_source


def _why(settings: Settings, field: str, default_reason: str) -> str:
    if field in settings.model_fields_set:
        return f"set by {env_name(field)} or {flag_name(field)}"
    return default_reason


def describe_startup(settings: Settings) -> list[str]:
    """One line per choice made at start-up, each with its reason: device, compute dtype,
    quantization, model, database, exposure. Never includes the auth passwords."""

    lines = describe_hardware()
    quant_reason = _why(settings, "quant", "the default: NF4 with double quantization, the smallest footprint")
    if settings.quant == "auto":
        quant_reason += "; the mode is picked at load time from the detected devices"
    lines.append(f"quantization: {settings.quant} ({quant_reason})")
    try:
        src = resolve_source(settings.model)
        what = f"preset {src.preset.key} ({src.preset.repo_id})" if src.preset else f"{src.kind} {src.ref}"
    except ValueError:
        what = f"{settings.model!r} (not a preset, Hugging Face id or folder: loading will say why)"
    lines.append(f"model: {what} ({_why(settings, 'model', 'the default: the embedded model needs no network')})")
    if settings.db_url is not None:  # the URL without its user and password
        lines.append(f"database: PostgreSQL {safe_url(settings.db_url.get_secret_value())} (PLAYGROUND_DB_URL is "
                     f"set), replica {settings.replica_id}; home: {settings.home}")
    else:
        db_reason = _why(settings, "db", f"the default: {DB_FILENAME} in the home folder")
        lines.append(f"database: {settings.db} ({db_reason}); home: {settings.home}")
    public_reason = _why(settings, "public", "SPACE_ID is set: a Space is public" if on_space()
                         else "the default: a private, local server")
    lines.append(f"public: {'yes' if settings.public else 'no'} ({public_reason})"
                 + (f"; models allowed: {', '.join(settings.allowed_models)}" if settings.public else ""))
    if settings.hf_oauth_on:
        lines.append("login: Sign in with Hugging Face (" + _why(settings, "hf_oauth", "OAUTH_CLIENT_ID is set")
                     + ")")
    else:
        lines.append(f"login: {len(settings.auth_pairs)} user(s)" if settings.auth
                     else "login: none (PLAYGROUND_AUTH unset)")
    lines.append(f"listening on {settings.host}:{settings.port}; {settings.max_concurrent_runs} run(s) at a time, "
                 f"queue of {settings.queue_size}")
    if settings.remote_url:
        key = "API key set" if settings.remote_api_key else "no API key"
        model = settings.remote_model or "(its only one)"
        lines.append(f"remote endpoint: {safe_url(settings.remote_url)}, model {model}"
                     f", {key}, timeout {settings.remote_timeout_s:g} s (PLAYGROUND_REMOTE_URL is set: runs go there)")
    if on_zero_gpu():
        lines.append(f"ZeroGPU: yes (SPACES_ZERO_GPU is set), {settings.zero_gpu_duration_s} s per run")
    return lines


def log_startup(settings: Settings, logger: logging.Logger | None = None) -> None:
    for line in describe_startup(settings):
        (logger or logging.getLogger("playground")).info("%s", line)
