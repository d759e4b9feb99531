"""CSV formula neutralisation: exact round trips, numbers stay numbers, undeclared text is refused."""

from __future__ import annotations

import csv
import io

import pytest

from inference.csvsafe import (
    FORMULA_PREFIXES,
    SafeDictReader,
    SafeDictWriter,
    SafeWriter,
    is_formula_safe,
    neutralise,
    restore,
    restore_row,
)

HOSTILE = [
    "=HYPERLINK(\"http://x\",\"y\")",
    "+1+1",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(A1:A2)",
    "\t=1",
    "\r=1",
    "'=already quoted",
    "'",
    "''",
    "-0.5",
    "",
    "plain",
    "a=b",
    "ümlaut, \"quoted\"\nnewline",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_round_trip_is_exact(text: str) -> None:
    cell = neutralise(text)
    assert restore(cell) == text
    assert not cell.startswith(FORMULA_PREFIXES)


def test_only_formula_starts_and_quotes_change() -> None:
    assert neutralise("plain") == "plain"
    assert neutralise("a=b") == "a=b"
    assert neutralise("=1") == "'=1"
    assert neutralise("'x") == "''x"
    assert restore("plain") == "plain"


def test_dict_writer_round_trip_keeps_numbers_numbers() -> None:
    buf = io.StringIO()
    w = SafeDictWriter(buf, ["path", "patient", "p", "n"], text_columns=("path", "patient"))
    w.writeheader()
    rows = [{"path": t, "patient": "=cmd", "p": -0.5, "n": "-3"} for t in HOSTILE]
    w.writerows(rows)
    raw = list(csv.reader(io.StringIO(buf.getvalue())))
    assert raw[0] == ["path", "patient", "p", "n"]
    for line in raw[1:]:
        for cell in line:
            assert is_formula_safe(cell), cell
        assert line[2] == "-0.5" and float(line[2]) == -0.5  # a number, not "'-0.5"
        assert line[3] == "-3"
    back = list(SafeDictReader(io.StringIO(buf.getvalue()), text_columns=("path", "patient")))
    assert [r["path"] for r in back] == HOSTILE
    assert {r["patient"] for r in back} == {"=cmd"}
    assert {r["p"] for r in back} == {"-0.5"}


@pytest.mark.parametrize("value", ["=1+1", "-1+1", "\t1", "abc", object()])
def test_undeclared_text_in_a_numeric_column_is_refused(value: object) -> None:
    w = SafeDictWriter(io.StringIO(), ["p"], text_columns=())
    with pytest.raises(ValueError, match="not declared as text"):
        w.writerow({"p": value})


@pytest.mark.parametrize("value", [0, 1.5, -0.5, "1e-3", "-inf", "nan", "", None, True])
def test_numbers_and_blanks_pass_numeric_columns(value: object) -> None:
    buf = io.StringIO()
    SafeDictWriter(buf, ["p", "k"], text_columns=["k"]).writerow({"p": value, "k": "x"})
    assert buf.getvalue().strip() in {f"{value},x", ",x", "1,x"}


def test_sequence_writer() -> None:
    buf = io.StringIO()
    w = SafeWriter(buf, ["key", "score"], text_columns=["key"])
    w.writeheader()
    w.writerow(["@evil", 0.25])
    w.writerow(["'q", -1])
    with pytest.raises(ValueError, match="2 columns"):
        w.writerow(["x"])
    lines = list(csv.reader(io.StringIO(buf.getvalue())))
    assert lines == [["key", "score"], ["'@evil", "0.25"], ["''q", "-1"]]
    assert [restore(r[0]) for r in lines[1:]] == ["@evil", "'q"]


def test_bad_declarations() -> None:
    with pytest.raises(ValueError, match="not among"):
        SafeDictWriter(io.StringIO(), ["a"], text_columns=["b"])
    with pytest.raises(ValueError, match="formula"):
        SafeWriter(io.StringIO(), ["=a"], text_columns=["=a"])


def test_restore_row_touches_only_text_columns() -> None:
    assert restore_row({"a": "'=1", "b": "'x"}, {"a"}) == {"a": "=1", "b": "'x"}
