"""Markdown tables rewritten as one line per row that names every cell's column, for a model to read.

A small model reading a price table picks the wrong column or row ("The output price of Claude Haiku is $1": the
input price; measured on every price-table question of the tuning set). Each body row becomes a list item that
repeats the headers: ``| databricks-claude-haiku-4-5 | $1 | $5 |`` under ``| Endpoint | Input | Output |`` becomes
``- Endpoint: databricks-claude-haiku-4-5; Input: $1; Output: $5.``, so every value sits next to what it is. Only
the text the LLM reads is rewritten; the index embeds the documents as written.
"""

from __future__ import annotations

import re

TABLE_ROW = re.compile(r"^\s*\|.*\|\s*$")
SEPARATOR_CELL = re.compile(r":?-{3,}:?")
CELL_GLUE = "; "


def _cells(row: str) -> list[str]:
    return [cell.strip() for cell in row.strip().strip("|").split("|")]


def _is_separator(line: str) -> bool:
    """``|---|---:|``: the row under a table's header."""
    return bool(TABLE_ROW.match(line)) and all(SEPARATOR_CELL.fullmatch(cell) for cell in _cells(line))


def _row_line(headers: list[str], cells: list[str]) -> str:
    """One body row as a list item; a cell under an empty header stands alone, an empty cell is left out."""
    named = [f"{header}: {cell}" if header else cell for header, cell in zip(headers, cells, strict=False) if cell]
    return f"- {CELL_GLUE.join(named).rstrip('.')}." if named else ""


def rows_as_lines(text: str) -> str:
    """``text`` with every Markdown table (a header row, a separator row, body rows) rewritten row by row; the
    rest, including anything that only looks like a table, unchanged."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        is_table = i + 1 < len(lines) and TABLE_ROW.match(lines[i]) and _is_separator(lines[i + 1])
        if not is_table:
            out.append(lines[i])
            i += 1
            continue
        headers = _cells(lines[i])
        i += 2
        while i < len(lines) and TABLE_ROW.match(lines[i]):
            if line := _row_line(headers, _cells(lines[i])):
                out.append(line)
            i += 1
    return "\n".join(out)
