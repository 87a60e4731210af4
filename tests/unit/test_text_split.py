import random
import time

import pytest

from speechmesh.dsp.text_split import Piece, _sentences, join_pieces, split_text


def words(text: str) -> int:
    return len(text.split())


def framed(text: str) -> int:
    """A model-like counter: a word is a token, plus two special tokens per piece."""
    return len(text.split()) + 2


def texts(pieces: list[Piece]) -> list[str]:
    return [piece.text for piece in pieces]


def test_sentence_boundaries() -> None:
    text = "One two. Three four! Five six? Seven… Eight nine."
    assert texts(split_text(text, 2, words)) == [
        "One two.",
        "Three four!",
        "Five six?",
        "Seven…",
        "Eight nine.",
    ]


def test_abbreviations_initials_numbers_and_list_items_stay_whole() -> None:
    text = (
        "Dr. Smith met J. Doe at 3 p.m. in the U.S. capital, e.g. near No. 10. "
        "Pi is 3.14 and approx. three. Steps: 1. Mix well."
    )
    assert [sentence for sentence, _ in _sentences(text)] == [
        "Dr. Smith met J. Doe at 3 p.m. in the U.S. capital, e.g. near No. 10.",
        "Pi is 3.14 and approx. three.",
        "Steps: 1. Mix well.",
    ]
    assert texts(split_text("It ended at 5 p.m. Then we left.", 5, words)) == [
        "It ended at 5 p.m.",
        "Then we left.",
    ]


def test_packs_sentences_under_the_limit() -> None:
    text = "A b c. D e f. G h i. J k l. M n o."
    pieces = split_text(text, 8, framed)
    assert texts(pieces) == ["A b c. D e f.", "G h i. J k l.", "M n o."]
    assert all(framed(p.text) <= 8 for p in pieces)
    assert [p.separator for p in pieces] == [" ", " ", ""]


def test_over_long_sentence_splits_at_clauses_then_words_then_characters() -> None:
    text = "Alpha beta gamma delta, epsilon zeta; eta theta iota kappa lambda mu."
    pieces = split_text(text, 4, words)
    assert texts(pieces) == [
        "Alpha beta gamma delta,",
        "epsilon zeta;",
        "eta theta iota kappa",
        "lambda mu.",
    ]
    long_word = split_text("Supercalifragilistic ok", 6, len)
    assert texts(long_word) == ["Superc", "alifra", "gilist", "ic", "ok"]
    assert [p.glued for p in long_word] == [True, True, True, False, False]
    assert join_pieces(long_word, "Supercalifragilistic ok") == "Supercalifragilistic ok"


def test_cjk_sentences_and_spaceless_fallback() -> None:
    text = "今天天气很好。我们去公园吧！你觉得怎么样？好的。"
    pieces = split_text(text, 8, len)
    assert texts(pieces) == ["今天天气很好。", "我们去公园吧！", "你觉得怎么样？", "好的。"]
    assert join_pieces(pieces, text) == text
    # Translated into a spaced script, sentences get a space between them.
    translated = join_pieces(pieces, text, ["Nice day.", "Let's go!", "Well?", "OK."])
    assert translated == "Nice day. Let's go! Well? OK."
    clauses = split_text("我们明天去北京，然后去上海，最后回家。", 8, len)
    assert texts(clauses) == ["我们明天去北京，", "然后去上海，", "最后回家。"]
    assert (
        join_pieces(clauses, "我们明天去北京，然后去上海，最后回家。", ["a,", "b,", "c."])
        == "a, b, c."
    )
    no_punctuation = "我" * 25
    pieces = split_text(no_punctuation, 10, len)
    assert [len(p.text) for p in pieces] == [10, 10, 5]
    assert join_pieces(pieces, no_punctuation) == no_punctuation


def test_other_scripts_terminators() -> None:
    assert texts(split_text("هل أنت بخير؟ نعم.", 3, words)) == ["هل أنت بخير؟", "نعم."]
    assert texts(split_text("मैं ठीक हूँ। तुम कैसे हो।", 3, words)) == ["मैं ठीक हूँ।", "तुम कैसे हो।"]


def test_paragraph_breaks_are_kept() -> None:
    text = "  Title\n\nFirst sentence. Second sentence.\nA line.\r\n\r\n  Last one.  \n"
    pieces = split_text(text, 100, words)
    assert texts(pieces) == ["Title", "First sentence. Second sentence.", "A line.", "Last one."]
    assert [p.ends_paragraph for p in pieces] == [True, True, True, True]
    assert join_pieces(pieces, text) == text
    upper = join_pieces(pieces, text, [p.text.upper() for p in pieces])
    assert upper == "  TITLE\n\nFIRST SENTENCE. SECOND SENTENCE.\nA LINE.\r\n\r\n  LAST ONE.  \n"


def test_blank_text_and_bad_limits() -> None:
    assert split_text("", 10, words) == []
    assert split_text(" \n ", 10, words) == []
    assert join_pieces([], " \n ") == " \n "
    with pytest.raises(ValueError):
        split_text("Hello.", 2, framed)  # the framing alone takes 2
    with pytest.raises(ValueError):
        join_pieces(split_text("A. B.", 1, words), "A. B.", ["only one"])


def document(chars: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    vocab = ["the", "quick", "brown", "fox", "a", "lazy", "dog", "Dr.", "e.g.", "3.14", "U.S."]
    vocab += ["and,", "then;", "ok"]
    parts = ["\n "]
    size = 0
    while size < chars:
        sentence = " ".join(rng.choice(vocab) for _ in range(rng.randint(3, 40))).capitalize()
        end = rng.choice([". ", "! ", "? ", ".\n\n", ". ", "。", ".\n", "… "])
        parts.append(sentence + end)
        size += len(sentence) + len(end)
    parts.append("\n")
    return "".join(parts)


def test_twenty_thousand_characters_round_trip_quickly() -> None:
    text = document(20_000)
    assert len(text) >= 20_000
    started = time.perf_counter()
    pieces = split_text(text, 24, framed)
    elapsed = time.perf_counter() - started
    assert elapsed < 0.1
    assert all(framed(p.text) <= 24 for p in pieces)
    assert all("\n" not in p.text for p in pieces)
    assert join_pieces(pieces, text) == text
    assert text.count("\n\n") == sum(p.separator.count("\n\n") for p in pieces)


# -- sentences for speech ----------------------------------------------------------


def test_split_sentences_gives_one_piece_per_sentence_and_cuts_long_ones():
    from speechmesh.dsp.text_split import split_sentences

    text = "Hi. This is long, with clauses, and more clauses that go on. End!"
    pieces = [p.text for p in split_sentences(text, 20)]
    assert pieces[0] == "Hi." and pieces[-1] == "End!"
    assert all(len(p) <= 20 for p in pieces)
    assert " ".join(pieces) == text
    assert [p.text for p in split_sentences("One. Two.", 100)] == ["One.", "Two."]


def test_sentence_buffer_waits_for_what_follows_an_end():
    from speechmesh.dsp.text_split import SentenceBuffer

    buffer = SentenceBuffer(400)
    assert buffer.add("Hello there. How a") == ["Hello there."]
    assert buffer.add("re you? It is 3.") == ["How are you?"]
    assert buffer.add("14 degrees, e.g. warm.") == []  # "3." then "14": no end; "warm." may go on
    assert buffer.add(" Next") == ["It is 3.14 degrees, e.g. warm."]
    assert buffer.add(" one\nline two") == ["Next one"]  # a line break ends a sentence
    assert buffer.pending == "line two"
    assert buffer.flush() == ["line two"] and buffer.pending == ""
    assert buffer.flush() == []


def test_sentence_buffer_cuts_text_that_never_ends():
    from speechmesh.dsp.text_split import SentenceBuffer

    buffer = SentenceBuffer(40)
    out = buffer.add("a very long sentence without any end at all, it goes on and on and on")
    assert out == ["a very long sentence without any end at"]  # no clause mark: last space
    assert buffer.add(" then, at last, it") == ["all, it goes on and on and on then,"]
    assert all(len(s) <= 40 for s in out)
    assert len(buffer.pending) <= 40
