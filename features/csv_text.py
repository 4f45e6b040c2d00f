"""Read a CSV file as RFC 4180 allows, every value as text, and say which records are damaged.

DuckDB's CSV reader is the engine for large metric files, but on the small contract files
(systems, incidents, changes, calendar) its options fight each other: ``null_padding``, which
short hand-edited rows need, cannot read a quoted field with a line break inside, and its
lenient mode, which files with mixed line endings need, silently keeps a record cut off by a
truncated file. Python's ``csv`` module reads all of these as the RFC allows: quoted line
breaks, doubled quotes, CRLF, LF and a mix of both. This module adds what a loader needs on
top: record numbers (1 = the first data row), short rows padded with empty values, and a
reason for each record that cannot be trusted:

- the file ends inside a quoted field (a truncated file): the last record is cut off;
- a record has more non-empty fields than the header has columns (an unquoted comma).

Damaged records are returned with their reason and raw text, never as data.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from features.errors import DataError

CUT_OFF = "the file ends inside a quoted field: the record is cut off (truncated file?)"
RAW_LIMIT = 300  # characters of a damaged record kept as evidence in the quarantine
ROW, PROBLEM, RECORD = "_row", "_problem", "_record"


class CsvTextError(DataError):
    """The file cannot be read as CSV at all (a field too long, a NUL byte)."""


@dataclass(frozen=True)
class CsvText:
    """The records of one CSV file: header, values (padded to the header) and damage."""

    path: Path
    header: list[str]
    rows: list[list[str | None]] = field(repr=False)
    numbers: list[int] = field(repr=False)
    problems: dict[int, tuple[str, str]] = field(default_factory=dict)  # row -> (reason, raw)

    def frame(self) -> pl.DataFrame:
        """``_row``, every header column (text, empty = NULL), ``_problem`` and ``_record``.

        A damaged record keeps only its row number, reason and raw text.
        """
        columns: dict[str, list] = {ROW: self.numbers}
        for i, name in enumerate(self.header):
            columns[name] = [None if n in self.problems else r[i]
                             for n, r in zip(self.numbers, self.rows, strict=True)]
        columns[PROBLEM] = [self.problems.get(n, (None, None))[0] for n in self.numbers]
        columns[RECORD] = [self.problems.get(n, (None, None))[1] for n in self.numbers]
        schema = {ROW: pl.Int64, **dict.fromkeys(self.header, pl.String),
                  PROBLEM: pl.String, RECORD: pl.String}
        return pl.DataFrame(columns, schema=schema)


class _Lines:
    """The file's lines, remembering those the current record was read from."""

    def __init__(self, text: str) -> None:
        self._lines = iter(io.StringIO(text, newline=""))
        self.taken: list[str] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.taken.append(line)
        return line


def _header(names: list[str]) -> list[str]:
    """Names stripped; an empty name becomes ``columnN`` and a repeated one gets ``_2``."""
    out: list[str] = []
    for i, name in enumerate(names, start=1):
        name = name.strip() or f"column{i}"
        base, n = name, 1
        while name in out:
            n += 1
            name = f"{base}_{n}"
        out.append(name)
    return out


def _cut_off(lines: list[str]) -> bool:
    """Whether these lines (one record) end inside a quoted field."""
    try:
        for _ in csv.reader(lines, strict=True):
            pass
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def _raw(lines: list[str]) -> str:
    text = "".join(lines)
    return text if len(text) <= RAW_LIMIT else text[:RAW_LIMIT] + "…"


def read_csv_text(path: Path) -> CsvText:
    """Every record of the UTF-8 CSV file ``path`` (checked for encoding by the caller)."""
    text = path.read_bytes().decode("utf-8-sig")
    lines = _Lines(text)
    reader = csv.reader(lines, strict=False)
    header: list[str] | None = None
    rows: list[list[str | None]] = []
    numbers: list[int] = []
    problems: dict[int, tuple[str, str]] = {}
    last: list[str] = []  # the lines of the last record
    while True:
        lines.taken = []
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise CsvTextError(f"{path.name} line {reader.line_num}: cannot be read as CSV ({exc}); "
                               "an unbalanced quote makes the rest of the file one field") from None
        if not fields:
            continue  # a blank line is no record
        last = lines.taken
        if header is None:
            header = _header(fields)
            continue
        number = len(numbers) + 1
        width = len(header)
        values: list[str | None] = [v if v != "" else None for v in fields]
        if len(values) > width and any(v is not None for v in values[width:]):
            problems[number] = (
                f"{len(values)} fields where the header has {width} (an unquoted comma?)",
                _raw(lines.taken))
        values = (values + [None] * width)[:width]
        rows.append(values)
        numbers.append(number)
    if numbers and _cut_off(last):
        problems[numbers[-1]] = (CUT_OFF, _raw(last))
    return CsvText(path, header or [], rows, numbers, problems)


SCAN_CHUNK = 1 << 24


def needs_exact_reader(path: Path) -> bool:
    """Whether DuckDB's parallel CSV reader could misread ``path``, so this module must read it.

    DuckDB reads a file exactly when it has no quote character (no quoted line break, no
    doubled quote, nothing cut inside quotes) and one kind of line ending. The test is a byte
    scan at memory speed: one pass looks for a quote or a carriage return, and only a file with
    carriage returns gets a second pass that checks each one ends a CRLF pair. The rare file
    that fails is small and hand-made or exported by a tool that quotes, and is read here.
    """
    has_cr = False
    with path.open("rb") as handle:
        while chunk := handle.read(SCAN_CHUNK):
            if b'"' in chunk:
                return True
            has_cr = has_cr or b"\r" in chunk
    if not has_cr:
        return False
    cr = lf = crlf = 0
    last = b""
    with path.open("rb") as handle:
        while chunk := handle.read(SCAN_CHUNK):
            cr += chunk.count(b"\r")
            lf += chunk.count(b"\n")
            crlf += chunk.count(b"\r\n") + (last == b"\r" and chunk[:1] == b"\n")
            last = chunk[-1:]
    return not cr == crlf == lf  # mixed, or a bare CR
