"""Clause splitting of streamed LLM text."""

from core.clauses import split_clauses


def test_first_piece_may_end_at_a_comma_once_it_has_a_few_words():
    pieces = list(split_clauses(["Sure thing, my good ", "friend, here it is. And", " more, later."]))
    assert pieces == ["Sure thing, my good friend,", "here it is.", "And more, later."]


def test_short_opening_before_a_comma_waits_for_more_words():
    assert list(split_clauses(["Yes, it ", "works."])) == ["Yes, it works."]


def test_pieces_are_emitted_as_soon_as_they_are_complete():
    seen = []

    def deltas():
        for d in ["One two three. ", "Four", " five"]:
            seen.append(d)
            yield d

    stream = split_clauses(deltas())
    assert next(stream) == "One two three."
    assert seen == ["One two three. "]
    assert list(stream) == ["Four five"]


def test_abbreviations_and_decimals_do_not_split():
    assert list(split_clauses(["Dr. Smith measured 3.5 metres. Done."])) == ["Dr. Smith measured 3.5 metres.", "Done."]


def test_punctuation_only_pieces_are_dropped():
    assert list(split_clauses(["... !! ", "?"])) == []
    assert list(split_clauses(["Hello. ... ", "Bye."])) == ["Hello.", "Bye."]


def test_text_cut_off_mid_sentence_is_still_spoken():
    assert list(split_clauses(["The answer is almost the"])) == ["The answer is almost the"]


def test_first_piece_may_end_before_a_word_that_opens_a_phrase():
    words = "The cost of a turn compared with the original design is lower. It runs by itself."
    pieces = list(split_clauses(word + " " for word in words.split()))
    assert pieces == ["The cost of a turn compared", "with the original design is lower.", "It runs by itself."]


def test_a_phrase_opener_needs_a_few_words_before_it_and_a_complete_word():
    expected = ["Lip-sync works by reading the phonemes."]
    assert list(split_clauses(["Lip-sync works by reading ", "the phonemes."])) == expected
    assert list(split_clauses(["It reads the phoneme to", "kens well."])) == ["It reads the phoneme tokens well."]


def test_no_phrase_break_right_after_a_preposition_or_an_article():
    pieces = list(split_clauses(["Lip-sync works by using the ", "timings of the phonemes. Done."]))
    assert pieces == ["Lip-sync works by using the timings of the phonemes.", "Done."]
