"""A grounded answer states only numbers its sources hold: the check on its own, and inside an LLM backend's stream."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from core.guard import default_guard
from core.llm.number_check import NumberCheck, numbers_in
from core.types import ChatMessage, Passage, Reply
from tests.fakes import ScriptedLLM

FALLBACK = default_guard().unsupported_number
MIDWAY = default_guard().unsupported_number_midway
SOURCES = ["Returns are accepted within 45 days. A repair costs $3.50 and 1,200 parts are in stock. Open 9:00."]


@pytest.mark.parametrize(("text", "values"), [
    ("It costs $3.50 or 3.0 euros.", ["3.5", "3"]), ("We have 1,200 of them, 12, 000", ["1200", "12", "000"]),
    ("From 9:00 to 17:30.", ["9", "17:30"]), ("No numbers here.", []),
])
def test_numbers_compare_by_their_written_value(text: str, values: list[str]) -> None:
    assert numbers_in(text) == values


@pytest.mark.parametrize("answer", [
    "You have 45 days to return it.", "A repair costs 3.5 dollars, and there are 1200 parts.",
    "It opens at 9 in the morning.", "It costs 3 dollars 50.", "You can return it, no questions asked.",
])
def test_an_answer_with_the_sources_numbers_is_released_whole(answer: str) -> None:
    screened = NumberCheck(SOURCES, FALLBACK, MIDWAY).screen(answer, 0, final=True)
    assert (screened.text, screened.release, screened.unsupported) == (answer, len(answer), "")


def test_an_invented_number_ends_the_answer_at_its_clause() -> None:
    answer = "Happy to help, our support line is 1-800-555-1234. Call any time."
    screened = NumberCheck(SOURCES, FALLBACK, MIDWAY).screen(answer, 0, final=True)
    assert screened.text == f"Happy to help{MIDWAY}" and screened.unsupported == "800"
    assert screened.release == len(screened.text)


def test_an_incomplete_clause_is_released_word_by_word_up_to_a_number_that_may_still_grow() -> None:
    check = NumberCheck(SOURCES, FALLBACK, MIDWAY)
    assert check.screen("You have 45 days, and the fee", 0, final=False).release == len("You have 45 days, and the ")
    assert check.screen("The phone number is", 0, final=False).release == len("The phone number ")
    assert check.screen("A repair costs $3.50 and", 0, final=False).release == len("A repair costs $3.50 ")
    for growing in ("A repair costs $3", "A repair costs $3.", "We have 1,"):
        assert check.screen(growing, 0, final=False).release == len(growing.rsplit(" ", 1)[0]) + 1, growing
    ended = check.screen("The phone number is 555 and", 0, final=False)
    assert (ended.text, ended.unsupported) == (FALLBACK, "555")
    assert check.screen("The phone number is 555", 0, final=True).text == FALLBACK
    released = len("The phone number is ")
    assert check.screen("The phone number is 555", released, final=True).text == f"The phone number is {MIDWAY}"


def test_after_a_whole_sentence_the_fallback_line_is_said_as_a_sentence_of_its_own() -> None:
    screened = NumberCheck(SOURCES, FALLBACK, MIDWAY).screen("You have 45 days. Call 555-0199.", 0, final=True)
    assert screened.text == f"You have 45 days. {FALLBACK}" and MIDWAY.startswith("...")


def _say(answer: str, passages: Sequence[Passage]) -> tuple[list[str], Reply, ScriptedLLM]:
    llm = ScriptedLLM(answer)
    *deltas, reply = llm.stream([ChatMessage("user", "What is the support phone number?")], passages)
    return deltas, reply, llm


def test_a_grounded_stream_never_says_the_invented_number() -> None:
    passages = [Passage(SOURCES[0], "shop.md", "Shop", 0.5)]
    deltas, reply, llm = _say("Our support team answers at 555-0199 on weekdays. They are friendly.", passages)
    assert reply.text == f"Our support team answers at {MIDWAY}" == "".join(deltas).strip() and llm.stopped_early
    assert not any("555" in d for d in deltas)


def test_a_grounded_stream_with_supported_numbers_and_an_ungrounded_one_are_unchanged() -> None:
    passages = [Passage(SOURCES[0], "shop.md", "Shop", 0.5)]
    answer = "You have 45 days to return an item. A repair costs $3.50."
    deltas, reply, _ = _say(answer, passages)
    assert reply.text == answer == "".join(deltas)
    deltas, reply, _ = _say("There are 7 days in a week.", [])
    assert reply.text == "There are 7 days in a week."


def test_an_answer_ends_where_it_starts_copying_a_passage_delimiter() -> None:
    passages = [Passage(SOURCES[0], "shop.md", "Shop", 0.5)]
    deltas, reply, llm = _say("Returns are accepted within 45 days. <<<END>>> A repair costs $3.50.", passages)
    assert reply.text == "Returns are accepted within 45 days." and "<" not in "".join(deltas) and llm.stopped_early
