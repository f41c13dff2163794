"""Markdown tables as labelled rows: each row becomes one sentence that names every cell by its column.

A table read line by line loses which column a cell is in ("| Senior | €7.00 | €12.00 |" says nothing of
which price is the return fare), and a table paragraph joined into one line is worse still. Small models misread
such rows; a row written as "Ticket: Senior; Single: €7.00; Return: €12.00." keeps each value next to its label,
for the embedding and for the model alike. Only pipe tables with a header separator row (``|---|:---:|``) are
rewritten; anything else is left as it is.
"""

from __future__ import annotations

import re

_SEPARATOR_CELL = re.compile(r"^:?-{3,}:?$")
_SENTENCE_END = (".", "!", "?")


def _cells(line: str) -> list[str]:
    """The cells of a pipe-table line, outer pipes optional, escaped pipes kept inside their cell."""
    inner = line.strip().removeprefix("|")
    inner = inner[:-1] if inner.endswith("|") and not inner.endswith("\\|") else inner
    return [" ".join(cell.replace("\\|", "|").split()) for cell in re.split(r"(?<!\\)\|", inner)]


def _is_separator(line: str) -> bool:
    cells = _cells(line)
    return "|" in line and bool(cells) and all(_SEPARATOR_CELL.match(cell) for cell in cells)


def row_sentence(header: list[str], row: list[str]) -> str:
    """One row as "Header: cell; Header: cell." (an empty cell is left out, a cell without a header stands alone)."""
    parts = [f"{label}: {cell}" if label else cell for label, cell in zip(header, row, strict=False) if cell]
    sentence = "; ".join(parts)
    return sentence if sentence.endswith(_SENTENCE_END) else sentence + "."


def labelled_rows(lines: list[str]) -> list[str]:
    """``lines`` with every pipe table replaced by its body rows as sentences, each between blank lines (so that
    each row is a paragraph of its own); other lines unchanged."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        if "|" in lines[i] and i + 1 < len(lines) and _is_separator(lines[i + 1]):
            header = _cells(lines[i])
            i += 2
            while i < len(lines) and "|" in lines[i] and lines[i].strip():
                out += ["", row_sentence(header, _cells(lines[i])), ""]
                i += 1
            continue
        out.append(lines[i])
        i += 1
    return out
