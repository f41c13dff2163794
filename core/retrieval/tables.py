"""Markdown tables rewritten as one line per row that names every cell's column, for a model to read.

A small model reading a price table picks the wrong column or row ("The output price of Claude Haiku is $1": the
input price; measured on every price-table question of the tuning set). Each body row becomes a list item that
repeats the headers: ``| databricks-claude-haiku-4-5 | $1 | $5 |`` under ``| Endpoint | Input | Output |`` becomes
``- Endpoint: databricks-claude-haiku-4-5; Input: $1; Output: $5.``, so every value sits next to what it is. Only
the text the LLM reads is rewritten; the index embeds the documents as written.

The chunker joins a paragraph's lines with spaces (``core.retrieval.documents``), so a table reaches here as
``| A | B | |---|---| | a | b |`` as often as one row per line; both read the same once split at the pipes: the
separator row gives the number of columns, and rows follow each other with one blank "cell" between them.
"""

from __future__ import annotations

import re

PARAGRAPH_BREAK = re.compile(r"(\n\s*\n)")
SEPARATOR_CELL = re.compile(r"\s*:?-{3,}:?\s*")
CELL_GLUE = "; "


def _row_line(headers: list[str], cells: list[str]) -> str:
    """One body row as a list item; a cell under an empty header stands alone, an empty cell is left out."""
    named = [f"{header}: {cell}" if header else cell for header, cell in zip(headers, cells, strict=True) if cell]
    return f"- {CELL_GLUE.join(named).rstrip('.')}." if named else ""


def _table_lines(table: str) -> list[str] | None:
    """The rows of a table written ``| h | h | |---|---| | c | c |`` (newlines or spaces between rows) as lines;
    None when it is not such a table."""
    tokens = table.strip()[1:-1].split("|")
    start = next((i for i, t in enumerate(tokens) if SEPARATOR_CELL.fullmatch(t)), None)
    if start is None:
        return None
    columns = next((n for n, t in enumerate(tokens[start:]) if not SEPARATOR_CELL.fullmatch(t)), len(tokens) - start)
    if start != columns + 1 or tokens[columns].strip():  # the header row, then one blank between it and the rule
        return None
    headers = [t.strip() for t in tokens[:columns]]
    body = tokens[start + columns :]
    rows = [body[i : i + columns + 1] for i in range(0, len(body), columns + 1)]
    if any(len(row) != columns + 1 or row[0].strip() for row in rows):
        return None
    return [line for row in rows if (line := _row_line(headers, [c.strip() for c in row[1:]]))]


def rows_as_lines(text: str) -> str:
    """``text`` with every Markdown table rewritten row by row; the rest (and anything that only looks like a
    table) unchanged. A table is the end of a paragraph from its first pipe on."""
    out = []
    for paragraph in PARAGRAPH_BREAK.split(text):
        at = paragraph.find("|")
        lines = _table_lines(paragraph[at:]) if at >= 0 and paragraph.rstrip().endswith("|") else None
        if lines is None:
            out.append(paragraph)
        else:
            out.append("\n".join([paragraph[:at].rstrip(), *lines]).lstrip("\n"))
    return "".join(out)
