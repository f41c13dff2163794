"""The assistant's persona and robustness over scripted turns (the tuning set ``data/llm_persona_dev.jsonl``): each
turn's pass rule is checked on the real pipeline's answer. The held-out turns are measured in bench/llm_quality."""

from __future__ import annotations

import pytest

from core.config import DATA_DIR
from core.llm.evaluation import load_turns
from core.persona import default_persona
from core.types import ChatMessage, TurnComplete

TURNS = load_turns(DATA_DIR / "llm_persona_dev.jsonl", default_persona().name)


MIN_PASS_RATE = 0.9
"""Share of the scripted turns whose rule the default model must pass: a 1.5B model's answers shift a little with
the knowledge base and the CPU's arithmetic, so one odd answer in twenty is tolerated; every failure is listed."""


@pytest.mark.slow
def test_scripted_turns_pass_their_rules(pipeline) -> None:
    failures = []
    for turn in TURNS:
        history = [ChatMessage(role, text) for user, assistant in turn.history
                   for role, text in (("user", user), ("assistant", assistant))]
        done = list(pipeline.run_turn(history, text=turn.question, session_id="persona-test"))[-1]
        assert isinstance(done, TurnComplete)
        if failure := turn.check(done.reply.text):
            failures.append(f"{turn.id} ({turn.category}): {failure}: {done.reply.text!r}")
    passed = 1 - len(failures) / len(TURNS)
    assert passed >= MIN_PASS_RATE, f"{passed:.0%} of {len(TURNS)} turns passed:\n" + "\n".join(failures)


def test_every_category_of_the_issue_is_scripted() -> None:
    wanted = {"identity", "capabilities", "small_talk", "out_of_scope", "injection_question", "junk", "multi_turn"}
    assert wanted <= {t.category for t in TURNS} and len(TURNS) >= 20
