"""How run data is laid out in its columns: packed token arrays, compact per-token strings, JSON.

Token ids and times are packed binary (little-endian int32 and float64), not JSON: opening a
1,000-cell session reads 4,000 arrays of 1,000 numbers, and parsing one JSON array of floats
took 424 µs with the standard library and 31 µs with orjson (measured, 2-core CPU), while a
packed one is a memcpy that TokenArray reads lazily. Float64 bytes round-trip every timing
exactly, in 8 bytes a token instead of ~20. Kinds and forced flags are one character a token.
The small JSON columns (settings, metrics, records) use orjson when present (it comes with
gradio and plotly; ~3x faster than the standard library on a run's record), whose output is
ordinary JSON; the standard library takes over where orjson is missing or refuses a value.
"""

from __future__ import annotations

import json
import sys
from array import array
from collections.abc import Sequence

from playground.errors import InvalidInput
from playground.lanes import CHAR_KINDS, FORCED_CHARS, KIND_CHARS

try:
    import orjson
except ImportError:  # pragma: no cover - orjson comes with gradio; the fallback is only slower
    orjson = None


def dumps(value) -> str:
    if orjson is not None:
        try:
            return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:
            pass  # e.g. an int over 64 bits: the standard library copes
    return json.dumps(value, separators=(",", ":"))


def loads(text: str | bytes):
    return orjson.loads(text) if orjson is not None else json.loads(text)


# array's "i" and "d" are 4-byte int and 8-byte IEEE double on every platform CPython supports.
assert array("i").itemsize == 4 and array("d").itemsize == 8
_SWAP = sys.byteorder == "big"  # the file is little-endian wherever it was written


class TokenArray(Sequence):
    """An immutable sequence of numbers kept packed (int32 ids or float64 times).

    Read from the database it costs a copy of the bytes; a Python number is made only for the
    element read. Unpacking 4,000 arrays into tuples would make 4 million objects (~130 MB for
    a 1,000-cell session) whether or not anything looks at them. Compares equal to a list or
    tuple of the same numbers; tolist() gives a plain list (for JSON, plotly)."""

    __slots__ = ("_packed",)

    def __init__(self, packed: array):
        self._packed = packed

    @classmethod
    def from_bytes(cls, code: str, blob: bytes) -> TokenArray:
        packed = array(code)
        packed.frombytes(blob)
        if _SWAP:
            packed.byteswap()
        return cls(packed)

    @property
    def typecode(self) -> str:
        return self._packed.typecode

    def __len__(self) -> int:
        return len(self._packed)

    def __getitem__(self, index):
        item = self._packed[index]
        return TokenArray(item) if isinstance(index, slice) else item

    def __iter__(self):
        return iter(self._packed)

    def __eq__(self, other) -> bool:
        if isinstance(other, TokenArray):
            return self._packed == other._packed
        if isinstance(other, list | tuple):
            return len(other) == len(self._packed) and self._packed.tolist() == list(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._packed.tobytes())

    def __repr__(self) -> str:
        return f"TokenArray({self._packed.tolist()!r})"

    def tolist(self) -> list:
        return self._packed.tolist()

    def to_bytes(self) -> bytes:
        """The column's layout: little-endian."""
        if not _SWAP:
            return self._packed.tobytes()
        swapped = array(self._packed.typecode, self._packed)
        swapped.byteswap()
        return swapped.tobytes()


def pack_ids(token_ids: Sequence[int]) -> bytes:
    return _pack("i", token_ids, "token_ids must be whole numbers below 2**31, one per token.")


def pack_times(token_times: Sequence[float]) -> bytes:
    return _pack("d", token_times, "token_times must be numbers (seconds since the run started), one per token.")


def _pack(code: str, values, message: str) -> bytes:
    if isinstance(values, TokenArray) and values.typecode == code:
        return values.to_bytes()
    try:
        return TokenArray(array(code, values)).to_bytes()
    except (TypeError, OverflowError):
        raise InvalidInput(message) from None


def unpack_ids(blob: bytes) -> TokenArray:
    return TokenArray.from_bytes("i", blob)


def unpack_times(blob: bytes) -> TokenArray:
    return TokenArray.from_bytes("d", blob)


def encode_kinds(kinds: str | Sequence[str]) -> str:
    """"reasoning"/"answer" per token (what the engine records), or the compact "r"/"a" string."""
    if isinstance(kinds, str):
        if kinds.strip("ra"):  # anything left after stripping both ends holds a foreign character
            raise InvalidInput('token_kinds as a string may only hold "r" (reasoning) and "a" (answer).')
        return kinds
    try:
        return "".join(_KIND_CHAR[k] for k in kinds)
    except (KeyError, TypeError):
        raise InvalidInput('token_kinds must be "reasoning" or "answer" for each token.') from None


_KIND_CHAR = {**KIND_CHARS, **{c: c for c in KIND_CHARS.values()}}


def encode_forced(forced: str | Sequence[bool]) -> str:
    """One bool per token (True where the thinking budget forced the token), or a "0"/"1" string."""
    if isinstance(forced, str):
        if forced.strip("01"):  # as in encode_kinds
            raise InvalidInput('forced as a string may only hold "0" and "1".')
        return forced
    return "".join(FORCED_CHARS[bool(f)] for f in forced)


def decode_kinds(compact: str) -> list[str]:
    return [CHAR_KINDS.get(c, "answer") for c in compact]


def decode_forced(compact: str) -> list[bool]:
    return [c == FORCED_CHARS[True] for c in compact]
