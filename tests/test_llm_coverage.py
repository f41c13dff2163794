"""Telling questions the knowledge base never covers: words no document uses, and the model's yes/no share."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.llm.coverage import Vocabulary, load_coverage_question, yes_share
from core.types import Passage

FARES = Passage("A single ticket to Tarrin costs 9.50 euros; children under 12 travel for half price.",
                "fares.md", "Single tickets", 0.7)


def test_unknown_words_are_the_question_words_no_document_uses() -> None:
    vocabulary = Vocabulary()
    assert vocabulary.unknown_words("Is there Wi-Fi on board?") == []  # nothing added yet: nothing is unknown
    vocabulary.add_documents([[FARES]])
    assert vocabulary.known
    assert vocabulary.unknown_words("Is a ticket half price for my child?") == []  # "child" is the stem of "children"
    assert vocabulary.unknown_words("Is there Wi-Fi on board?") == ["board", "fi", "wi"]
    vocabulary.add(["Wi-Fi is free on board."])
    assert vocabulary.unknown_words("Is there Wi-Fi on board?") == []


def test_the_title_of_a_document_counts_as_its_words() -> None:
    vocabulary = Vocabulary()
    vocabulary.add_documents([[FARES]])
    assert vocabulary.unknown_words("What single fares are there?") == ["fares"]  # "fares" is only in the file name
    assert vocabulary.unknown_words("Which single tickets exist?") == ["exist"]


def test_yes_share_is_a_softmax_over_the_two_answers() -> None:
    assert yes_share(2.0, 2.0) == pytest.approx(0.5)
    assert yes_share(5.0, 0.0) == pytest.approx(0.9933, abs=1e-4)
    assert yes_share(0.0, 5.0) == pytest.approx(1 - 0.9933, abs=1e-4)


def test_the_coverage_question_is_validated(tmp_path: Path) -> None:
    asked = load_coverage_question()
    assert asked.ask.endswith("?") or asked.ask.endswith(".")
    assert "don't know" in asked.reply  # what the scoring rules count as admitting it
    assert not asked.checks("Who made you?") and asked.checks("Who made the avatar?")
    good = {"ask": "Is it there?", "yes": "Yes", "no": "No", "min_yes": 0.5, "reply": "I don't know.",
            "about_you": ["you"]}
    for broken, message in (({"ask": " "}, "must be non-empty text"), ({"reply": None}, "must be non-empty text"),
                            ({"no": "Yes"}, "two different words"), ({"min_yes": 1.5}, "between 0 and 1"),
                            ({"yes": None}, "two different words"), ({"min_yes": "high"}, "cannot read"),
                            ({"about_you": ["You!"]}, "lower-case words")):
        path = tmp_path / "coverage.json"
        path.write_text(json.dumps({**good, **broken}), encoding="utf-8")
        with pytest.raises(ConfigError, match=message):
            load_coverage_question(path)
