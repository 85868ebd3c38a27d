"""Settings: every PLAYGROUND_* variable, its default, the flag that overrides it, and the one-line
error a bad value gives (in-process and through the real entry points)."""

from __future__ import annotations

import importlib.machinery
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from pydantic import SecretStr

from playground.app.startup import describe_startup
from playground.backends.zerogpu import zero_gpu_wrap
from playground.config import (
    Settings,
    add_settings_arguments,
    env_name,
    flag_name,
    load_settings,
    settings_from_args,
)
from playground.prompting.catalog import PRESETS

ROOT = Path(__file__).resolve().parent.parent
# Variables a host may set that change defaults: each test starts without them.
AMBIENT = ("SPACE_ID", "SPACE_HOST", "GRADIO_SERVER_NAME", "SPACES_ZERO_GPU", "XDG_DATA_HOME")
PASSWORD = "hunter2-never-shown"


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("PLAYGROUND_") or name in AMBIENT:
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))  # default_home() must not depend on the runner's home
    return monkeypatch


# (env value, expected attribute value) for every field: a new field without a row fails the test below.
FROM_ENV = {
    "model": ("hermes-4-14b", "hermes-4-14b"),
    "quant": ("int8", "int8"),
    "home": ("/srv/pg", Path("/srv/pg")),
    "db": ("/srv/db/pg.sqlite", Path("/srv/db/pg.sqlite")),
    "db_url": (f"postgresql+psycopg://app:{PASSWORD}@db:5432/pg",
               SecretStr(f"postgresql+psycopg://app:{PASSWORD}@db:5432/pg")),
    "replica_id": ("web-2", "web-2"),
    "replica_lease_s": ("12", 12.0),
    "metrics": ("true", True),
    "host": ("0.0.0.0", "0.0.0.0"),
    "port": ("8000", 8000),
    "max_prompt_chars": ("500", 500),
    "max_new_tokens": ("64", 64),
    "cpu_threads": ("3", 3),
    "queue_size": ("5", 5),
    "runs_per_visitor_per_hour": ("30", 30),
    "log_level": ("debug", "DEBUG"),
    "public": ("true", True),
    "auth": (f"ann:{PASSWORD},bob:pw", SecretStr(f"ann:{PASSWORD},bob:pw")),
    "max_concurrent_runs": ("2", 2),
    "allowed_models": ("embedded, hermes-4-14b", ["embedded", "hermes-4-14b"]),
    "zero_gpu_duration_s": ("60", 60),
    "max_context_tokens": ("4096", 4096),
    "code_grading": ("false", False),
    "hf_oauth": ("false", False),
    "remote_url": ("http://gpu-box:8000", "http://gpu-box:8000/v1"),
    "remote_model": ("NousResearch/Hermes-4-405B", "NousResearch/Hermes-4-405B"),
    "remote_api_key": (PASSWORD, SecretStr(PASSWORD)),
    "remote_timeout_s": ("30", 30.0),
    "remote_switch": ("template_kwargs", "template_kwargs"),
}


def test_every_field_has_an_env_row():
    assert set(FROM_ENV) == set(Settings.model_fields)


@pytest.mark.parametrize("field", sorted(FROM_ENV))
def test_every_setting_reads_its_env_var(clean_env, field):
    raw, expected = FROM_ENV[field]
    clean_env.setenv(env_name(field), raw)
    assert getattr(load_settings(), field) == expected


def test_defaults(clean_env, tmp_path):
    s = load_settings()
    home = tmp_path / ".local" / "share" / "reasoning-playground"
    assert (s.model, s.quant, s.home, s.db) == ("embedded", "nf4", home, home / "playground.db")
    assert (s.host, s.port, s.public, s.auth) == ("127.0.0.1", 7860, False, None)
    assert (s.max_prompt_chars, s.max_new_tokens, s.cpu_threads, s.queue_size) == (20_000, 8192, 0, 64)
    assert (s.max_concurrent_runs, s.zero_gpu_duration_s, s.log_level) == (1, 120, "INFO")
    assert s.allowed_models == list(PRESETS)


def test_db_default_follows_home_and_agrees_with_the_store(clean_env, tmp_path):
    from playground.store import default_db_path

    clean_env.setenv("PLAYGROUND_HOME", str(tmp_path / "h"))
    assert load_settings().db == default_db_path() == tmp_path / "h" / "playground.db"
    clean_env.setenv("PLAYGROUND_DB", str(tmp_path / "elsewhere.db"))
    assert load_settings().db == default_db_path() == tmp_path / "elsewhere.db"


def test_a_space_is_public_and_listens_on_all_interfaces(clean_env):
    clean_env.setenv("SPACE_ID", "user/playground")
    s = load_settings()
    assert s.public is True and s.host == "0.0.0.0"
    assert not s.model_allowed("/some/local/folder") and s.model_allowed("hermes-4-14b")
    clean_env.setenv("PLAYGROUND_PUBLIC", "0")  # the operator's word beats the Space default
    assert load_settings().public is False


def test_auth_is_a_secret(clean_env):
    clean_env.setenv("PLAYGROUND_AUTH", f"ann:{PASSWORD},bob:pw")
    s = load_settings()
    assert s.auth_pairs == [("ann", PASSWORD), ("bob", "pw")]
    assert PASSWORD not in repr(s) and PASSWORD not in str(s)
    assert not any(PASSWORD in line for line in describe_startup(s))


def test_remote_api_key_is_a_secret(clean_env):
    clean_env.setenv("PLAYGROUND_REMOTE_URL", "http://gpu-box:8000/v1")
    clean_env.setenv("PLAYGROUND_REMOTE_API_KEY", PASSWORD)
    s = load_settings()
    assert s.remote_api_key.get_secret_value() == PASSWORD
    assert PASSWORD not in repr(s) and PASSWORD not in str(s)
    text = "\n".join(describe_startup(s))
    assert "remote endpoint: http://gpu-box:8000/v1" in text and PASSWORD not in text


def test_db_url_is_a_secret_and_replicas_have_names(clean_env):
    clean_env.setenv("PLAYGROUND_DB_URL", f"postgresql+psycopg://app:{PASSWORD}@db:5432/pg")
    s = load_settings()
    assert PASSWORD not in repr(s) and PASSWORD not in str(s)
    text = "\n".join(describe_startup(s))
    assert "database: PostgreSQL postgresql+psycopg://db:5432/pg" in text and PASSWORD not in text
    assert s.replica_id.endswith(":7860") and f"replica {s.replica_id}" in text  # hostname:port by default
    clean_env.setenv("PLAYGROUND_DB_URL", f"mysql://app:{PASSWORD}@db/pg")
    with pytest.raises(SystemExit) as exc_info:
        load_settings()
    msg = str(exc_info.value.code)
    assert msg.startswith("PLAYGROUND_DB_URL='<redacted>' is invalid: an SQLAlchemy URL") and PASSWORD not in msg


def test_flags_override_env(clean_env):
    import argparse

    clean_env.setenv("PLAYGROUND_PORT", "8000")
    clean_env.setenv("PLAYGROUND_MODEL", "qwen3-8b")
    parser = argparse.ArgumentParser()
    add_settings_arguments(parser)
    s = settings_from_args(parser.parse_args(["--port", "9001", "--max-prompt-chars", "77", "--public",
                                              "--allowed-models", "embedded"]))
    assert (s.port, s.max_prompt_chars, s.public, s.allowed_models, s.model) == (9001, 77, True, ["embedded"],
                                                                                 "qwen3-8b")


@pytest.mark.parametrize(("var", "value", "allowed"), [
    ("PLAYGROUND_PORT", "abc", "an integer 1–65535"),
    ("PLAYGROUND_PORT", "0", "an integer 1–65535"),
    ("PLAYGROUND_QUANT", "fp4", "one of nf4, int8, none, auto"),
    ("PLAYGROUND_MAX_CONCURRENT_RUNS", "0", "an integer 1–64"),
    ("PLAYGROUND_MAX_CONCURRENT_RUNS", "65", "an integer 1–64"),
    ("PLAYGROUND_PUBLIC", "maybe", "true or false"),
    ("PLAYGROUND_LOG_LEVEL", "loud", "one of DEBUG, INFO"),
    ("PLAYGROUND_ALLOWED_MODELS", "embedded,gpt-9", "preset keys separated by commas"),
    ("PLAYGROUND_REMOTE_URL", "ftp://gpu-box", "an http(s) base URL"),
    ("PLAYGROUND_REMOTE_TIMEOUT_S", "0", "a number of seconds 1–3600"),
])
def test_invalid_value_is_one_line_naming_variable_value_and_allowed(clean_env, var, value, allowed):
    clean_env.setenv(var, value)
    with pytest.raises(SystemExit) as exc_info:
        load_settings()
    msg = str(exc_info.value.code)
    assert "\n" not in msg
    assert msg.startswith(f"{var}={value!r} is invalid: ") and allowed in msg


def test_invalid_auth_never_shows_the_value(clean_env):
    clean_env.setenv("PLAYGROUND_AUTH", f"ann:{PASSWORD},bob")
    with pytest.raises(SystemExit) as exc_info:
        load_settings()
    msg = str(exc_info.value.code)
    assert msg.startswith("PLAYGROUND_AUTH='<redacted>' is invalid: user:password pairs") and PASSWORD not in msg


def test_a_bad_flag_is_named_as_the_flag(clean_env):
    with pytest.raises(SystemExit) as exc_info:
        load_settings(port="http")
    assert str(exc_info.value.code) == "--port='http' is invalid: an integer 1–65535"


@pytest.mark.parametrize("argv", [["app.py"], ["-m", "playground", "serve"]], ids=["app.py", "serve"])
def test_entry_points_stop_with_one_line_on_a_bad_value(argv):
    env = dict(os.environ, PLAYGROUND_PORT="abc", PLAYGROUND_AUTH=f"ann:{PASSWORD}")
    done = subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert done.stderr.splitlines() == ["PLAYGROUND_PORT='abc' is invalid: an integer 1–65535"]
    assert PASSWORD not in done.stderr + done.stdout


def test_serve_help_lists_every_setting_as_a_flag():
    done = subprocess.run([sys.executable, "-m", "playground", "serve", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0
    for field in Settings.model_fields:
        assert flag_name(field) in done.stdout and env_name(field) in done.stdout
    assert "--no-public" in done.stdout


def test_startup_description_says_what_and_why(clean_env, tmp_path):
    clean_env.setenv("PLAYGROUND_HOME", str(tmp_path))
    lines = describe_startup(load_settings())
    text = "\n".join(lines)
    for what in ("device: ", "compute dtype: ", "quantization: nf4 (the default", "model: preset embedded",
                 f"database: {tmp_path / 'playground.db'} (the default", "public: no"):
        assert what in text
    assert all("(" in line for line in lines[:5])  # each choice comes with its reason


def test_zero_gpu_wrap_is_identity_off_zero_gpu(clean_env):
    fn = lambda: 1
    assert zero_gpu_wrap(fn, 120) is fn


def test_zero_gpu_wrap_uses_spaces_gpu_on_zero_gpu(clean_env):
    calls = []
    fake = types.ModuleType("spaces")
    fake.__spec__ = importlib.machinery.ModuleSpec("spaces", None)
    fake.GPU = lambda duration: (lambda f: calls.append(duration) or ("wrapped", f))
    clean_env.setitem(sys.modules, "spaces", fake)
    clean_env.setenv("SPACES_ZERO_GPU", "true")
    fn = lambda: 1
    assert zero_gpu_wrap(fn, 90) == ("wrapped", fn) and calls == [90]


def test_code_grading_follows_public_unless_set(clean_env):
    assert load_settings().code_grading_on is True
    assert load_settings(public="true").code_grading_on is False
    clean_env.setenv("PLAYGROUND_CODE_GRADING", "true")
    assert load_settings(public="true").code_grading_on is True
