"""Settings from the environment (PLAYGROUND_*), and auto-detected values with their reasons.

`Settings` is the one settings object: every module reads what an operator chose from it, and
`python -m playground serve --help` lists each field as a flag (a flag beats the env var).
`load_settings()` turns a bad value into ONE line naming the variable, the value and what is
allowed, so a Space's log shows the cause and not a pydantic traceback.

Every auto-detected value travels with a sentence saying why it was chosen, so the UI footer
and the start-up log can show it (a user on a Space cannot read our code to find out).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import socket
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from playground.errors import InvalidInput
from playground.prompting.catalog import PRESETS

Quantization = Literal["nf4", "int8", "none", "auto"]
QUANTIZATIONS: tuple[str, ...] = ("nf4", "int8", "none", "auto")
LOG_LEVELS: tuple[str, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

APP_NAME = "reasoning-playground"
ENV_PREFIX = "PLAYGROUND_"
DB_FILENAME = "playground.db"  # in the home folder unless PLAYGROUND_DB names another file


def default_home() -> Path:
    """PLAYGROUND_HOME, else the per-user data folder (XDG_DATA_HOME or ~/.local/share)."""
    if os.environ.get("PLAYGROUND_HOME"):
        return Path(os.environ["PLAYGROUND_HOME"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / APP_NAME


def on_space() -> bool:
    """Hugging Face sets SPACE_ID in every Space (and its variables and secrets as env vars)."""
    return bool(os.environ.get("SPACE_ID"))


def _default_host() -> str:
    # A Space routes to 0.0.0.0:7860 inside its container (Gradio SDK Spaces also say so through
    # GRADIO_SERVER_NAME); on a workstation we stay on loopback unless told otherwise.
    if os.environ.get("GRADIO_SERVER_NAME"):
        return os.environ["GRADIO_SERVER_NAME"]
    return "0.0.0.0" if on_space() else "127.0.0.1"


def _default_public() -> bool:
    return on_space()  # a Space is reachable by anyone with its URL


def _all_presets() -> list[str]:
    return list(PRESETS)


# What each field accepts, in words, for the one-line error (pydantic's own messages name neither
# the env var nor the accepted range in an operator's terms).
ALLOWED: dict[str, str] = {
    "model": "a preset key, a Hugging Face id or a local folder",
    "quant": "one of " + ", ".join(QUANTIZATIONS),
    "home": "a folder path",
    "db": "a file path",
    "db_url": "an SQLAlchemy URL of a PostgreSQL database, e.g. postgresql+psycopg://user:pass@host:5432/playground "
              "(a secret: it holds the password)",
    "replica_id": "1–100 characters naming this server process among the replicas on one database",
    "replica_lease_s": "a number of seconds 2–3600",
    "metrics": "true or false (unset: on when private, off when public: it reveals the server's load)",
    "host": "an address to listen on, e.g. 127.0.0.1 or 0.0.0.0",
    "port": "an integer 1–65535",
    "max_prompt_chars": "an integer ≥ 1",
    "max_new_tokens": "an integer ≥ 1", "max_context_tokens": "an integer ≥ 0 (0: the model's max positions)",
    "cpu_threads": "an integer 0–1024 (0 picks by model size)",
    "queue_size": "an integer ≥ 1",
    "runs_per_visitor_per_hour": "an integer ≥ 0 (0 = no limit)",
    "log_level": "one of " + ", ".join(LOG_LEVELS),
    "public": "true or false (1/0, yes/no)",
    "auth": "user:password pairs separated by commas, e.g. ann:pw1,bob:pw2",
    "hf_oauth": "true or false (unset: on when OAUTH_CLIENT_ID is set, as on a Space with hf_oauth: true)",
    "max_concurrent_runs": "an integer 1–64",
    "allowed_models": "preset keys separated by commas, from: " + ", ".join(PRESETS),
    "zero_gpu_duration_s": "an integer ≥ 1 (seconds)",
    "code_grading": "true or false (unset: on when private, off when public)",
    "remote_url": "an http(s) base URL of an OpenAI-compatible server, e.g. http://gpu-box:8000/v1",
    "remote_model": "the model name the server serves (empty: its only model)",
    "remote_api_key": "the key the server expects (a secret)",
    "remote_timeout_s": "a number of seconds 1–3600",
    "remote_switch": "one of auto, template_kwargs, system_prompt, soft_switch, reasoning_field, always",
}
SECRET_FIELDS = frozenset({"auth", "remote_api_key", "db_url"})
RemoteSwitch = Literal["auto", "template_kwargs", "system_prompt", "soft_switch", "reasoning_field", "always"]


class Settings(BaseSettings):
    """What an operator can set; each field is read from PLAYGROUND_<NAME>."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    model: str = Field("embedded", description="preset name, Hugging Face id or local folder")
    quant: Quantization = Field("nf4", description="nf4, int8, none or auto")
    home: Path = Field(default_factory=default_home, description="folder for the database and models")
    db: Path | None = Field(None, description="the SQLite database file (default: <home>/playground.db)")
    # A SecretStr: the URL carries the database password.
    db_url: SecretStr | None = Field(None, description="a PostgreSQL database instead of the SQLite file (an "
                                                       "SQLAlchemy URL: postgresql+psycopg://user:pass@host/db)")
    replica_id: str | None = Field(None, min_length=1, max_length=100, description="this server's name among "
                                   "replicas on one database (default: <hostname>:<port>)")
    replica_lease_s: float = Field(30.0, ge=2, le=3600,
                                   description="seconds without a heartbeat after which a replica is dead and "
                                               "its running runs are marked interrupted (it beats 6 times a lease)")
    host: str = Field(default_factory=_default_host,
                      description="address the server listens on (0.0.0.0 on a Space, else 127.0.0.1)")
    port: int = Field(7860, ge=1, le=65535, description="port the server listens on")
    max_prompt_chars: int = Field(20_000, ge=1, description="longest prompt accepted, in characters")
    max_new_tokens: int = Field(8192, ge=1, description="most new tokens one lane may generate")
    max_context_tokens: int = Field(0, ge=0, description="most tokens of one lane: prompt + new (0: max positions)")
    cpu_threads: int = Field(0, ge=0, le=1024, description="torch threads on the CPU; 0 picks by model size")
    runs_per_visitor_per_hour: int = Field(0, ge=0, le=1_000_000,
                                           description="most runs one visitor may start in an hour; 0 = no limit")
    queue_size: int = Field(64, ge=1, description="most requests waiting in the queue")
    log_level: str = Field("INFO", description="Python logging level")
    public: bool = Field(default_factory=_default_public,
                         description="anyone can reach the app: only allowed_models may be loaded "
                                     "(default: true on a Space, where SPACE_ID is set)")
    # SecretStr: its repr and str are '**********', so a logged Settings never shows a password.
    auth: SecretStr | None = Field(None, description="require a login: user:pass,user2:pass2 (a secret)")
    # None: follow the Space. `hf_oauth: true` in the README front matter makes a Space set OAUTH_CLIENT_ID.
    hf_oauth: bool | None = Field(None, description="require a Hugging Face login (Sign in with HF) "
                                                    "(default: on when OAUTH_CLIENT_ID is set)")
    max_concurrent_runs: int = Field(1, ge=1, le=64, description="paired runs on the model at the same time: "
                                                                 "runs waiting together share one batched generate")
    # NoDecode: read "a,b" as a comma list rather than as JSON.
    allowed_models: Annotated[list[str], NoDecode] = Field(
        default_factory=_all_presets, description="preset keys that may be loaded in public mode, comma separated")
    zero_gpu_duration_s: int = Field(120, ge=1, description="seconds a ZeroGPU slice is held per run")
    # None: follow `public`. Code answers run in a sandbox (playground.evaluation.sandbox), but on a public server
    # running strangers' code stays the operator's explicit choice.
    code_grading: bool | None = Field(None, description="run python graders' tests on code answers "
                                                        "(default: on when private, off when public)")
    # None: follow `public`. /metrics tells anyone who can reach it how busy the server is and which models run.
    metrics: bool | None = Field(None, description="serve /metrics in Prometheus text format "
                                                   "(default: on when private, off when public)")
    # A remote OpenAI-compatible endpoint (playground.backends.remote): runs go there instead of a local model.
    remote_url: str | None = Field(None, description="base URL of an OpenAI-compatible server (vLLM, SGLang, TGI, "
                                                     "transformers serve, a hosted API); set, runs go there")
    remote_model: str = Field("", description="model name on the remote server (empty: its only model)")
    remote_api_key: SecretStr | None = Field(None, description="API key for the remote server (a secret: never "
                                                               "logged, stored or exported)")
    remote_timeout_s: float = Field(120.0, ge=1, le=3600,
                                    description="longest wait for the remote server's next chunk, in seconds")
    remote_switch: RemoteSwitch = Field("auto", description="how the reasoning lane turns reasoning on at the "
                                                            "remote server (auto: by the model's family)")

    @field_validator("home", "db", mode="after")
    @classmethod
    def _expand(cls, v: Path | None) -> Path | None:
        return v.expanduser() if v is not None else None

    @field_validator("db_url", mode="before")
    @classmethod
    def _db_url(cls, v: Any) -> Any:
        raw = str(v.get_secret_value() if isinstance(v, SecretStr) else v or "").strip()
        if not raw:
            return None
        if not raw.startswith(("postgresql:", "postgresql+", "postgres:", "sqlite:///")):
            raise ValueError("not a database URL")  # never quote it: it holds a password
        return raw

    @field_validator("log_level", mode="before")
    @classmethod
    def _level(cls, v: Any) -> str:
        level = str(v).strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError("unknown log level")
        return level

    @field_validator("auth", mode="before")
    @classmethod
    def _auth(cls, v: Any) -> Any:
        raw = v.get_secret_value() if isinstance(v, SecretStr) else v
        if raw is None or str(raw).strip() == "":
            return None
        for pair in str(raw).split(","):
            user, sep, password = pair.strip().partition(":")
            if not sep or not user or not password:
                # The message must not quote the pair: it holds a password.
                raise ValueError("each entry must be user:password")
        return str(raw)

    @field_validator("remote_url", mode="before")
    @classmethod
    def _remote_url(cls, v: Any) -> str | None:
        if v is None or str(v).strip() == "":
            return None
        try:
            return normalize_base_url(str(v))
        except Exception:
            raise ValueError("not an http(s) URL") from None

    @field_validator("remote_api_key", mode="before")
    @classmethod
    def _remote_key(cls, v: Any) -> Any:
        raw = v.get_secret_value() if isinstance(v, SecretStr) else v
        return None if raw is None or str(raw).strip() == "" else str(raw).strip()

    @field_validator("allowed_models", mode="before")
    @classmethod
    def _models(cls, v: Any) -> list[str]:
        items = [s.strip() for s in v.split(",")] if isinstance(v, str) else [str(s).strip() for s in v]
        items = [s for s in items if s]
        unknown = [s for s in items if s not in PRESETS]
        if unknown or not items:
            raise ValueError("unknown preset")
        return items

    @model_validator(mode="after")
    def _one_login(self) -> Settings:
        if self.auth is not None and self.hf_oauth_on:
            raise ValueError("PLAYGROUND_AUTH and a Hugging Face login (PLAYGROUND_HF_OAUTH or OAUTH_CLIENT_ID) "
                             "are both on: choose one (set PLAYGROUND_HF_OAUTH=false to keep passwords)")
        return self

    @model_validator(mode="after")
    def _default_db(self) -> Settings:
        if self.db is None:
            # Through __dict__: a plain assignment would mark db as set by the operator.
            self.__dict__["db"] = self.home / DB_FILENAME
        return self

    @model_validator(mode="after")
    def _default_replica(self) -> Settings:
        if self.replica_id is None:
            self.__dict__["replica_id"] = f"{socket.gethostname()[:80]}:{self.port}"
        return self

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def auth_pairs(self) -> list[tuple[str, str]]:
        """[(user, password), ...] for gradio's `auth=` (empty when no login is required)."""
        if self.auth is None:
            return []
        pairs = []
        for pair in self.auth.get_secret_value().split(","):
            user, _, password = pair.strip().partition(":")
            pairs.append((user, password))
        return pairs

    @property
    def hf_oauth_on(self) -> bool:
        return bool(os.environ.get("OAUTH_CLIENT_ID")) if self.hf_oauth is None else self.hf_oauth

    @property
    def login_on(self) -> bool:
        """Sessions belong to logged-in users, and only share pages answer without a login."""
        return bool(self.auth_pairs) or self.hf_oauth_on

    @property
    def metrics_on(self) -> bool:
        return (not self.public) if self.metrics is None else self.metrics

    @property
    def code_grading_on(self) -> bool:
        return (not self.public) if self.code_grading is None else self.code_grading

    def model_allowed(self, ref: str) -> bool:
        """Whether a visitor may load `ref`: anything in private mode, allowed presets in public mode."""
        return not self.public or ref in self.allowed_models


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def format_validation_error(exc: ValidationError, from_flags: frozenset[str] = frozenset()) -> str:
    """One line: `PLAYGROUND_PORT='abc' is invalid: an integer 1–65535` (several joined by '; ')."""
    parts = []
    for err in exc.errors():
        if not err["loc"]:  # a rule across fields: its message names them (never the input: it holds secrets)
            parts.append(str(err.get("msg", "invalid settings")).removeprefix("Value error, "))
            continue
        field = str(err["loc"][0])
        name = flag_name(field) if field in from_flags else env_name(field)
        value = "'<redacted>'" if field in SECRET_FIELDS else repr(_raw_input(err.get("input")))
        allowed = ALLOWED.get(field) or str(err.get("msg", "invalid value"))
        part = f"{name}={value} is invalid: {allowed}"
        if part not in parts:
            parts.append(part)
    return "; ".join(parts).replace("\n", " ").replace("\r", " ")


def _raw_input(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return "<redacted>"
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def load_settings(**overrides: Any) -> Settings:
    """Settings from PLAYGROUND_* with `overrides` (command-line flags) on top; a bad value stops
    start-up with one line (SystemExit, status 1) instead of a traceback."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise SystemExit(format_validation_error(exc, frozenset(overrides))) from None


def apply_to_environ(settings: Settings) -> None:
    """Export the chosen home and database, so code that reads PLAYGROUND_HOME / PLAYGROUND_DB /
    PLAYGROUND_DB_URL itself (playground.store.default_target, the CLI) agrees with flags given on
    the command line."""
    os.environ["PLAYGROUND_HOME"] = str(settings.home)
    os.environ["PLAYGROUND_DB"] = str(settings.db)
    if settings.db_url is not None:
        os.environ["PLAYGROUND_DB_URL"] = settings.db_url.get_secret_value()


# --- command-line flags, generated from the fields --------------------------------------------------


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per Settings field (`--max-prompt-chars`), each overriding its env var. Values stay
    strings here: pydantic validates them exactly as it validates the env, with the same messages."""
    group = parser.add_argument_group("settings (each flag overrides its PLAYGROUND_* variable)")
    for field, info in Settings.model_fields.items():
        choices = f" ({ALLOWED[field]})" if field in ("log_level", "allowed_models") else ""
        help_text = f"{info.description}{choices} [env {env_name(field)}]"
        help_text = help_text.replace("%", "%%")  # argparse formats help with %
        if field == "public":
            group.add_argument(flag_name(field), dest=field, action=argparse.BooleanOptionalAction,
                               default=None, help=help_text)
        else:
            metavar = {"auth": "USER:PASS,...", "remote_api_key": "KEY", "db_url": "URL"}.get(field, field.upper())
            group.add_argument(flag_name(field), dest=field, default=None, metavar=metavar, help=help_text)


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = {f: getattr(args, f) for f in Settings.model_fields if getattr(args, f, None) is not None}
    return load_settings(**overrides)


def parse_serve_args(argv: list[str] | None = None) -> Settings:
    """`python app.py [--port 8000 ...]`: the same flags as `python -m playground serve`."""
    parser = argparse.ArgumentParser(prog="app.py", description="Serve the reasoning playground.")
    add_settings_arguments(parser)
    return settings_from_args(parser.parse_args(argv))


# --- ZeroGPU (Hugging Face Spaces) -------------------------------------------------------------------


def on_zero_gpu() -> bool:
    """A ZeroGPU Space: SPACES_ZERO_GPU is set there and the `spaces` package is installed. A GPU is
    attached only inside functions wrapped by `spaces.GPU`."""
    flag = os.environ.get("SPACES_ZERO_GPU", "").strip().lower()
    return flag not in ("", "0", "false", "no") and importlib.util.find_spec("spaces") is not None


# --- endpoint URLs (PLAYGROUND_REMOTE_URL and the model panel) ------------------------------------


def normalize_base_url(url: str) -> str:
    """'http://host:8000' or 'http://host:8000/v1/' -> 'http://host:8000/v1' (a bare host gets /v1,
    where OpenAI-compatible servers answer). Raises InvalidInput for anything that is not http(s)."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidInput("The endpoint URL is empty: give the server's base URL, e.g. http://127.0.0.1:8000/v1.")
    raw = url.strip()
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in raw):
        raise InvalidInput(f"The endpoint URL {safe_url(raw)!r} is not an http(s) URL: use e.g. "
                           "http://127.0.0.1:8000/v1 or https://api.example.com/v1.")
    path = parts.path.rstrip("/") or "/v1"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def safe_url(url: str) -> str:
    """The URL without user:password@ and query (either may carry a credential): what we show and store."""
    try:
        p = urlsplit(url)
        host = p.hostname or ""
        netloc = f"{host}:{p.port}" if p.port else host
        return urlunsplit((p.scheme, netloc, p.path, "", ""))
    except ValueError:
        return "<unparsable URL>"
