"""CSV that a spreadsheet opens as data: no cell runs as a formula.

Excel, LibreOffice and Google Sheets run a cell whose text begins with ``=``, ``+``, ``-`` or
``@`` as a formula (and a leading tab or carriage return can hide such a start), so a system
name or change description such as ``=HYPERLINK("http://x","click")`` would become a live link
in the CAB's copy of ``risk_scores.csv``. Every text cell that begins with one of those
characters is written with a leading apostrophe (the spreadsheets' own mark for "this is
text", OWASP's advice for CSV injection). Numeric columns are untouched, and so is text that is
a plain number such as ``-0.5``: numbers stay numbers.
"""

from __future__ import annotations

import polars as pl

FORMULA_START = r"^[=+\-@\t\r]"
PLAIN_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"


def neutralise_formulas(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with every text cell a spreadsheet would run as a formula made inert."""
    text = [name for name, dtype in frame.schema.items() if dtype == pl.String]
    return frame.with_columns(
        pl.when(pl.col(c).str.contains(FORMULA_START) & ~pl.col(c).str.contains(PLAIN_NUMBER))
        .then(pl.lit("'") + pl.col(c))
        .otherwise(pl.col(c))
        .alias(c)
        for c in text
    )


def write_safe_csv(frame: pl.DataFrame, path) -> None:
    """``frame.write_csv(path)`` with formulas neutralised."""
    neutralise_formulas(frame).write_csv(path)
