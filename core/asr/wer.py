"""Word error rate: word-level edit distance between a reference and a hypothesis, over normalised words."""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")


def normalize_words(text: str) -> list[str]:
    """Lower-case words with punctuation dropped; apostrophes inside words are removed ("don't" → "dont")."""
    return [w.replace("'", "") for w in _WORD.findall(text.lower().replace("’", "'"))]


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """Return ``(substitutions + deletions + insertions, number of reference words)``."""
    ref, hyp = normalize_words(reference), normalize_words(hypothesis)
    previous = list(range(len(hyp) + 1))
    for i, ref_word in enumerate(ref, start=1):
        current = [i]
        for j, hyp_word in enumerate(hyp, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word)))
        previous = current
    return previous[-1], len(ref)


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word error rate of one hypothesis (0 = perfect; can exceed 1 with many insertions)."""
    errors, n_words = word_errors(reference, hypothesis)
    if n_words == 0:
        raise ValueError("the reference has no words")
    return errors / n_words
