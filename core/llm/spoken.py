"""Markdown to speech: what the avatar says for an answer the chat shows formatted."""

from __future__ import annotations

import re

_FENCED_CODE = re.compile(r"(```|~~~).*?(?:\1|\Z)", re.DOTALL)  # an unclosed fence drops the rest
_INLINE_CODE = re.compile(r"`+([^`]*)`+")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_URL = re.compile(r"<?(?:https?://|www\.)[^\s>)]+>?")
_HTML_TAG = re.compile(r"</?[A-Za-z][^>]*>")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+\u2022]|\d{1,3}[.)])\s+")
_QUOTE = re.compile(r"^\s*(?:>\s?)+")
_RULE_OR_TABLE_SEP = re.compile(r"^\s*(?:[-*_=]\s*){3,}$|^\s*\|?(?:\s*:?-{3,}:?\s*\|)+\s*:?-*:?\s*$")
_EMPHASIS = re.compile(r"(\*\*|__|\*|~~|(?<!\w)_)(?=\S)(.+?)(?<=\S)\1(?!\w)")
_STRAY_MARKS = re.compile(r"[*`#~]+|(?<!\w)_+|_+(?!\w)")
_EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\uFE0F\u200D]")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,!?;:])")
_SENTENCE_END = (".", "!", "?", ":", ";", ",")


def spoken_text(markdown: str) -> str:
    """What the avatar should say for a markdown answer: no code blocks, URLs, links' targets, markup or emojis.

    Headings and list items become sentences; table cells are read as a comma-separated list. Works on partial
    text too (a streamed clause with an unclosed ``**`` or code fence). The chat keeps the formatted original.
    """
    text = _FENCED_CODE.sub(" ", markdown)
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _URL.sub("", text)
    text = _HTML_TAG.sub("", text)
    text = _INLINE_CODE.sub(r"\1", text)
    lines: list[str] = []
    for raw in text.splitlines():
        if _RULE_OR_TABLE_SEP.match(raw):
            continue
        line = _QUOTE.sub("", raw)
        is_block = bool(_HEADING.match(line) or _LIST_ITEM.match(line) or "|" in line)
        line = _LIST_ITEM.sub("", _HEADING.sub("", line))
        line = ", ".join(cell.strip() for cell in line.strip().strip("|").split("|") if cell.strip())
        line = _STRAY_MARKS.sub("", _EMPHASIS.sub(r"\2", line))
        line = _EMOJI.sub("", line).strip()
        if line and is_block and not line.endswith(_SENTENCE_END):
            line += "."
        if line:
            lines.append(line)
    return _SPACE_BEFORE_PUNCT.sub(r"\1", " ".join(" ".join(lines).split()))
