"""Knowledge-base documents to citable chunks: read Markdown, text, HTML and PDF, split by heading and paragraph.

A chunk keeps the file it came from and the heading it sits under, so an answer can cite both. Chunks hold at most
``MAX_CHUNK_WORDS`` words (all-MiniLM-L6-v2 reads only its first 256 word pieces, about 190 English words, so
longer chunks would be embedded from their beginning alone); a section longer than that is cut at paragraph, then
sentence boundaries, and each piece after the first repeats the last ``OVERLAP_WORDS`` words of the one before.

Reading never raises for a bad file: an unreadable, empty or over-large file yields a ``SkippedFile`` with the
reason, and the caller logs it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

SUFFIXES: frozenset[str] = frozenset({".md", ".markdown", ".txt", ".html", ".htm", ".pdf"})
MAX_CHUNK_WORDS = 180
OVERLAP_WORDS = 25
CHUNKER_VERSION = "headings-v1"  # change when chunking changes: every file is then re-chunked and re-embedded
FALLBACK_ENCODINGS: tuple[str, ...] = ("cp1252", "latin-1")  # tried in order after UTF-8; the last never fails

_MD_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_MD_FENCE = re.compile(r"^\s*(```|~~~)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_HTML_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_HTML_BLOCKS = frozenset({"p", "div", "li", "tr", "br", "section", "article", "blockquote", "pre", "dd", "dt",
                          "table", "ul", "ol", "header", "footer", "main", "title"})
_HTML_SKIPPED = frozenset({"script", "style", "noscript", "template", "svg", "head"})


@dataclass(frozen=True, slots=True)
class Section:
    """Consecutive paragraphs under one heading path (e.g. "Costs › Why pay per token")."""

    title: str
    paragraphs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of a document small enough to embed whole, with its citation."""

    source: str  # path relative to the knowledge-base folder, with forward slashes
    title: str  # heading path inside the document, or the document's name when it has no headings
    text: str

    def embedding_text(self) -> str:
        """What gets embedded: the heading path as context, then the text."""
        return f"{self.title}\n{self.text}"


@dataclass(frozen=True, slots=True)
class SkippedFile:
    """A knowledge-base file that was not indexed, and why."""

    source: str
    reason: str


@dataclass(frozen=True, slots=True)
class ReadDocument:
    """A file read into sections; ``warnings`` says what was odd about it (e.g. a legacy text encoding)."""

    source: str
    sections: tuple[Section, ...]
    warnings: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------------- decoding


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode file bytes as UTF-8 (with or without BOM), falling back to ``FALLBACK_ENCODINGS``.

    Returns:
        The text and the encoding used.
    """
    for encoding in ("utf-8-sig", *FALLBACK_ENCODINGS[:-1]):
        try:
            return data.decode(encoding), encoding.removesuffix("-sig")
        except UnicodeDecodeError:
            continue
    return data.decode(FALLBACK_ENCODINGS[-1]), FALLBACK_ENCODINGS[-1]


def _clean(text: str) -> str:
    return " ".join(text.split())


def _paragraphs(lines: list[str]) -> list[str]:
    """Join non-blank lines into paragraphs at blank lines."""
    paragraphs: list[str] = []
    current: list[str] = []
    for line in [*lines, ""]:
        if line.strip():
            current.append(line.strip())
        elif current:
            paragraphs.append(_clean(" ".join(current)))
            current = []
    return paragraphs


# ---------------------------------------------------------------------------------------------------- formats


def markdown_sections(text: str, default_title: str) -> list[Section]:
    """Split Markdown at ATX headings (``#`` to ``######``); the title is the path of enclosing headings."""
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    lines: list[str] = []
    in_fence = False

    def flush() -> None:
        paragraphs = _paragraphs(lines)
        if paragraphs:
            title = " › ".join(name for _, name in path) or default_title
            sections.append(Section(title, tuple(paragraphs)))
        lines.clear()

    for line in text.splitlines():
        if _MD_FENCE.match(line):
            in_fence = not in_fence
        heading = None if in_fence else _MD_HEADING.match(line)
        if heading is None:
            lines.append(line)
            continue
        flush()
        level = len(heading.group(1))
        path[:] = [(lvl, name) for lvl, name in path if lvl < level]
        path.append((level, heading.group(2).strip()))
    flush()
    return sections


class _HTMLSections(HTMLParser):
    """Collects visible text into sections at ``<h1>``–``<h6>``, with paragraphs at block elements."""

    def __init__(self, default_title: str) -> None:
        super().__init__(convert_charrefs=True)
        self.default_title = default_title
        self.sections: list[Section] = []
        self._path: list[tuple[int, str]] = []
        self._paragraphs: list[str] = []
        self._text: list[str] = []
        self._heading_level = 0
        self._skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HTML_SKIPPED:
            self._skip_depth += 1
        elif tag in _HTML_HEADINGS:
            self._end_paragraph()
            self._end_section()
            self._heading_level = int(tag[1])
        elif tag in _HTML_BLOCKS:
            self._end_paragraph()

    def handle_endtag(self, tag: str) -> None:
        if tag in _HTML_SKIPPED:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in _HTML_HEADINGS and self._heading_level:
            name = _clean("".join(self._text))
            self._text.clear()
            level, self._heading_level = self._heading_level, 0
            if name:
                self._path[:] = [(lvl, n) for lvl, n in self._path if lvl < level]
                self._path.append((level, name))
        elif tag in _HTML_BLOCKS:
            self._end_paragraph()

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self._text.append(data)

    def close(self) -> None:
        super().close()
        self._end_paragraph()
        self._end_section()

    def _end_paragraph(self) -> None:
        if self._heading_level:
            return
        paragraph = _clean("".join(self._text))
        self._text.clear()
        if paragraph:
            self._paragraphs.append(paragraph)

    def _end_section(self) -> None:
        if self._paragraphs:
            title = " › ".join(name for _, name in self._path) or self.default_title
            self.sections.append(Section(title, tuple(self._paragraphs)))
        self._paragraphs = []


def html_sections(text: str, default_title: str) -> list[Section]:
    """Visible text of an HTML page (scripts, styles and ``<head>`` dropped), split into sections at headings."""
    parser = _HTMLSections(default_title)
    parser.feed(text)
    parser.close()
    return parser.sections


def pdf_sections(path: Path) -> list[Section]:
    """One section per PDF page that has extractable text, titled "page N" (PDFs carry no reliable headings)."""
    from pypdf import PdfReader

    reader = PdfReader(path)
    if reader.is_encrypted:
        raise ValueError("the PDF is encrypted")
    sections = []
    for number, page in enumerate(reader.pages, start=1):
        paragraphs = _paragraphs((page.extract_text() or "").splitlines())
        if paragraphs:
            sections.append(Section(f"page {number}", tuple(paragraphs)))
    return sections


# ---------------------------------------------------------------------------------------------------- reading


def read_document(path: Path, source: str, max_bytes: int) -> ReadDocument | SkippedFile:
    """Read one knowledge-base file into sections, or say why it cannot be indexed (never raises for bad content)."""
    suffix = path.suffix.lower()
    try:
        size = path.stat().st_size
    except OSError as exc:
        return SkippedFile(source, f"cannot read it ({exc.strerror or exc})")
    if size > max_bytes:
        return SkippedFile(source, f"{size / 1e6:.1f} MB is over the {max_bytes / 1e6:.1f} MB limit")
    warnings: list[str] = []
    try:
        if suffix == ".pdf":
            sections = pdf_sections(path)
        else:
            text, encoding = decode_text(path.read_bytes())
            if encoding != "utf-8":
                warnings.append(f"not UTF-8; decoded as {encoding}")
            title = path.stem.replace("_", " ").replace("-", " ")
            if suffix in (".html", ".htm"):
                sections = html_sections(text, title)
            elif suffix in (".md", ".markdown"):
                sections = markdown_sections(text, title)
            else:
                paragraphs = _paragraphs(text.splitlines())
                sections = [Section(title, tuple(paragraphs))] if paragraphs else []
    except Exception as exc:  # noqa: BLE001 - any parser failure on a bad file means "skip it", with the reason
        return SkippedFile(source, f"unreadable {suffix[1:].upper()} ({type(exc).__name__}: {exc})")
    if not sections:
        return SkippedFile(source, "no text found")
    return ReadDocument(source, tuple(sections), tuple(warnings))


def list_documents(kb_dir: Path) -> list[tuple[Path, str]]:
    """Every file with a supported suffix under ``kb_dir`` (recursively, hidden files excluded), as (path, source)."""
    found = []
    for path in sorted(kb_dir.rglob("*")):
        relative = path.relative_to(kb_dir)
        if path.is_file() and path.suffix.lower() in SUFFIXES and not any(p.startswith(".") for p in relative.parts):
            found.append((path, relative.as_posix()))
    return found


# ---------------------------------------------------------------------------------------------------- chunking


def _pieces(paragraph: str) -> Iterator[list[str]]:
    """A paragraph as word lists of at most MAX_CHUNK_WORDS: whole, else by sentences, else by words."""
    words = paragraph.split()
    if len(words) <= MAX_CHUNK_WORDS:
        yield words
        return
    for sentence in _SENTENCE_END.split(paragraph):
        sentence_words = sentence.split()
        for start in range(0, len(sentence_words), MAX_CHUNK_WORDS):
            yield sentence_words[start : start + MAX_CHUNK_WORDS]


def chunk_section(source: str, section: Section) -> list[Chunk]:
    """Pack a section's paragraphs into chunks of at most MAX_CHUNK_WORDS, overlapping by OVERLAP_WORDS."""
    chunks: list[Chunk] = []
    current: list[str] = []  # paragraphs (or pieces) of the chunk being filled
    words = 0
    fresh = 0  # words in ``current`` that are not overlap from the previous chunk
    for paragraph in section.paragraphs:
        for piece in _pieces(paragraph):
            if fresh and words + len(piece) > MAX_CHUNK_WORDS:
                chunks.append(Chunk(source, section.title, "\n\n".join(current)))
                tail = " ".join(current).split()[-OVERLAP_WORDS:]
                overlap = tail if len(tail) + len(piece) <= MAX_CHUNK_WORDS else []
                current = ["… " + " ".join(overlap)] if overlap else []
                words, fresh = len(overlap), 0
            current.append(" ".join(piece))
            words += len(piece)
            fresh += len(piece)
    if fresh:
        chunks.append(Chunk(source, section.title, "\n\n".join(current)))
    return chunks


def chunk_document(document: ReadDocument) -> list[Chunk]:
    """All chunks of a document, in reading order."""
    return [chunk for section in document.sections for chunk in chunk_section(document.source, section)]
