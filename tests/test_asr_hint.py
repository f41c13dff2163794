"""The speech hint: which knowledge-base headings Whisper is prompted with, and that a turn's recogniser gets them."""

from __future__ import annotations

from core.asr.hint import speech_hint


def test_document_titles_come_before_their_sections_and_repeats_are_dropped():
    titles = ["Costs › Why pay per token", "Costs › Keeping costs down", "Voice and lip-sync › The voice", "costs"]
    assert speech_hint(titles, 40) == "Costs? Voice and lip-sync? Why pay per token? Keeping costs down? The voice?"


def test_the_word_budget_skips_long_headings_but_keeps_shorter_ones_after_them():
    titles = ["Privacy", "Privacy › What is kept on this machine and for how long", "Privacy › Logs"]
    assert speech_hint(titles, 3) == "Privacy? Logs?"


def test_a_heading_that_ends_in_punctuation_gets_one_question_mark():
    assert speech_hint(["FAQ › What does it cost?", "FAQ › Who we are:"], 20) == "FAQ? What does it cost? Who we are?"


def test_no_headings_or_no_budget_give_no_hint():
    assert speech_hint([], 40) == ""
    assert speech_hint(["Costs"], 0) == ""
    assert speech_hint([" › "], 40) == ""


def test_a_spoken_question_reaches_the_recogniser_with_the_knowledge_base_headings(pipeline, tmp_path, monkeypatch):
    from core.tts import write_wav

    heard: list[str] = []
    transcribe = pipeline.stages.asr.transcribe

    def recording(audio, hint=""):
        heard.append(hint)
        return transcribe(audio, hint=hint)

    monkeypatch.setattr(pipeline.stages.asr, "transcribe", recording)
    wav = write_wav(pipeline.stages.tts.synthesize("How does the lip sync work?"), tmp_path / "question.wav")
    pipeline.transcribe_file(wav)
    titles = [p.title for document in pipeline.stages.retrieval.documents() for p in document]
    assert heard == [speech_hint(titles, pipeline.config.asr.hint_words)]
    assert "Voice and lip-sync?" in heard[0]
