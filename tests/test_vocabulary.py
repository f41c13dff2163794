"""Words a question uses that the knowledge base never does, and the note the model gets for them."""

from __future__ import annotations

import json
import re

import pytest

from core.config import load_config
from core.errors import ConfigError
from core.llm.router import RoutedLLM
from core.retrieval.vocabulary import COVERAGE_PATH, CoverageRules, Vocabulary, WordForms, load_coverage_rules
from core.types import ChatMessage, Passage, TurnComplete
from tests.fakes import FakeLLM, fake_pipeline

FERRY_DOCUMENTS = (
    "The ferry sails from Port Averly to Tarrin every morning. Bicycles cost three euros each way.",
    "Tickets are sold in the office on the quay, and dogs travel free on deck.",
)
RULES = CoverageRules(note="(Never mentioned: {words}.)", reply="No word on {words}.",
                      not_knowing=re.compile(r"don't know", re.IGNORECASE),
                      general_words=frozenset({"happen", "cheap", "move", "bring"}),
                      check="(Answered without {words}?)")


@pytest.fixture()
def vocabulary() -> Vocabulary:
    return Vocabulary(FERRY_DOCUMENTS, RULES)


def test_forms_match_endings_but_short_words_take_one_letter_at_most():
    forms = WordForms(["room", "turn", "car", "pipeline"])
    assert forms.has_form("rooms") and forms.has_form("turned") and forms.has_form("car")
    assert forms.has_form("cars") and not forms.has_form("cargo")
    assert not forms.has_form("pi")  # "pipeline" starts with it, but a short word matches only itself plus a letter
    assert WordForms(["movements"]).has_form("move")


def test_topic_words_no_document_uses_are_found_as_written(vocabulary):
    assert vocabulary.unmentioned("Is there Wi-Fi on the ferry to Tarrin?") == ["Wi-Fi"]
    assert vocabulary.unmentioned("Can I bring my horse, or my horses?") == ["horse", "horses"]
    assert vocabulary.unmentioned("Is a bicycle ticket to Tarrin sold on the quay?") == []


def test_a_word_whose_dictionary_form_a_document_uses_is_mentioned(vocabulary):
    """Endings alone cannot tell that "sold" is "sell" or "travelling" is "travel"; the dictionary forms can."""
    assert vocabulary.unmentioned("Who sells tickets, and do dogs ride free?") == ["ride"]
    assert vocabulary.unmentioned("Which ferries sailed, and are dogs travelling?") == []
    assert Vocabulary(["The biggest ferry carries cars."], RULES).unmentioned("Is it big?") == []
    assert Vocabulary(["The big ferry carries cars."], RULES).unmentioned("Which is the biggest?") == []
    assert vocabulary.unmentioned("Which is the cheapest?") == []  # a general word ("cheap") in any of its forms


def test_only_a_word_that_can_name_a_thing_is_a_topic_word(vocabulary):
    """Adverbs, verbs and adjectives say how something is asked; a noun, a name or an activity is what about."""
    assert vocabulary.unmentioned("Roughly how often is the ferry noisy, and should I expect it?") == []
    assert vocabulary.unmentioned("Is there parking on the quay, or a kiln?") == ["parking", "kiln"]
    assert vocabulary.unmentioned("Are tickets sold with Google?") == ["Google"]  # a name, not the verb
    assert vocabulary.unmentioned("Should I google the ferry?") == []


def test_stopwords_general_words_and_numbers_are_never_topic_words(vocabulary):
    assert vocabulary.unmentioned("What happens to the cheapest tickets at 8 am or in 2025?") == []
    assert vocabulary.unmentioned("Does it move?") == []


def test_words_of_the_extra_texts_count_as_mentioned(vocabulary):
    assert vocabulary.unmentioned("Who is Sam?") == ["Sam"]
    assert vocabulary.unmentioned("Who is Sam?", also_known=("You are Sam, the assistant.",)) == []


def test_a_vocabulary_without_documents_finds_nothing_unmentioned():
    assert Vocabulary([], RULES).unmentioned("Is there Wi-Fi?") == []


def test_the_note_quotes_the_words_and_the_reply_names_them(vocabulary):
    assert vocabulary.note([]) == "" and vocabulary.reply([]) == ""
    assert vocabulary.note(["Wi-Fi"]) == '(Never mentioned: "Wi-Fi".)'
    assert vocabulary.note(["a", "b", "c"]) == '(Never mentioned: "a", "b" or "c".)'
    assert vocabulary.reply(["Wi-Fi", "horses"]) == "No word on Wi-Fi or horses."
    assert vocabulary.check(["Wi-Fi"]) == '(Answered without "Wi-Fi"?)'


def test_the_project_rules_load_and_bad_files_are_refused(tmp_path):
    rules = load_coverage_rules()
    assert "{words}" in rules.note and "{words}" in rules.check and "happen" in rules.general_words
    bad = tmp_path / "coverage.json"
    valid = json.loads(COVERAGE_PATH.read_text(encoding="utf-8"))
    for data in ({"note": "no field", "reply": "{words}", "general_words": []},
                 {**valid, "check": "Does it answer {words}? (not one parenthesised line)"},
                 {**valid, "still_answers_margin": "high"},
                 {"note": "{words}", "general_words": []},
                 {"note": "{words}", "reply": "{words}", "not_knowing": "x", "general_words": ["Two words"]},
                 {"note": "{words}", "reply": "{words}", "not_knowing": "(", "general_words": []},
                 ["not an object"]):
        bad.write_text(json.dumps(data), encoding="utf-8")
        with pytest.raises(ConfigError, match="coverage.json"):
            load_coverage_rules(bad)


class NoteBlindLLM(FakeLLM):
    """A fake model that, like the smallest local one, cannot act on a note after the question."""

    @property
    def follows_notes(self) -> bool:
        return False


class JudgingLLM(FakeLLM):
    """A fake model that judges a yes-or-no check with a fixed lean, and records the conversations it judged."""

    def __init__(self, config, *, lean: float | None, **kwargs) -> None:
        super().__init__(config, **kwargs)
        self.lean = lean
        self.judged: list[list] = []

    def _yes_margin(self, conversation, passages):
        self.judged.append(conversation)
        return self.lean


def _pipeline(tmp_path, passages, llm_type=FakeLLM, **llm_options):
    config = load_config({"AVATAR_CACHE_DIR": str(tmp_path / "cache"), "AVATAR_EXPERIMENT": "none"})
    llm = llm_type(config, answer="I don't know; my documents don't say.", **llm_options)
    return fake_pipeline(config, llm=llm, passages=passages), llm


FERRY_PASSAGES = [Passage(text, "ferry.md", "Ferry", 0.5) for text in FERRY_DOCUMENTS]


def test_a_reply_that_opens_by_not_knowing_is_recognised():
    rules = load_coverage_rules()
    for reply in ("I don't know; my documents don't say.", "The reference material does not contain the answer.",
                  "I'm not sure. The documents only cover the ferry."):
        assert rules.admits_not_knowing(reply), reply
    for reply in ("It leaves at 9. I don't know when it comes back.", "Yes, dogs travel free on deck."):
        assert not rules.admits_not_knowing(reply), reply


def test_a_statement_is_told_from_a_question_even_a_casual_one():
    rules = load_coverage_rules()
    for message in ("I'm so frustrated with my internet provider.", "My dog died yesterday.", "we loved the trip"):
        assert rules.is_statement(message), message
    for message in ("my son wants to volunteer, whats the minimum age", "I need the Wi-Fi password?", "wi-fi on board",
                    "I'd like to know how late the café opens", "can i bring my dog"):
        assert not rules.is_statement(message), message


def test_a_statement_about_something_unmentioned_gets_no_note(tmp_path):
    """Nothing in it is to be answered from the documents, so the model is not told to say it does not know."""
    pipeline, llm = _pipeline(tmp_path, FERRY_PASSAGES)
    list(pipeline.run_turn([], text="I'm so annoyed that my laptop has no Wi-Fi on the ferry."))
    assert llm.calls[-1][-1].content == "I'm so annoyed that my laptop has no Wi-Fi on the ferry."
    list(pipeline.run_turn([], text="Does my laptop get Wi-Fi on the ferry?"))
    assert '"Wi-Fi"' in llm.calls[-1][-1].content


def test_a_grounded_question_about_something_unmentioned_gets_the_note(tmp_path):
    pipeline, llm = _pipeline(tmp_path, FERRY_PASSAGES)
    done = list(pipeline.run_turn([], text="Is there Wi-Fi on the ferry?"))[-1]
    assert isinstance(done, TurnComplete)
    assert done.passages == ()  # the model said it does not know, so the passages it read are not its sources
    question = llm.calls[-1][-1].content
    assert question.startswith("Is there Wi-Fi on the ferry?") and '"Wi-Fi"' in question
    list(pipeline.run_turn([], text="When does the ferry sail to Tarrin?"))
    assert llm.calls[-1][-1].content == "When does the ferry sail to Tarrin?"


@pytest.mark.parametrize(("lean", "noted"), [(None, True), (-5.0, True), (5.0, False)])
def test_a_model_that_judges_is_asked_first_and_a_yes_drops_the_note(tmp_path, lean, noted):
    """The check goes after the question in the conversation the model would answer; a lean to "Yes" at or above
    the rules' margin means the missing words were incidental, and the question goes as asked."""
    pipeline, llm = _pipeline(tmp_path, FERRY_PASSAGES, JudgingLLM, lean=lean)
    history = [ChatMessage("user", "Hello"), ChatMessage("assistant", "Hi!")]
    done = list(pipeline.run_turn(history, text="Is there Wi-Fi on the ferry?"))[-1]
    assert done.timings_s["notes_s"] >= 0  # the judgement is part of the time to first audio, and shown as such
    judged = llm.judged[-1]
    assert [m.content for m in judged[1:3]] == ["Hello", "Hi!"]
    assert judged[-1].content.startswith("Is there Wi-Fi on the ferry?")
    assert judged[-1].content.endswith(load_coverage_rules().check.replace("{words}", '"Wi-Fi"'))
    assert ('"Wi-Fi"' in llm.calls[-1][-1].content) is noted


def test_a_judgement_that_fails_keeps_the_note(tmp_path):
    pipeline, llm = _pipeline(tmp_path, FERRY_PASSAGES, JudgingLLM, lean=5.0)
    llm._yes_margin = lambda conversation, passages: 1 / 0
    list(pipeline.run_turn([], text="Is there Wi-Fi on the ferry?"))
    assert '"Wi-Fi"' in llm.calls[-1][-1].content


def test_a_question_close_to_a_passage_gets_no_note_for_its_paraphrased_words(tmp_path):
    close = load_coverage_rules().paraphrase_score
    pipeline, llm = _pipeline(tmp_path, [Passage(text, "ferry.md", "Ferry", close) for text in FERRY_DOCUMENTS])
    list(pipeline.run_turn([], text="Is there Wi-Fi on the ferry?"))
    assert llm.calls[-1][-1].content == "Is there Wi-Fi on the ferry?"


def test_an_ungrounded_question_gets_no_note(tmp_path):
    pipeline, llm = _pipeline(tmp_path, [])
    list(pipeline.run_turn([], text="Is there Wi-Fi on the ferry?"))
    assert llm.calls[-1][-1].content == "Is there Wi-Fi on the ferry?"


def test_a_model_that_cannot_follow_the_note_is_not_asked(tmp_path):
    pipeline, llm = _pipeline(tmp_path, FERRY_PASSAGES, NoteBlindLLM)
    done = list(pipeline.run_turn([], text="Is there Wi-Fi on the ferry?"))[-1]
    assert done.reply.text == "I don't know; my documents don't mention Wi-Fi." and not llm.calls
    assert done.passages == ()  # the reply is not from the documents, so it cites none
    list(pipeline.run_turn([], text="When does the ferry sail to Tarrin?"))
    assert llm.calls[-1][-1].content == "When does the ferry sail to Tarrin?"


def test_a_router_follows_notes_only_when_both_of_its_models_do(tmp_path):
    config = load_config({"AVATAR_CACHE_DIR": str(tmp_path / "cache")})
    able, blind = FakeLLM(config), NoteBlindLLM(config)
    assert RoutedLLM(config.llm, able, able, make_local=lambda: able).follows_notes
    assert not RoutedLLM(config.llm, able, blind, make_local=lambda: able).follows_notes


def test_a_router_asks_the_model_that_would_answer_to_judge(tmp_path):
    config = load_config({"AVATAR_CACHE_DIR": str(tmp_path / "cache")})
    small, large = JudgingLLM(config, lean=1.0), JudgingLLM(config, lean=-1.0)
    router = RoutedLLM(config.llm, small, large, make_local=lambda: small)
    check = [ChatMessage("user", 'Is there Wi-Fi?\n\n(Does it still answer, without "Wi-Fi"?)')]
    assert router.yes_margin(check, FERRY_PASSAGES) == 1.0 and not large.judged
    reasoning = [ChatMessage("user", "Explain step by step why the ferry might be late in winter, and what then?")]
    assert router.yes_margin(reasoning, FERRY_PASSAGES) == -1.0
