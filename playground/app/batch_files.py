"""Batch files: prompts from a JSONL, CSV or Parquet file, each row checked on its own, appended as
cells; dataset rows (GSM8K, MATH, any table through a column mapping) are read by
playground.evaluation.datasets first. No gradio.

Good rows import even when others are bad; every bad row comes back as a RowError saying what to
fix. Running the imported cells is playground.app.batch_jobs.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from playground.app.service import validate_prompt
from playground.errors import InvalidInput
from playground.evaluation.datasets import ColumnMapping, batch_fields, check_format, is_parquet, parquet_rows
from playground.evaluation.graders import check_grader

# Named limits of an imported file, each checked once in parse_batch_file.
MAX_BATCH_BYTES = 2 * 1024 * 1024
MAX_BATCH_ROWS = 500
FIELDS = ("prompt", "system", "expected", "grader", "tolerance")
ALIASES = {"system_prompt": "system", "answer": "expected", "question": "prompt"}


@dataclass(frozen=True)
class BatchRow:
    line: int  # 1-based line (JSONL) or data row (CSV) in the file
    prompt: str
    system: str | None
    expected: str | None
    grader: dict | None


@dataclass(frozen=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"row {self.line}: {self.message}"


def parse_batch_file(data: bytes | str, filename: str = "", max_prompt_chars: int = 20_000, *,
                     fmt: str = "auto", mapping: ColumnMapping | None = None
                     ) -> tuple[list[BatchRow], list[RowError]]:
    """Rows of a JSONL, CSV or Parquet file (by extension, else by its first bytes), each checked on
    its own: good rows come back even when others are bad, and every bad row says what to fix.
    `fmt` and `mapping` read dataset rows (GSM8K, MATH, a column mapping: evaluation.datasets).
    Raises InvalidInput only for a file that cannot be read at all."""
    if len(data) > MAX_BATCH_BYTES:
        raise InvalidInput(f"The file has {len(data):,} bytes, over the limit of {MAX_BATCH_BYTES:,} "
                           "(MAX_BATCH_BYTES): split it.")
    fmt = "mapped" if mapping is not None and fmt == "auto" else check_format(fmt)
    raw = parquet_rows(data, MAX_BATCH_ROWS) if is_parquet(data, filename) else _text_rows(data, filename)
    rows: list[BatchRow] = []
    errors: list[RowError] = []
    for line, item in raw:
        if len(rows) + len(errors) >= MAX_BATCH_ROWS:
            errors.append(RowError(line, f"over the limit of {MAX_BATCH_ROWS} rows (MAX_BATCH_ROWS): "
                                         "this row and the rest were not imported; split the file."))
            break
        if isinstance(item, str):  # a parse error already worded
            errors.append(RowError(line, item))
            continue
        try:
            rows.append(_row(line, batch_fields(item, fmt, mapping), max_prompt_chars))
        except InvalidInput as exc:
            errors.append(RowError(line, str(exc)))
    if not rows and not errors:
        raise InvalidInput("The file has no rows: put one prompt per line (JSONL) or per row under a "
                           "'prompt' header (CSV).")
    return rows, errors


def _text_rows(data: bytes | str, filename: str) -> Iterator[tuple[int, dict | str]]:
    try:
        text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise InvalidInput("The file is not UTF-8 text: save it as UTF-8 JSONL or CSV, or as Parquet.") from None
    name = filename.lower()
    is_csv = name.endswith(".csv") or (not name.endswith((".jsonl", ".json", ".ndjson"))
                                       and not text.lstrip().startswith("{"))
    return _csv_rows(text) if is_csv else _jsonl_rows(text)


def _jsonl_rows(text: str) -> Iterator[tuple[int, dict | str]]:
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            yield i, f"not valid JSON ({exc.msg} at column {exc.colno}): one JSON object per line."
            continue
        yield i, item if isinstance(item, dict) else f"a {type(item).__name__}, not an object like " \
                                                      '{"prompt": "...", "expected": "..."}.'


def _csv_rows(text: str) -> Iterator[tuple[int, dict | str]]:
    reader = csv.DictReader(io.StringIO(text))
    try:
        for i, row in enumerate(reader, 1):
            if None in row:
                yield i, "more cells than the header has columns: quote values that contain commas."
                continue
            yield i, {k.strip().lower(): v for k, v in row.items() if k is not None and v not in (None, "")}
    except csv.Error as exc:
        yield reader.line_num, f"unreadable CSV ({exc})."


def _row(line: int, item: dict, max_prompt_chars: int) -> BatchRow:
    item = {ALIASES.get(k, k): v for k, v in item.items()}
    unknown = set(item) - set(FIELDS)
    if unknown:
        raise InvalidInput(f"unknown field(s) {', '.join(sorted(unknown))}: use {', '.join(FIELDS)}.")
    prompt = item.get("prompt")
    if not isinstance(prompt, str):
        raise InvalidInput("'prompt' is missing or not text.")
    validate_prompt(prompt, max_prompt_chars)
    system = item.get("system")
    if system is not None and not isinstance(system, str):
        raise InvalidInput("'system' must be text.")
    expected = item.get("expected")
    if isinstance(expected, int | float) and not isinstance(expected, bool):
        expected = str(expected)  # JSONL authors write {"expected": 42}
    if expected is not None and not isinstance(expected, str):
        raise InvalidInput("'expected' must be text or a number.")
    grader = item.get("grader")
    if isinstance(grader, str) and grader.strip().startswith("{"):
        try:
            grader = json.loads(grader)  # a CSV cell holding a JSON spec
        except json.JSONDecodeError:
            raise InvalidInput("'grader' looks like JSON but is not valid JSON.") from None
    if "tolerance" in item:
        try:
            tol = float(item["tolerance"])
        except (TypeError, ValueError):
            raise InvalidInput(f"tolerance={item['tolerance']!r} is not a number.") from None
        grader = {**({"kind": grader} if isinstance(grader, str) else grader or {"kind": "numeric"}),
                  "tolerance": tol}
    spec = check_grader(grader, expected or None)
    return BatchRow(line, prompt, system or None, expected or None, spec)


def import_rows(store, owner: str, session_id: str, rows: Sequence[BatchRow], settings: dict | None = None) -> list:
    """Append the rows as prompt cells of the session, in file order (with lane `settings` if given)."""
    return [store.add_cell(owner, session_id, prompt=r.prompt, system_prompt=r.system, expected=r.expected,
                           grader=r.grader, settings=settings) for r in rows]
