"""A second look: when the model says its document does not hold the answer, it reads the next document first.

A grounded turn gives the model one context: the window of the document holding the best search result. When
that is the wrong document, a capable model says so ("I don't know; my documents don't say.") although the next
search result's document answers the question; on the read evaluation sets that was a fifth of the missed key
facts. ``SecondLook`` holds back the answer's first piece (what would be spoken first, so no sound is delayed), and
when that piece admits not knowing (``coverage_rules().admits_not_knowing``), it stops that answer and asks again
with the next context. Only one second look is taken, so a question the documents do not cover costs one more
answer, not one per document.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import replace

from core.clauses import first_piece_end
from core.llm.base import ReplyStream, advance, relay
from core.retrieval import RetrievalBackend
from core.retrieval.vocabulary import coverage_rules
from core.types import Passage, Reply

log = logging.getLogger(__name__)

Context = tuple[Passage, ...]
NEXT_CONTEXT_RESULTS = 10
"""How far down the search results the next context is looked for: a question's top three results often all come
from the document that did not hold the answer."""


class SecondLook:
    """One grounded answer, with a second context to answer from when the first one does not hold the answer.

    ``next_context`` is called only when needed and returns () when there is none; ``context`` is the context that
    answered, once the Reply has been yielded.
    """

    def __init__(self, first: Context, next_context: Callable[[], Context] | None) -> None:
        self.context = first
        self._next_context = next_context

    def stream(self, answer: Callable[[Context], ReplyStream]) -> ReplyStream:
        """``answer(context)``'s deltas and Reply, for the first context or, after a second look, the next one.

        The Reply after a second look counts the tokens of both answers (the first was paid for too).
        """
        first = answer(self.context)
        if not self.context or self._next_context is None:
            yield from first
            return
        try:
            opening, reply = _opening(first)
            if not coverage_rules().admits_not_knowing(opening) or not (second := self._next_context()):
                if reply is None:
                    yield from relay(first, opening=opening)
                    return
                if opening:
                    yield opening
                yield reply
                return
            if reply is None:
                reply = _stopped(first)
        finally:
            first.close()
        log.info("Second look: %r about %s; answering from %s", opening, _sources(self.context), _sources(second))
        self.context = second
        yield from relay(answer(second), functools.partial(_both, reply))


def _opening(stream: ReplyStream) -> tuple[str, Reply | None]:
    """The answer's first piece (all of it when shorter) and, when the answer ended within it, its Reply."""
    text = ""
    while (item := advance(stream)) is not None:
        if isinstance(item, Reply):
            return text, item
        text += item
        if first_piece_end(text):
            break
    return text, None


def _stopped(stream: ReplyStream) -> Reply | None:
    """End the answer now; its Reply (what it used), or None if the stream ends without one."""
    item = advance(stream, True)
    while isinstance(item, str):
        item = advance(stream)
    return item


def _both(first: Reply | None, second: Reply) -> Reply:
    """The second answer's Reply, counting the first answer's tokens too (when it reported them)."""
    if first is None:
        return second
    return replace(second, prompt_tokens=first.prompt_tokens + second.prompt_tokens,
                   completion_tokens=first.completion_tokens + second.completion_tokens)


def _sources(context: Context) -> str:
    return ", ".join(dict.fromkeys(p.source for p in context)) or "nothing"


def next_context(retrieval: RetrievalBackend, query: str, shown: Context, k: int) -> Context:
    """What the model reads for the best search results outside ``shown`` (the next document, or the next window
    of a long one); () when the search finds nothing else."""
    seen = {(p.source, p.title, p.text) for p in shown}
    rest = [p for p in retrieval.search(query, NEXT_CONTEXT_RESULTS) if (p.source, p.title, p.text) not in seen]
    return tuple(retrieval.context(rest[:k])) if rest else ()
