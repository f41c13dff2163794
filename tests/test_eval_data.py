"""The labelled question sets are well formed: every key fact can be found in the document it is about.

A fact no document states can never be answered, and a broken line would silently shrink a set; both would make the
answer-quality figures wrong without any run failing.
"""

from __future__ import annotations

import pytest

from bench.llm_quality.run import GROUNDING_SETS, KBS, PERSONA_SETS
from core.llm.evaluation import load_cases, load_turns, present


@pytest.mark.parametrize("set_name", list(GROUNDING_SETS))
def test_every_key_fact_is_stated_in_its_source_document(set_name: str) -> None:
    kb, path, _, word_starts = GROUNDING_SETS[set_name]
    cases = load_cases(path)
    assert len({c.id for c in cases}) == len(cases) and cases
    for case in cases:
        if not case.answerable:
            assert not case.facts and not case.source, case.id
            continue
        document = (KBS[kb] / case.source).read_text(encoding="utf-8")
        for alternatives in case.facts:
            assert any(present(document, a, word_start_only=word_starts) for a in alternatives), (case.id, alternatives)


@pytest.mark.parametrize("set_name", list(PERSONA_SETS))
def test_scripted_turns_name_a_known_knowledge_base(set_name: str) -> None:
    turns = load_turns(PERSONA_SETS[set_name][0], "Sam")
    assert turns and len({t.id for t in turns}) == len(turns)
    assert all(t.kb in KBS for t in turns)
