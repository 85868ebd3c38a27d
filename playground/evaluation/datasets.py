"""Standard problem-set files as batch rows: GSM8K, MATH / MATH-500, and any table with a column
mapping, from JSONL, CSV or Parquet. Pure functions; the batch import (parse_batch_file) reads the
file, hands each row here, and lists a bad row with its fix while the good ones import.

Formats (`fmt`), each turned into the playground's own row fields (prompt, expected, grader):
- "gsm8k": `question`, and `answer` a worked solution whose last line is `#### N` → N, numeric grader;
- "math": `problem`, and `answer` (MATH-500) or a `solution` holding a `\\boxed{}` → math grader;
- "mapped": a ColumnMapping names the prompt / expected / system columns and the grader kind; a
  worked-solution expected cell gives its final answer (after `####`, else its last `\\boxed{}`);
- "rows": the playground's own fields, as they are;
- "auto": per row, gsm8k when `answer` ends in `#### N`, math when there is a `problem`, else rows.
Other columns of a dataset (level, type, unique_id, …) are ignored in gsm8k, math and mapped.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass

from playground.errors import InvalidInput
from playground.evaluation.answers import boxed_values

DATASET_FORMATS = ("auto", "gsm8k", "math", "mapped", "rows")
PARQUET_MAGIC = b"PAR1"
PARQUET_BATCH_ROWS = 256  # rows read at a time: a file far past the row limit is never read whole
_GSM8K_FINAL = re.compile(r"####\s*([^\n]+?)\s*$")


@dataclass(frozen=True)
class ColumnMapping:
    """Which column holds what, for a table in no standard format. Only `prompt` is required."""

    prompt: str
    expected: str | None = None
    system: str | None = None
    grader: str | None = None  # a grader kind for every row; default: exact when there is an expected answer

    @classmethod
    def from_dict(cls, d: dict) -> ColumnMapping:
        if not isinstance(d, dict) or not isinstance(d.get("prompt"), str) or not d["prompt"].strip():
            raise InvalidInput("A column mapping needs the name of the prompt column, e.g. {\"prompt\": \"question\"}.")
        unknown = set(d) - {"prompt", "expected", "system", "grader"}
        if unknown:
            raise InvalidInput(f"A column mapping has no {', '.join(sorted(unknown))}: it maps prompt, expected, "
                               "system (column names) and grader (a kind).")
        for key in ("expected", "system", "grader"):
            if d.get(key) is not None and not isinstance(d[key], str):
                raise InvalidInput(f"mapping {key}={d[key]!r}: a column name (grader: a grader kind).")
        return cls(d["prompt"].strip(), *((d.get(k) or "").strip() or None for k in ("expected", "system", "grader")))


def mapping_from_text(text: str) -> ColumnMapping | None:
    """A mapping typed as "prompt=input, expected=target, system=sys, grader=math"; None when empty."""
    if not (text or "").strip():
        return None
    d = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise InvalidInput(f"{part.strip()!r} in the column mapping: write field=column, e.g. prompt=question.")
        d[key.strip().lower()] = value.strip()
    return ColumnMapping.from_dict(d)


def check_format(fmt: str) -> str:
    if fmt not in DATASET_FORMATS:
        raise InvalidInput(f"format={fmt!r}: use one of {', '.join(DATASET_FORMATS)}.")
    return fmt


def gsm8k_final(answer: str) -> str | None:
    """The N of a GSM8K answer's last line `#### N`, thousands separators dropped."""
    m = _GSM8K_FINAL.search(answer.strip()) if isinstance(answer, str) else None
    return m.group(1).replace(",", "").strip() if m else None


def final_answer(text: str) -> str:
    """A worked solution's final answer: after `####`, else its last \\boxed{}, else the text."""
    found = gsm8k_final(text)
    if found is not None:
        return found
    boxes = boxed_values(text)
    return boxes[-1].strip() if boxes else text.strip()


def detect_format(item: dict) -> str:
    if "prompt" not in item and isinstance(item.get("question"), str) and gsm8k_final(item.get("answer")) is not None:
        return "gsm8k"
    if "prompt" not in item and "problem" in item:
        return "math"
    return "rows"


def _text(item: dict, column: str, fix: str) -> str:
    value = item.get(column)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"'{column}' is missing or empty: {fix}")
    return value


def batch_fields(item: dict, fmt: str = "auto", mapping: ColumnMapping | None = None) -> dict:
    """The playground's row fields of one dataset row; InvalidInput naming the fix."""
    fmt = detect_format(item) if fmt == "auto" else check_format(fmt)
    if fmt == "rows":
        return item
    if fmt == "gsm8k":
        prompt = _text(item, "question", "GSM8K rows hold the problem in 'question'.")
        final = gsm8k_final(_text(item, "answer", "GSM8K rows hold the worked answer in 'answer'."))
        if final is None:
            raise InvalidInput("'answer' does not end with '#### N': a GSM8K answer's last line is the final number "
                               "after ####.")
        return {"prompt": prompt, "expected": final, "grader": "numeric"}
    if fmt == "math":
        prompt = _text(item, "problem", "MATH rows hold the problem in 'problem'.")
        answer = item.get("answer")
        if isinstance(answer, str | int | float) and not isinstance(answer, bool) and str(answer).strip():
            return {"prompt": prompt, "expected": str(answer).strip(), "grader": "math"}
        boxes = boxed_values(item.get("solution") or "") if isinstance(item.get("solution"), str) else []
        if not boxes:
            raise InvalidInput("no 'answer', and no \\boxed{} in 'solution': a MATH row needs its final answer in "
                               "one of them.")
        return {"prompt": prompt, "expected": boxes[-1].strip(), "grader": "math"}
    if mapping is None:
        raise InvalidInput("The mapped format needs a column mapping: which column is the prompt (and the "
                           "expected answer, the system prompt).")
    return _mapped(item, mapping)


def _mapped(item: dict, mapping: ColumnMapping) -> dict:
    out = {"prompt": _text(item, mapping.prompt, f"map the prompt to a column every row has ({mapping.prompt!r} "
                                                 f"is not one here; columns: {', '.join(sorted(item))}).")}
    if mapping.expected:
        out["expected"] = final_answer(_text(item, mapping.expected, "fill it in, or map no expected column."))
        out["grader"] = mapping.grader or "exact"
    if mapping.system and isinstance(item.get(mapping.system), str) and item[mapping.system].strip():
        out["system"] = item[mapping.system]
    return out


def is_parquet(data: bytes | str, filename: str = "") -> bool:
    return filename.lower().endswith(".parquet") or (isinstance(data, bytes) and data[:4] == PARQUET_MAGIC)


def parquet_rows(data: bytes, max_rows: int) -> Iterator[tuple[int, dict]]:
    """(row number, row) of a Parquet file's first max_rows + 1 rows (one past the limit, so the
    caller can say the file was cut); InvalidInput when it is not a readable Parquet file."""
    import pyarrow.parquet as pq
    from pyarrow import ArrowException

    try:
        batches = pq.ParquetFile(io.BytesIO(data)).iter_batches(batch_size=PARQUET_BATCH_ROWS)
        n = 0
        for batch in batches:
            for row in batch.to_pylist():
                n += 1
                yield n, {str(k): v for k, v in row.items() if v is not None}
                if n > max_rows:
                    return
    except (ArrowException, OSError) as exc:
        raise InvalidInput(f"The file is not a readable Parquet file ({str(exc)[:200]}): export it again, or "
                           "save it as JSONL or CSV.") from None
