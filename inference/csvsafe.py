"""CSV cells that a spreadsheet cannot run: formula neutralisation per OWASP's CSV-injection guidance.

A spreadsheet treats a cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return as
a formula. Text that came from a file (a DICOM PatientID, a series description, a path) may begin with
one, so every *text* cell the project writes is neutralised: it gets a leading single quote, which a
spreadsheet shows as text and does not evaluate. A cell that already begins with a single quote gets
one more, so that :func:`restore` (drop one leading quote) gives back exactly what was written, for
every string.

Numeric columns are the project's own numbers (probabilities, sizes, counts): they stay numbers, so
``-0.5`` is written as ``-0.5`` and a spreadsheet still sums it. Writers say which columns are text;
every other column must hold a number (``int``/``float``, a string that ``float()`` reads, or an empty
cell) and anything else there is refused with ``ValueError``: a column forgotten in ``text_columns``
fails loudly instead of letting a formula through. Readers undo the neutralisation on the same text
columns (:class:`SafeDictReader`, :func:`restore_row`).

Text columns are neutralised whatever they hold, numeric-looking text included (a text cell ``-0.5``
is written ``'-0.5``): a text column is text, and the reader restores it exactly.
"""

from __future__ import annotations

import csv
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from typing import IO, Any

__all__ = [
    "FORMULA_PREFIXES",
    "neutralise",
    "restore",
    "restore_row",
    "is_formula_safe",
    "SafeDictWriter",
    "SafeWriter",
    "SafeDictReader",
]

#: The first characters that make a spreadsheet evaluate a cell (OWASP, CSV injection).
FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
_QUOTE = "'"


def neutralise(text: str) -> str:
    """``text`` as a cell no spreadsheet evaluates: a leading ``'`` before a formula character or a quote."""
    if text.startswith(FORMULA_PREFIXES) or text.startswith(_QUOTE):
        return _QUOTE + text
    return text


def restore(cell: str) -> str:
    """Undo :func:`neutralise` exactly: ``restore(neutralise(s)) == s`` for every string ``s``."""
    return cell[1:] if cell.startswith(_QUOTE) else cell


def is_formula_safe(cell: str) -> bool:
    """True when a spreadsheet would not read ``cell`` as a formula (a number, or text not starting with one)."""
    return not cell.startswith(FORMULA_PREFIXES) or _is_number(cell)


def restore_row(row: Mapping[str, str], text_columns: Collection[str]) -> dict[str, str]:
    """A row read back: the text columns restored, the others as read."""
    return {k: restore(v) if k in text_columns and isinstance(v, str) else v for k, v in row.items()}


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _numeric_cell(column: str, value: object) -> object:
    """A numeric column's value as written; ValueError when it is not a number."""
    if value is None or value == "":
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str) and value == value.strip() and _is_number(value):  # "\t1" is no number here
        return value
    raise ValueError(f"column {column!r} is not declared as text but holds {value!r}, which is not a number")


def _check_header(fieldnames: Sequence[str]) -> None:
    for name in fieldnames:
        if not is_formula_safe(name) or name.startswith(_QUOTE):
            raise ValueError(f"column name {name!r} would be read as a formula")


def _cell(column: str, value: object, text: bool) -> object:
    if not text:
        return _numeric_cell(column, value)
    if value is None:
        return ""
    return neutralise(value if isinstance(value, str) else str(value))


class SafeDictWriter:
    """``csv.DictWriter`` whose text columns are neutralised and whose other columns must be numbers."""

    def __init__(self, f: IO[str], fieldnames: Sequence[str], text_columns: Collection[str], **kwargs: Any) -> None:
        unknown = set(text_columns) - set(fieldnames)
        if unknown:
            raise ValueError(f"text columns not among the field names: {sorted(unknown)}")
        _check_header(fieldnames)
        self.fieldnames = list(fieldnames)
        self.text_columns = frozenset(text_columns)
        self._writer = csv.DictWriter(f, fieldnames=self.fieldnames, **kwargs)

    def writeheader(self) -> None:
        self._writer.writeheader()

    def writerow(self, row: Mapping[str, object]) -> None:
        self._writer.writerow({k: _cell(k, v, k in self.text_columns) for k, v in row.items()})

    def writerows(self, rows: Iterable[Mapping[str, object]]) -> None:
        for row in rows:
            self.writerow(row)


class SafeWriter:
    """``csv.writer`` for rows as sequences: the header names the columns, ``text_columns`` the text ones."""

    def __init__(self, f: IO[str], header: Sequence[str], text_columns: Collection[str], **kwargs: Any) -> None:
        unknown = set(text_columns) - set(header)
        if unknown:
            raise ValueError(f"text columns not among the header: {sorted(unknown)}")
        _check_header(header)
        self.header = list(header)
        self._text = [name in text_columns for name in self.header]
        self._writer = csv.writer(f, **kwargs)

    def writeheader(self) -> None:
        self._writer.writerow(self.header)

    def writerow(self, row: Sequence[object]) -> None:
        if len(row) != len(self.header):
            raise ValueError(f"a row of {len(row)} cells for {len(self.header)} columns")
        self._writer.writerow([_cell(n, v, t) for n, v, t in zip(self.header, row, self._text, strict=True)])

    def writerows(self, rows: Iterable[Sequence[object]]) -> None:
        for row in rows:
            self.writerow(row)


class SafeDictReader:
    """``csv.DictReader`` that restores the text columns a :class:`SafeDictWriter` neutralised."""

    def __init__(self, f: Iterable[str], text_columns: Collection[str], **kwargs: Any) -> None:
        self._reader = csv.DictReader(f, **kwargs)
        self.text_columns = frozenset(text_columns)

    @property
    def fieldnames(self) -> Sequence[str] | None:
        return self._reader.fieldnames

    def __iter__(self) -> Iterator[dict[str, str]]:
        for row in self._reader:
            yield restore_row(row, self.text_columns)
