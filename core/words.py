"""Words for matching a question with text: lower-case words, their stems, and the stopwords that carry no topic.

Used wherever the project compares a question's words with text: the local model's grounding (which sentences of
a passage answer it) and the router (how many content words a question has). Stopwords are in
``data/stopwords.json``.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from core.config import DATA_DIR
from core.errors import ConfigError

STOPWORDS_PATH = DATA_DIR / "stopwords.json"
STEM_CHARS = 5
"""Words are compared by their first five letters: "visemes"/"viseme", "recorded"/"recording" match."""

WORD = re.compile(r"[a-z0-9]+")
"""A word of lower-cased text; AVATAR_SYSTEM_PROMPT and tiny.en are several words."""


def load_stopwords(path: Path = STOPWORDS_PATH) -> frozenset[str]:
    """Read and validate the stopword list: ``{"stopwords": ["a", "about", ...]}``.

    Raises:
        ConfigError: the file is missing or malformed, or an entry is not a lower-case word.
    """
    try:
        stopwords = json.loads(path.read_text(encoding="utf-8"))["stopwords"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: cannot read the stopwords ({type(exc).__name__}: {exc})") from exc
    if not isinstance(stopwords, list) or not all(isinstance(w, str) and WORD.fullmatch(w) for w in stopwords):
        raise ConfigError(f"{path}: 'stopwords' must be a list of lower-case words")
    return frozenset(stopwords)


@lru_cache(maxsize=1)
def stopwords() -> frozenset[str]:
    """The project's stopwords, read once."""
    return load_stopwords()


def content_words(text: str) -> list[str]:
    """The stems of the words of ``text`` that carry meaning (no stopwords), in order, repeats kept."""
    ignored = stopwords()
    return [w[:STEM_CHARS] for w in WORD.findall(text.lower()) if w not in ignored]


def content_stems(text: str) -> set[str]:
    """The distinct stems of the words of ``text`` that carry meaning."""
    return set(content_words(text))
