"""The normalisers to pick from (`--normalizer`): Whisper's two from transformers beside speechpeft-en-3, the WER and
CER modules under each, and the check that no letter outside ASCII vanishes unsaid."""

from __future__ import annotations

import logging

import pytest

from speechpeft.errors import InputError
from speechpeft.leaderboard.metrics import load_metric
from speechpeft.leaderboard.normalize import normalizer, vanished_letters, warn_vanished

MIXED = "Straße, Ñandú! «Привет» 日本語 — it's 25% (um) [noise]"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # the pinned one: Whisper English, then NFKD without marks, every script's letters kept
        ("speechpeft-en-3", "strasse nandu привет 日本語 it is 25"),
        # Whisper's English normaliser alone: "%" kept, marks dropped, ß spelled ss, fillers and brackets gone
        ("whisper-english", "strasse nandu привет 日本語 it is 25%"),
        # Whisper's basic normaliser: diacritics kept, symbols and the apostrophe become spaces, bracketed and
        # parenthesised text gone
        ("whisper-basic", "straße ñandú привет 日本語 it s 25"),
    ],
)
def test_each_normalizer_by_hand(name, expected):
    assert normalizer(name)(MIXED) == expected


def test_an_unknown_normalizer_names_the_choices():
    with pytest.raises(InputError, match="whisper-english, whisper-basic"):
        normalizer("whisper")


@pytest.mark.parametrize("name", ["speechpeft-en-3", "whisper-english", "whisper-basic"])
def test_no_normalizer_deletes_a_letter_of_another_script(name):
    texts = ["Straße œuvre ǅemal", "Привет Ελλάδα 日本語 ﻙ", "İstanbul \u0131 ø æ ł"]  # \u0131: the dotless i
    assert vanished_letters(texts, normalizer(name)) == {}


def test_a_normalizer_that_deletes_letters_is_counted_and_named(caplog):
    ascii_only = "".join  # stands in for a normaliser that keeps nothing outside ASCII: counted letter by letter
    texts = ["café Привет", "日本"]
    lost = vanished_letters(texts, lambda text: ascii_only(c for c in text if c.isascii()))
    # "é" is an "e" with a mark (kept as "e" by NFKD), so it is not counted; 6 Cyrillic + 2 CJK letters are
    assert sum(lost.values()) == 8 and lost["П"] == 1 and lost["日"] == 1 and "é" not in lost
    with caplog.at_level(logging.WARNING):
        assert warn_vanished(["ok"], "speechpeft-en-3") == 0
    assert caplog.records == []


def test_wer_and_cer_under_each_normalizer_by_hand():
    wer, cer = load_metric("wer"), load_metric("cer")
    reference, hypothesis = ["It's 25% off"], ["it is 25 off"]
    # speechpeft-en-3: both sides "it is 25 off": no error
    assert wer.compute(references=reference, predictions=hypothesis)["wer"] == 0
    # whisper-english keeps "%": "25%" vs "25" is one substitution in 4 words
    english = wer.compute(references=reference, predictions=hypothesis, normalize="whisper-english")
    assert english["wer"] == pytest.approx(1 / 4) and english["normalizer"] == "whisper-english"
    # whisper-basic: "it s 25 off" (4 words) vs "it is 25 off": one substitution; CER: "it s 25 off" (11 characters)
    # against "it is 25 off" is one insertion
    assert wer.compute(references=reference, predictions=hypothesis, normalize="whisper-basic")["wer"] == 0.25
    basic = cer.compute(references=reference, predictions=hypothesis, normalize="whisper-basic")
    assert basic["cer"] == pytest.approx(1 / 11) and basic["normalizer"] == "whisper-basic"
