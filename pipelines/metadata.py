"""Turn results into the metadata a data scientist reads in the Dagster UI."""

from __future__ import annotations

import dagster as dg
import polars as pl


def markdown_table(frame: pl.DataFrame, max_rows: int = 20, digits: int = 4) -> dg.MetadataValue:
    """A frame as a markdown table (the UI renders it); long frames are cut with a note."""
    shown = frame.head(max_rows)
    header = "| " + " | ".join(shown.columns) + " |"
    rule = "| " + " | ".join("---" for _ in shown.columns) + " |"
    lines = [header, rule]
    for row in shown.iter_rows():
        cells = [_cell(v, digits) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    if frame.height > max_rows:
        lines.append(f"\n_{frame.height - max_rows} more rows not shown_")
    if frame.is_empty():
        lines.append("| " + " | ".join("" for _ in shown.columns) + " |")
    return dg.MetadataValue.md("\n".join(lines))


def _cell(value: object, digits: int) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value).replace("|", "\\|").replace("\n", " ")
