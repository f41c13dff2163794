"""Markdown tables as one line per row, each value next to its column's name, in what the LLM reads."""

from __future__ import annotations

from core.retrieval import format_context
from core.retrieval.tables import rows_as_lines
from core.types import Passage

PRICES = """Prices in euros:

| Ticket | Single | Return |
|---|---:|---:|
| Adult | €9.50 | €17.00 |
| Child (5–15) | €4.75 | |

Children under 5 travel free."""


def test_each_row_becomes_a_line_naming_its_columns_and_the_text_around_stays():
    assert rows_as_lines(PRICES).splitlines() == [
        "Prices in euros:",
        "",
        "- Ticket: Adult; Single: €9.50; Return: €17.00.",
        "- Ticket: Child (5–15); Single: €4.75.",
        "",
        "Children under 5 travel free.",
    ]


def test_a_cell_under_an_empty_header_stands_alone():
    table = "| | Mon–Fri | Sat |\n| --- | :---: | --- |\n| First boat | 07:10 | 08:30 |"
    assert rows_as_lines(table) == "- First boat; Mon–Fri: 07:10; Sat: 08:30."


def test_pipes_without_a_separator_row_are_not_a_table():
    text = "Type | to pipe\n| not a table |\n| still not |"
    assert rows_as_lines(text) == text


def test_the_llm_reads_the_rows_with_their_column_names():
    context = format_context([Passage(PRICES, "fares.md", "Fares", 0.6)])
    assert "- Ticket: Adult; Single: €9.50; Return: €17.00." in context
    assert "|---|" not in context


def test_a_table_the_chunker_joined_into_one_line_reads_the_same():
    joined = ("Prices in euros: | Ticket | Single | Return | |---|---:|---:| | Adult | €9.50 | €17.00 | "
              "| Child | €4.75 | |")
    assert rows_as_lines(joined).splitlines() == [
        "Prices in euros:",
        "- Ticket: Adult; Single: €9.50; Return: €17.00.",
        "- Ticket: Child; Single: €4.75.",
    ]


def test_a_row_with_too_few_cells_leaves_the_table_as_written():
    broken = "| A | B | |---|---| | a | b | | c |"
    assert rows_as_lines(broken) == broken
