"""The second look: an answer that says its document lacks the answer is stopped and asked again with the next one."""

from __future__ import annotations

from dataclasses import replace

import pytest

from core.action_requests import action_requests
from core.config import LLMConfig
from core.llm.base import GeneratingLLM, StreamGen, Usage
from core.second_look import SecondLook
from core.types import ChatMessage, Passage, Reply, ReplyDelta, TurnComplete
from tests.fakes import fake_pipeline

DONT_KNOW = "I don't know; my documents don't say. Ask me about the ferries instead."
TIMETABLE = Passage("The first ferry leaves Saltmere at 7:40 every morning.", "timetable.md", "Departures", 0.41)
PRICES = Passage("A day return costs 12 pounds for an adult.", "prices.md", "Fares", 0.52)
QUESTION = [ChatMessage("system", "Be brief."), ChatMessage("user", "When does the first ferry leave?")]


class DocumentReader(GeneratingLLM):
    """Answers from the timetable when its prompt quotes it, else says it does not know; records every answer
    begun and whether it was told to stop before its last word."""

    name = "reader"

    def __init__(self) -> None:
        super().__init__(LLMConfig(max_sentences=3))
        self.answers: list[str] = []
        self.stopped: list[bool] = []
        self.questions: list[str] = []

    @property
    def model(self) -> str:
        return "reader"

    def _stream(self, messages: list[ChatMessage], temperature: float) -> StreamGen:
        answer = "It leaves at 7:40 every morning." if "7:40" in messages[0].content else DONT_KNOW
        self.answers.append(answer)
        self.questions.append(messages[-1].content)
        self.stopped.append(False)
        words = answer.split(" ")
        for i, word in enumerate(words):
            if (yield word + (" " if i < len(words) - 1 else "")):
                self.stopped[-1] = i < len(words) - 1
                break
        return Usage(100, len(words))


def streamed(look: SecondLook, llm: GeneratingLLM) -> tuple[str, Reply]:
    *deltas, reply = look.stream(lambda context: llm.stream(QUESTION, context))
    return "".join(deltas), reply


def test_an_answer_that_lacks_its_document_is_stopped_and_given_from_the_next():
    llm = DocumentReader()
    asked: list[bool] = []
    look = SecondLook((PRICES,), lambda: asked.append(True) or (TIMETABLE,))
    text, reply = streamed(look, llm)
    assert text == reply.text == "It leaves at 7:40 every morning."  # nothing of the first answer is said
    assert asked == [True] and look.context == (TIMETABLE,)
    assert llm.answers == [DONT_KNOW, "It leaves at 7:40 every morning."]
    assert llm.stopped[0], "the first answer must stop once it admits not knowing, not run to its end"
    assert reply.prompt_tokens == 200  # both answers were paid for
    assert reply.completion_tokens == len(DONT_KNOW.split()) + len(reply.text.split())


def test_an_answer_from_its_document_is_streamed_as_it_is_and_nothing_else_is_searched():
    llm = DocumentReader()
    look = SecondLook((TIMETABLE,), lambda: pytest.fail("no next context is needed"))
    text, reply = streamed(look, llm)
    assert text == reply.text == "It leaves at 7:40 every morning."
    assert look.context == (TIMETABLE,) and llm.answers == [reply.text] and reply.prompt_tokens == 100


@pytest.mark.parametrize("next_context", [None, lambda: ()], ids=["not allowed", "nothing else found"])
def test_without_a_next_context_not_knowing_is_the_answer(next_context):
    llm = DocumentReader()
    look = SecondLook((PRICES,), next_context)
    text, reply = streamed(look, llm)
    assert text.strip() == reply.text == DONT_KNOW
    assert look.context == (PRICES,) and llm.stopped == [False]


def test_a_turn_answers_from_the_next_document_and_cites_it(app_config):
    config = replace(app_config, retrieval=replace(app_config.retrieval, top_k=1), response_cache=False)
    llm = DocumentReader()
    pipeline = fake_pipeline(config, llm=llm, passages=[PRICES, TIMETABLE])
    events = list(pipeline.run_turn([], text="When does the first ferry leave?"))
    done = events[-1]
    assert isinstance(done, TurnComplete)
    assert done.reply.text == "It leaves at 7:40 every morning."
    assert "".join(e.text for e in events if isinstance(e, ReplyDelta)) == done.reply.text
    assert [p.source for p in done.passages] == ["timetable.md"]


def test_a_turn_with_a_note_to_say_it_does_not_know_takes_no_second_look(app_config):
    config = replace(app_config, retrieval=replace(app_config.retrieval, top_k=1), response_cache=False)
    llm = DocumentReader()
    pipeline = fake_pipeline(config, llm=llm, passages=[PRICES, TIMETABLE])
    done = list(pipeline.run_turn([], text="Can you book me a ferry ticket for tomorrow?"))[-1]
    assert isinstance(done, TurnComplete)
    assert done.reply.text == DONT_KNOW and llm.answers == [DONT_KNOW]
    assert action_requests().note in llm.questions[0]  # the note that made it say so
