"""Requests that the assistant act: which messages are ones, the data file's checks, and the turn's note or reply."""

from __future__ import annotations

import json

import pytest

from core.action_requests import action_requests, load_action_requests
from core.errors import ConfigError
from core.llm.base import without_notes

ASKS_TO_ACT = ["Can you book me a demo with the team for Tuesday afternoon?",
               "Please email the setup instructions to my colleague.", "Could you send me the price list?",
               "Book me two tickets for Friday's show", "can you order me a pizza"]
QUESTIONS = ["Can I book online?", "How do I cancel my booking?", "Will you pay for a hotel if the ferry is cancelled?",
             "Email address for the pharmacy?", "Can you tell me the opening hours?", "Send", "How do I order parts?"]


@pytest.mark.parametrize("message", ASKS_TO_ACT)
def test_a_request_to_act_is_recognised(message):
    assert action_requests().matches(message)


@pytest.mark.parametrize("message", QUESTIONS)
def test_a_question_about_doing_something_is_not_a_request_to_act(message):
    assert not action_requests().matches(message)


def test_the_note_must_be_one_parenthesised_line(tmp_path):
    data = {"patterns": ["\\bbook me\\b"], "note": "Say you can't.", "reply": "I can't."}
    path = tmp_path / "action_requests.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="parenthesised"):
        load_action_requests(path)
    path.write_text(json.dumps({**data, "patterns": ["(book"], "note": "(Say you can't.)"}))
    with pytest.raises(ConfigError, match="cannot read"):
        load_action_requests(path)


def test_a_request_to_act_gets_the_note_and_not_the_coverage_note(pipeline):
    setup = pipeline.setup()
    context = pipeline.stages.retrieval.context(pipeline.stages.retrieval.search(ASKS_TO_ACT[0], setup.top_k))
    note, instead = pipeline.notes.note(ASKS_TO_ACT[0], context, system_prompt=setup.system_prompt,
                                        follows_notes=setup.llm.follows_notes)
    assert (note, instead) == (action_requests().note, "")
    messages = pipeline._messages([], ASKS_TO_ACT[0], setup.system_prompt, None, note)
    assert without_notes(messages[-1].content) == ASKS_TO_ACT[0] and messages[-1].content.endswith(note)


def test_a_request_to_act_is_answered_that_the_assistant_cannot(pipeline):
    from core.types import TurnComplete

    done = list(pipeline.run_turn([], text="Can you book me a demo with the team for Tuesday afternoon?",
                                  session_id="action-request"))[-1]
    assert isinstance(done, TurnComplete)
    reply = done.reply.text.lower()
    assert any(word in reply for word in ("can't", "cannot", "not able", "unable")), reply
    assert "booked" not in reply and "i'll book" not in reply, reply


def test_a_model_that_cannot_follow_notes_gives_the_fixed_reply(pipeline):
    assert pipeline.notes.note(ASKS_TO_ACT[1], (), system_prompt="", follows_notes=False) == (
        "", action_requests().reply)
    assert pipeline.notes.note(QUESTIONS[0], (), system_prompt="", follows_notes=False) == ("", "")  # nothing to add
