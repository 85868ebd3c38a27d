"""The served model's tokenizer, when it is on this machine: optional, loaded once, never a model.

With it the remote backend renders the server's chat template here (to see whether it opens <think>
itself) and counts tokens for a server that sends no usage report; without it, neither is needed.
The only transformers import of the remote backend (tests/test_layers.py allows it here alone).
"""

from __future__ import annotations

import threading


class LocalTokenizer:
    """The first of some names (a local folder, a cached hub id) that loads with no download, or None."""

    def __init__(self):
        self._lock = threading.Lock()
        self._tried = False
        self._tokenizer = None

    @property
    def loaded(self) -> bool:
        return self._tokenizer is not None

    def get(self, names: list[str]):
        """The tokenizer, loading it on the first call (later calls return the first call's answer)."""
        with self._lock:
            if not self._tried:
                self._tried = True
                for name in names:
                    try:
                        from transformers import AutoTokenizer

                        self._tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=True)
                        break
                    except Exception:  # not on this machine: counts fall back to usage / estimates
                        continue
            return self._tokenizer
