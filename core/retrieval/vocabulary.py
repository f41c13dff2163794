"""Which words of a question the knowledge base never uses, and the note that tells the model so.

Retrieval always finds a nearest document, and a model handed it answers from it even when the question is about
something no document mentions ("Is there Wi-Fi on the ferries?" → "No Wi-Fi on the ferries."; "Can the avatar speak
French?" → "Yes, the avatar can speak French."). A question's *topic words* are its words that are neither stopwords
(``core.words``), nor general words that say what is asked rather than what it is about ("happens", "cheapest",
"turned"), nor numbers; a ``Vocabulary`` of every document (and the system prompt) tells which of them no text uses.
A grounded question with such words gets ``CoverageRules.note`` after it, and the model then says that it does not
know; a paraphrase whose words the documents do not use can still be answered, because the model reads the note
against the material. A model that cannot follow a note (``LLMBackend.follows_notes``) is not asked: the assistant
gives ``CoverageRules.reply`` instead. A model that can judge is first asked ``CoverageRules.check`` (does the
material still answer, though it never mentions these words?), and a question it leans to "Yes" on goes without the
note: the words were incidental ("my scarf" in a question about lost property). An earlier attempt that let the
model judge coverage itself, without being told which words are missing, caught 1 of 9 held-out unanswerable
questions.

Words are compared by form, not by the five-letter stems of ``core.words``: "room" matches "rooms" and "turned"
matches "turn" (one is the other plus an ending), but "pi" does not match "pipeline" (short words take at most a
one-letter ending). Words are also compared by their dictionary forms (LemmInflect's English lemmas: "biggest" →
"big", "sold" → "sell", "broke" → "break"), which endings alone cannot tell. The note and the general words are in
``data/coverage.json``.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from lemminflect import getAllLemmas  # a pure-Python English dictionary, its data inside the wheel

from core.config import DATA_DIR
from core.datafiles import read_json
from core.errors import ConfigError
from core.words import WORD, stopwords

COVERAGE_PATH = DATA_DIR / "coverage.json"
WORDS_FIELD = "{words}"
QUESTION_WORD = re.compile(r"[a-z0-9]+(?:[-'’][a-z0-9]+)*", re.IGNORECASE)
"""A word as the user wrote it, hyphens and apostrophes kept inside it ("Wi-Fi", "what's"), for quoting it back."""
STEM_MIN_CHARS = 4
"""A word at least this long matches every word that starts with it ("move" → "movements"); a shorter one only
itself plus one letter ("car" → "cars", not "card" → "cardigan"...)."""
SHORT_ENDING_CHARS = 1
MIN_WORD_CHARS = 2
"""Single letters ("I", the "s" of "what's") are no topic and no stem."""
FORMS_CACHE_WORDS = 1 << 14
"""Distinct words whose dictionary forms are kept: a knowledge base of a few hundred pages uses fewer, so building
its vocabulary and checking each question's words looks each word up once."""
FIRST_SENTENCE = re.compile(r".*?(?:[.!?](?=\s)|$)", re.DOTALL)
"""A reply's first sentence: up to the first stop followed by a space, or the whole reply."""
NOTE_FORM = re.compile(r"\([^\n]*\)")
"""A note after a question is one parenthesised line (``core.llm.base.with_notes``), so the router and the small
model can tell it from what the user asked."""
NAMING_PARTS_OF_SPEECH = frozenset({"NOUN", "PROPN"})
"""A topic is a thing: a word only counts as one when the dictionary says it can be a noun. Adverbs, verbs and
adjectives say how or what is asked ("roughly", "often", "expect", "shut", "noisy"): measured on the held-out sets,
they made most of the false alarms, while the topics the documents do not cover were nouns ("kiln", "vouchers")."""
GERUND_ENDING = "ing"
"""A verb form that also names an activity ("parking", "firing"): the dictionary lists only its verb lemma."""
SENTENCE_START = re.compile(r"(?:^|[.!?]\s+)$")


@dataclass(frozen=True, slots=True)
class CoverageRules:
    """The note for a question with words no document uses, and the words that are never topic words."""

    note: str
    """Placed after the question; ``{words}`` becomes the missing words, quoted."""
    reply: str
    """The answer instead, for a model that cannot follow the note; ``{words}`` becomes the words as written."""
    not_knowing: re.Pattern[str]
    """Matches a reply's first sentence that says the documents do not hold the answer."""
    general_words: frozenset[str]
    check: str = ""
    """Asked instead of the note, of a model that can judge, with ``{words}`` as in the note: does the material
    still answer?"""
    still_answers_margin: float = 0.0
    """How far the model must lean to "Yes" on ``check`` (logits) for the question to go without the note."""
    paraphrase_score: float = 1.0
    """A question whose best passage is at least this similar (cosine) gets no note: its missing words are another
    way of saying what the passage says ("money back" for "refund"), not a topic the documents lack."""
    question_words: frozenset[str] = frozenset()
    """Words that make a message ask something wherever they are ("what", "how", "tell", "pls")."""
    statement_openers: frozenset[str] = frozenset()
    """First words of a statement about the user ("I", "my", "we"), unless it also asks."""

    def is_statement(self, message: str) -> bool:
        """Whether ``message`` tells rather than asks ("I'm so frustrated with my internet provider."): it opens as a
        statement, with no question mark and no question word. There is nothing in it to answer from documents."""
        words = [w.lower().replace("'", "").replace("’", "") for w in QUESTION_WORD.findall(message)]
        return ("?" not in message and bool(words) and words[0] in self.statement_openers
                and not any(w in self.question_words for w in words))

    def admits_not_knowing(self, reply: str) -> bool:
        """Whether ``reply`` opens by saying that the documents do not hold the answer (it then cites none)."""
        first = FIRST_SENTENCE.match(reply.strip())
        return bool(first and self.not_knowing.search(first.group()))


def load_coverage_rules(path: Path = COVERAGE_PATH) -> CoverageRules:
    """Read and validate ``data/coverage.json``.

    Raises:
        ConfigError: the file is missing or malformed, the note or the reply lacks ``{words}``, ``not_knowing`` is
            not a regular expression, or a general word is not one lower-case word.
    """
    data = read_json(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be an object with 'note', 'reply' and 'general_words'")
    for field in ("note", "reply", "check"):
        if not isinstance(data.get(field), str) or WORDS_FIELD not in data[field]:
            raise ConfigError(f"{path}: '{field}' must be text holding {WORDS_FIELD}")
    for field in ("note", "check"):
        if not NOTE_FORM.fullmatch(data[field]):
            raise ConfigError(f"{path}: '{field}' must be one line in parentheses, as every note after a question is")
    try:
        not_knowing = re.compile(data["not_knowing"], re.IGNORECASE)
    except (KeyError, TypeError, re.error) as exc:
        raise ConfigError(f"{path}: 'not_knowing' must be a regular expression ({exc})") from exc
    general = data.get("general_words")
    if not isinstance(general, list) or not all(isinstance(w, str) and WORD.fullmatch(w) for w in general):
        raise ConfigError(f"{path}: 'general_words' must be a list of lower-case words")
    paraphrase = data.get("paraphrase_score")
    if not isinstance(paraphrase, (int, float)) or isinstance(paraphrase, bool) or not 0 < paraphrase <= 1:
        raise ConfigError(f"{path}: 'paraphrase_score' must be a similarity in (0, 1]")
    margin = data.get("still_answers_margin")
    if not isinstance(margin, (int, float)) or isinstance(margin, bool):
        raise ConfigError(f"{path}: 'still_answers_margin' must be a number (a difference of logits)")
    asking = {}
    for field in ("question_words", "statement_openers"):
        words = data.get(field)
        if not isinstance(words, list) or not words or not all(isinstance(w, str) and WORD.fullmatch(w) for w in words):
            raise ConfigError(f"{path}: '{field}' must be a non-empty list of lower-case words")
        asking[field] = frozenset(words)
    return CoverageRules(data["note"], data["reply"], not_knowing, frozenset(general), data["check"], float(margin),
                         float(paraphrase), **asking)


@lru_cache(maxsize=1)
def coverage_rules() -> CoverageRules:
    """The project's coverage rules, read once."""
    return load_coverage_rules()


class WordForms:
    """A set of lower-case words that also answers "is this a form of one of them?" (see the module docstring)."""

    def __init__(self, words: Iterable[str]) -> None:
        self._words = frozenset(words)
        self._sorted = sorted(self._words)

    def __len__(self) -> int:
        return len(self._words)

    def has_form(self, word: str) -> bool:
        """Whether ``word``, a word it starts with, or a word that starts with it is in the set."""
        if word in self._words:
            return True
        shortest = STEM_MIN_CHARS if len(word) > STEM_MIN_CHARS else len(word) - SHORT_ENDING_CHARS
        if any(word[:end] in self._words for end in range(max(shortest, MIN_WORD_CHARS), len(word))):
            return True
        at = bisect.bisect_left(self._sorted, word)
        longest = None if len(word) >= STEM_MIN_CHARS else len(word) + SHORT_ENDING_CHARS
        while at < len(self._sorted) and self._sorted[at].startswith(word):
            if longest is None or len(self._sorted[at]) <= longest:
                return True
            at += 1
        return False


class Vocabulary:
    """The words of a knowledge base's documents, for telling which topic words of a question none of them uses."""

    def __init__(self, texts: Iterable[str], rules: CoverageRules | None = None) -> None:
        self.rules = rules or coverage_rules()
        self._known = _with_forms(w for text in texts for w in WORD.findall(text.lower()))
        self._general = WordForms(self.rules.general_words)

    def __len__(self) -> int:
        return len(self._known)

    def unmentioned(self, question: str, also_known: Sequence[str] = ()) -> list[str]:
        """The question's topic words, as written, that no document uses (nor ``also_known``, e.g. the system
        prompt), in order and without repeats; [] for a vocabulary without documents, which can tell nothing."""
        if not len(self._known):
            return []
        extra = _with_forms(w for text in also_known for w in WORD.findall(text.lower()))
        found: list[str] = []
        for match in QUESTION_WORD.finditer(question):
            name = _written_as_name(match.group(), SENTENCE_START.search(question[: match.start()]) is not None)
            parts = [p for p in WORD.findall(match.group().lower()) if self._is_topic(p, name)]
            unknown = [p for p in parts if not any(self._known.has_form(f) or extra.has_form(f) for f in forms(p))]
            if unknown and match.group() not in found:
                found.append(match.group())
        return found

    def note(self, words: Sequence[str]) -> str:
        """The note placed after a question whose topic ``words`` no document uses; "" for none."""
        return self._about(self.rules.note, words)

    def check(self, words: Sequence[str]) -> str:
        """The yes-or-no question put after the question instead of the note, to a model that can judge."""
        return self._about(self.rules.check, words)

    @staticmethod
    def _about(template: str, words: Sequence[str]) -> str:
        return template.replace(WORDS_FIELD, _listed([f'"{w}"' for w in words])) if words else ""

    def reply(self, words: Sequence[str]) -> str:
        """What the assistant says instead of answering a question about ``words``; "" for none."""
        return self.rules.reply.replace(WORDS_FIELD, _listed(words)) if words else ""

    def _is_topic(self, word: str, name: bool = False) -> bool:
        """Whether a lower-case word can name what a question is about (``name``: it was written as a name)."""
        if len(word) < MIN_WORD_CHARS or any(c.isdigit() for c in word) or word in stopwords():
            return False
        if not (name or can_name_a_thing(word)):
            return False
        return not any(self._general.has_form(f) for f in forms(word))


@lru_cache(maxsize=FORMS_CACHE_WORDS)
def forms(word: str) -> tuple[str, ...]:
    """A lower-case word and its English dictionary forms ("biggest" → ("biggest", "big")), the word first."""
    lemmas = {lemma.lower() for found in getAllLemmas(word).values() for lemma in found}
    return (word, *sorted(lemmas - {word}))


@lru_cache(maxsize=FORMS_CACHE_WORDS)
def can_name_a_thing(word: str) -> bool:
    """Whether a lower-case word can be a noun: the dictionary lists a noun reading, or does not know the word (a
    name, a brand, a coinage: "alexa", "wi"), or it is a verb's -ing form ("parking")."""
    readings = getAllLemmas(word)
    return not readings or bool(NAMING_PARTS_OF_SPEECH & set(readings)) or word.endswith(GERUND_ENDING)


def _written_as_name(written: str, starts_sentence: bool) -> bool:
    """Whether a word as written has a capital that is not just the sentence's first letter ("Google", "iPhone")."""
    rest = written[1:] if starts_sentence else written
    return any(c.isupper() for c in rest)


def _with_forms(words: Iterable[str]) -> WordForms:
    """The words and their dictionary forms ("sold" also stands for "sell")."""
    return WordForms(f for word in set(words) for f in forms(word))


def _listed(words: Sequence[str]) -> str:
    """'a', 'a or b', 'a, b or c'."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"
