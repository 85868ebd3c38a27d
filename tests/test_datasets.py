"""Standard problem-set formats as batch rows: GSM8K, MATH / MATH-500, a column mapping, Parquet;
each with good and bad rows (a bad row says what to fix)."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from playground.errors import InvalidInput
from playground.evaluation.datasets import (
    ColumnMapping,
    batch_fields,
    detect_format,
    final_answer,
    gsm8k_final,
    is_parquet,
    mapping_from_text,
    parquet_rows,
)

GSM8K = {"question": "Tom has 3 boxes of 412 pens. How many pens?",
         "answer": "Each box has 412 pens.\n3 * 412 = <<3*412=1236>>1236\n#### 1,236"}
MATH_500 = {"problem": "Simplify $\\frac{6}{8}$.", "answer": "\\frac{3}{4}", "subject": "Algebra", "level": 1,
            "unique_id": "test/algebra/1.json", "solution": "Divide by 2: $\\boxed{\\frac{3}{4}}$."}
MATH = {"problem": "What is $2^{10}$?", "level": "Level 1", "type": "Algebra",
        "solution": "We have $2^{10} = \\boxed{1024}$, and \\boxed{\\frac{a}{b}} was a note"}


def test_gsm8k_rows_take_the_number_after_the_four_hashes():
    assert detect_format(GSM8K) == "gsm8k"
    assert batch_fields(GSM8K) == {"prompt": GSM8K["question"], "expected": "1236", "grader": "numeric"}
    assert gsm8k_final("work\n#### -3.5 ") == "-3.5" and gsm8k_final("no final line") is None


def test_a_gsm8k_row_without_its_final_line_says_so():
    with pytest.raises(InvalidInput, match="#### N"):
        batch_fields({"question": "q", "answer": "just 12"}, "gsm8k")
    with pytest.raises(InvalidInput, match="'question' is missing"):
        batch_fields({"answer": "#### 2"}, "gsm8k")


def test_math_500_rows_use_their_answer_and_math_rows_their_last_box():
    assert batch_fields(MATH_500) == {"prompt": MATH_500["problem"], "expected": "\\frac{3}{4}", "grader": "math"}
    # MATH has no answer column: the solution's last \boxed{}, braces matched
    assert batch_fields(MATH)["expected"] == "\\frac{a}{b}"
    assert batch_fields({**MATH, "solution": "So it is $\\boxed{\\sqrt{2}}$."})["expected"] == "\\sqrt{2}"


def test_a_math_row_with_no_answer_anywhere_says_where_to_put_it():
    with pytest.raises(InvalidInput, match="boxed"):
        batch_fields({"problem": "p", "solution": "no box here"})
    with pytest.raises(InvalidInput, match="'problem' is missing"):
        batch_fields({"problem": "  ", "answer": "1"}, "math")


def test_rows_in_the_playgrounds_own_fields_pass_through():
    row = {"prompt": "What is 2+2?", "expected": "4", "grader": "numeric"}
    assert detect_format(row) == "rows" and batch_fields(row) is row
    # our own "question"/"answer" aliases stay rows unless the answer is a GSM8K solution
    assert detect_format({"question": "q", "answer": "4"}) == "rows"


def test_a_column_mapping_reads_any_table():
    m = ColumnMapping.from_dict({"prompt": "input", "expected": "target", "system": "sys", "grader": "math"})
    item = {"input": "Compute 1/4 + 1/4.", "target": "Adding: $\\boxed{\\frac{1}{2}}$", "sys": "Be brief.", "id": 7}
    assert batch_fields(item, "mapped", m) == {"prompt": "Compute 1/4 + 1/4.", "expected": "\\frac{1}{2}",
                                               "grader": "math", "system": "Be brief."}
    only_prompt = ColumnMapping.from_dict({"prompt": "input"})
    assert batch_fields({"input": "hi"}, "mapped", only_prompt) == {"prompt": "hi"}
    assert batch_fields({"input": "q", "target": 42}, "mapped", m)["expected"] == "42"
    with pytest.raises(InvalidInput, match="columns: id, other"):
        batch_fields({"other": "x", "id": 1}, "mapped", m)
    with pytest.raises(InvalidInput, match="needs a column mapping"):
        batch_fields(item, "mapped")


@pytest.mark.parametrize("bad, words", [({}, "prompt column"), ({"prompt": "q", "answer": "a"}, "has no answer"),
                                        ({"prompt": "q", "expected": 3}, "column name")])
def test_a_bad_mapping_is_refused_with_a_fix(bad, words):
    with pytest.raises(InvalidInput, match=words):
        ColumnMapping.from_dict(bad)


def test_final_answers_of_worked_solutions():
    assert final_answer("steps\n#### 12") == "12"
    assert final_answer("so \\boxed{x+1}") == "x+1"
    assert final_answer("  plain  ") == "plain"


def parquet_bytes(rows: list[dict]) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    return buf.getvalue()


def test_parquet_rows_are_read_a_batch_at_a_time_and_cut_one_past_the_limit():
    rows = [{"question": f"q{i}", "answer": f"w\n#### {i}", "extra": None if i % 2 else i} for i in range(600)]
    data = parquet_bytes(rows)
    assert is_parquet(data) and is_parquet(b"", "x.PARQUET") and not is_parquet(b'{"prompt": 1}', "x.jsonl")
    got = list(parquet_rows(data, max_rows=500))
    assert len(got) == 501 and got[0] == (1, {"question": "q0", "answer": "w\n#### 0", "extra": 0})
    assert "extra" not in got[1][1]  # a null cell is an absent field
    assert [batch_fields(r)["expected"] for _, r in got[:3]] == ["0", "1", "2"]


def test_a_broken_parquet_file_is_refused_as_a_whole():
    data = parquet_bytes([{"prompt": "x"}])
    with pytest.raises(InvalidInput, match="not a readable Parquet file"):
        list(parquet_rows(data[:-20], max_rows=10))


def test_a_mapping_typed_in_the_panel():
    assert mapping_from_text(" ") is None
    assert mapping_from_text("prompt=input, Expected = target, grader=math") == ColumnMapping("input", "target",
                                                                                             None, "math")
    with pytest.raises(InvalidInput, match="field=column"):
        mapping_from_text("prompt input")


# --- through the batch import: good rows import, bad rows are listed with the fix ----------------
def test_a_gsm8k_file_imports_its_good_rows_and_lists_the_bad():
    from playground.app.batch_files import parse_batch_file

    lines = [json.dumps(GSM8K), json.dumps({"question": "No final line?", "answer": "It is 4."}),
             json.dumps({"question": "Q2", "answer": "2 + 2\n#### 4"})]
    rows, errors = parse_batch_file("\n".join(lines).encode(), "test.jsonl", fmt="gsm8k")
    assert [(r.line, r.expected, r.grader) for r in rows] == [
        (1, "1236", {"kind": "numeric", "tolerance": 1e-6}), (3, "4", {"kind": "numeric", "tolerance": 1e-6})]
    assert [e.line for e in errors] == [2] and "#### N" in errors[0].message
    # auto recognises the same file row by row, the bad row then being one of our own (question -> prompt)
    auto_rows, _ = parse_batch_file("\n".join(lines).encode(), "test.jsonl")
    assert [r.expected for r in auto_rows][::2] == ["1236", "4"]


def test_a_math_csv_imports_with_the_math_grader():
    from playground.app.batch_files import parse_batch_file

    data = ('problem,solution,level\n"Halve 1.","So $\\boxed{\\frac{1}{2}}$.",Level 1\n'
            '"No box.","Just words.",Level 2\n')
    rows, errors = parse_batch_file(data.encode(), "math.csv", fmt="math")
    assert [(r.prompt, r.expected, r.grader) for r in rows] == [("Halve 1.", "\\frac{1}{2}", {"kind": "math"})]
    assert len(errors) == 1 and "\\boxed{}" in errors[0].message and errors[0].line == 2


def test_a_math_500_row_whose_answer_the_math_grader_cannot_read_is_listed():
    from playground.app.batch_files import parse_batch_file

    data = "\n".join(json.dumps(r) for r in [MATH_500, {**MATH_500, "answer": "???"}])
    rows, errors = parse_batch_file(data, "math500.jsonl")
    assert len(rows) == 1 and rows[0].grader == {"kind": "math"}
    assert errors[0].line == 2 and "no value the math grader can read" in errors[0].message


def test_a_parquet_table_imports_through_a_column_mapping():
    from playground.app.batch_files import MAX_BATCH_ROWS, parse_batch_file

    table = [{"input": f"What is {i} + {i}?", "target": f"work\n#### {2 * i}", "id": i} for i in range(3)]
    table.append({"input": None, "target": "#### 1", "id": 99})
    mapping = mapping_from_text("prompt=input, expected=target, grader=numeric")
    rows, errors = parse_batch_file(parquet_bytes(table), "", mapping=mapping)  # the page sends no file name
    assert [(r.prompt, r.expected) for r in rows] == [(f"What is {i} + {i}?", str(2 * i)) for i in range(3)]
    assert len(errors) == 1 and errors[0].line == 4 and "'input' is missing" in errors[0].message
    many = parquet_bytes([{"input": f"q{i}"} for i in range(MAX_BATCH_ROWS + 3)])
    rows, errors = parse_batch_file(many, "big.parquet", mapping=ColumnMapping("input"))
    assert len(rows) == MAX_BATCH_ROWS and "MAX_BATCH_ROWS" in errors[-1].message
    with pytest.raises(InvalidInput, match="format='bogus'"):
        parse_batch_file(many, "big.parquet", fmt="bogus")
