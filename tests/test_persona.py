"""The assistant's persona and robustness over scripted turns (the tuning set ``data/llm_persona_dev.jsonl``): each
turn's pass rule is checked on the real pipeline's answer. The held-out turns are measured in bench/llm_quality."""

from __future__ import annotations

import pytest

from core.config import DATA_DIR
from core.llm.evaluation import PersonaTurn, load_turns
from core.persona import default_persona
from core.types import ChatMessage, TurnComplete

TURNS = load_turns(DATA_DIR / "llm_persona_dev.jsonl", default_persona().name)


@pytest.mark.slow
@pytest.mark.parametrize("turn", TURNS, ids=[t.id for t in TURNS])
def test_scripted_turn_passes_its_rule(pipeline, turn: PersonaTurn) -> None:
    history = [ChatMessage(role, text) for user, assistant in turn.history
               for role, text in (("user", user), ("assistant", assistant))]
    done = list(pipeline.run_turn(history, text=turn.question, session_id="persona-test"))[-1]
    assert isinstance(done, TurnComplete)
    assert not (failure := turn.check(done.reply.text)), f"{turn.id} ({turn.category}): {failure}: {done.reply.text!r}"


def test_every_category_of_the_issue_is_scripted() -> None:
    wanted = {"identity", "capabilities", "small_talk", "out_of_scope", "injection_question", "junk", "multi_turn"}
    assert wanted <= {t.category for t in TURNS} and len(TURNS) >= 20
