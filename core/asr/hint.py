"""The words a speech recogniser should expect: the knowledge base's headings, as Whisper's initial prompt.

Whisper decodes each recording after a prompt of earlier text, and spells what it hears the way that text does.
Handed nothing, tiny.en hears a demo's own terms as common words: espeak's "How does the lip sync work?" came
back as "How does the loop sync work?" on one machine, and the assistant then rightly said its documents never
mention a "loop". The headings of the knowledge base name what people ask about ("Voice and lip-sync", "Piper
joe-medium", "Databricks Apps"), so the hint lists them: document titles first, then their sections, level by
level, until a word budget is spent (a long prompt costs decoding time and Whisper reads only its last part).
Each heading ends with a question mark, as the user's own words will: written as a comma list, the same headings
made Whisper write questions broken up by commas ("Which endpoint is the cheapest, Foreign Put tokens?"), and
Festival's speech came out worse than with no hint (word errors on the tuning questions, bench/asr/hint.py).
"""

from __future__ import annotations

from collections.abc import Iterable

HEADING_SEPARATOR = " › "
"""How ``core.retrieval.documents`` joins a section's heading path ("Costs › Why pay per token")."""
HEADING_END = "?"
HEADING_PUNCTUATION = "?.!:;,"
"""Dropped from a heading's end before ``HEADING_END`` ("What does it cost?" is not written "...cost??")."""


def speech_hint(titles: Iterable[str], max_words: int) -> str:
    """A prompt of the distinct heading names in ``titles`` (heading paths), shallowest first, within
    ``max_words`` words; "" when there are none or the budget is 0."""
    by_depth: dict[int, list[str]] = {}
    seen: set[str] = set()
    for title in titles:
        for depth, name in enumerate(title.split(HEADING_SEPARATOR)):
            name = " ".join(name.split()).rstrip(HEADING_PUNCTUATION)
            if name and name.lower() not in seen:
                seen.add(name.lower())
                by_depth.setdefault(depth, []).append(name)
    chosen: list[str] = []
    words = 0
    for depth in sorted(by_depth):
        for name in by_depth[depth]:
            size = len(name.split())
            if words + size > max_words:
                continue  # a shorter heading further on may still fit
            chosen.append(name)
            words += size
    return " ".join(f"{name}{HEADING_END}" for name in chosen)
