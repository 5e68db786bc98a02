"""Text-to-speech input: empty, very long, non-ASCII and non-Latin text and control characters are handled (cleaned,
spelled, split) or refused with the reason, by the bank and by the server (a 400 on `input`, after which it keeps
serving); properties (hypothesis) of the cleaning, spelling and splitting."""

from __future__ import annotations

import functools
import io
import logging
import unicodedata
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf
from hypothesis import given
from hypothesis import strategies as st

from speechpeft.adapters.bank import BASE, AdapterBank
from speechpeft.backbones import load_frozen
from speechpeft.errors import InputError
from speechpeft.server import create_app
from speechpeft.text_input import MAX_TEXT_CHARACTERS, TextInputError, clean_text, spell, split_text
from tests.serving import serving

SPEECHT5 = "speechpeft/tiny-speecht5"


@functools.cache
def speecht5_tokenizer() -> Any:
    """tiny-speecht5's tokenizer: characters a-z, ' and space."""
    return load_frozen(SPEECHT5, "tts", "fp32").processor.tokenizer


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("  Turn on\tthe\n\nlights  ", "Turn on the lights"),
        ("\ufeffzero\u200bwidth soft\u00adhyphen", "zerowidth softhyphen"),  # invisible format characters go
        ("cafe\u0301", "caf\u00e9"),  # NFC: one é, however it was typed
        ("\u4f60\u597d \u043f\u0440\u0438\u0432\u0435\u0442", "\u4f60\u597d \u043f\u0440\u0438\u0432\u0435\u0442"),
        ("x" * MAX_TEXT_CHARACTERS, "x" * MAX_TEXT_CHARACTERS),
    ],
)
def test_clean_text_keeps_the_words(text: str, cleaned: str) -> None:
    assert clean_text(text) == cleaned


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "text is empty"),
        (" \t\n\u3000", "text is empty"),
        ("\u200b", "text is empty"),
        ("bell\x07 and nul\x00", "2 control character(s) or lone surrogate(s), the first U+0007 at position 4"),
        ("escape \x1b[31m red", "U+001B at position 7"),
        ("lone \ud800 surrogate", "U+D800 at position 5"),
        ("x" * (MAX_TEXT_CHARACTERS + 1), "4097 characters long; the limit is 4096"),
        (42, "must be a string, not int"),
    ],
)
def test_clean_text_refuses_with_the_reason(text: object, says: str) -> None:
    with pytest.raises(TextInputError) as refused:
        clean_text(text)
    assert says in str(refused.value)


def test_spelling_in_the_characters_the_tokenizer_knows(caplog: pytest.LogCaptureFixture) -> None:
    """tiny-speecht5 spells a-z and ' only: its tokenizer would turn anything else into one silent <unk>."""
    tokenizer = speecht5_tokenizer()
    assert spell("Hello World", tokenizer, SPEECHT5) == "hello world"  # case: no warning
    assert not caplog.records
    with caplog.at_level(logging.WARNING):
        assert spell("Na\u00efve caf\u00e9, don\u2019t stop!", tokenizer, SPEECHT5) == "naive cafe don't stop"
    assert "'\u00ef' as 'i', '\u00e9' as 'e', ',' as a pause, '\u2019' as \"'\", '!' as a pause" in caplog.text
    assert spell("Stra\u00dfe", tokenizer, SPEECHT5) == "strasse"
    gpt2 = load_frozen("speechpeft/tiny-whisper", "asr", "fp32").processor.tokenizer  # byte-level: no unknowns
    assert spell("\u4f60\u597d 7!", gpt2, "tiny-whisper") == "\u4f60\u597d 7!"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("\u4f60\u597d", "'\u4f60' (U+4F60), '\u597d' (U+597D); it spells only these: 'abcdefghijklmnopqrstuvwxyz"),
        ("\u043f\u0440\u0438\u0432\u0435\u0442", "'\u043f' (U+043F), '\u0440' (U+0440)"),
        ("\u00c6gir", "'\u00c6' (U+00C6)"),
        ("set an alarm for 7", "'7' (U+0037); it spells only these: 'abcdefghijklmnopqrstuvwxyz; write numbers as "),
        ("!!! ...", "nothing speechpeft/tiny-speecht5 can speak: only punctuation or symbols"),
    ],
)
def test_what_the_backbone_cannot_spell_is_refused_by_name(text: str, says: str) -> None:
    with pytest.raises(TextInputError) as refused:
        spell(text, speecht5_tokenizer(), SPEECHT5)
    assert says in str(refused.value)


def fits(limit: int) -> Callable[[str], bool]:
    return lambda piece: len(speecht5_tokenizer()(piece).input_ids) <= limit


def test_long_text_is_split_at_sentences_then_words_then_characters() -> None:
    assert split_text("short", fits(126)) == ["short"]
    text = "turn on the lights. play some jazz! what time is it"
    assert split_text(text, fits(24)) == ["turn on the lights.", "play some jazz!", "what time is it"]
    assert split_text("one two three four five six", fits(12)) == ["one two", "three four", "five six"]
    assert split_text("abcdefghijklmnop", fits(7)) == ["abcde", "fghij", "klmno", "p"]  # ▁ and </s> take two
    longest = clean_text("speak every word of this sentence. " * 117)  # 4094 characters
    pieces = split_text(longest, fits(126))
    assert " ".join(pieces) == longest and all(fits(126)(p) for p in pieces)


# -- properties -----------------------------------------------------------------------------------------------------


@given(st.text(max_size=200))
def test_clean_text_returns_clean_text_or_refuses(text: str) -> None:
    try:
        cleaned = clean_text(text)
    except TextInputError:
        return
    assert cleaned and cleaned == cleaned.strip() and "  " not in cleaned
    assert not any(unicodedata.category(c) in ("Cc", "Cf", "Cs") or (c.isspace() and c != " ") for c in cleaned)


@given(st.text(st.characters(categories=["L", "M", "N", "P", "S", "Zs"]), min_size=1, max_size=40))
def test_spelling_never_drops_a_letter_or_digit_silently(text: str) -> None:
    """Only punctuation and symbols may become pauses: a letter or digit is spelled, or the text is refused."""
    try:
        spelled = spell(" ".join(text.split()), speecht5_tokenizer(), SPEECHT5)
    except TextInputError:
        return
    assert speecht5_tokenizer().unk_token_id not in speecht5_tokenizer()(spelled).input_ids
    letters = [c for c in text if unicodedata.category(c)[0] in "LN"]
    assert len(spelled.replace(" ", "")) >= len(letters)


@given(st.lists(st.text("abcdefghij", min_size=1, max_size=30), min_size=1, max_size=30), st.integers(3, 40))
def test_split_text_covers_the_text_in_pieces_that_fit(words: list[str], limit: int) -> None:
    """Every piece fits; they hold the text in order, spaces between them unless a word too long was cut."""
    text = " ".join(words)
    pieces = split_text(text, fits(limit))
    assert all(fits(limit)(piece) for piece in pieces) and "".join(pieces).replace(" ", "") == "".join(words)
    if all(fits(limit)(word) for word in words):
        assert " ".join(pieces) == text


# -- the bank and the server ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bank(tmp_path_factory: pytest.TempPathFactory) -> AdapterBank:
    return AdapterBank(tmp_path_factory.mktemp("store"), device="cpu", precision="fp32", default_backbone=SPEECHT5)


@pytest.mark.slow
def test_the_bank_refuses_with_the_reason(bank: AdapterBank) -> None:
    with pytest.raises(TextInputError, match="text 1 is empty"):
        bank.synthesize(["yes", " \n"])
    with pytest.raises(InputError, match="at least one text"):
        bank.synthesize([])
    with pytest.raises(TextInputError, match=r"U\+0000 at position 3"):
        bank.synthesize("yes\x00")
    with pytest.raises(TextInputError, match=r"text holds characters speechpeft/tiny-speecht5 cannot spell: '\u4f60'"):
        bank.synthesize("\u4f60\u597d")


@pytest.mark.slow
def test_text_longer_than_the_backbone_speaks_at_once_is_spoken_in_pieces(
    bank: AdapterBank, monkeypatch: pytest.MonkeyPatch
) -> None:
    with bank.route([BASE], backbone=SPEECHT5, kind="tts") as model:
        monkeypatch.setattr(model.config, "max_text_positions", 7)  # 5 tokens: "yes" is 5 with ▁ and </s>
    text = "Yes. No!"
    pieces = split_text(spell(clean_text(text), speecht5_tokenizer(), SPEECHT5), fits(5))
    assert pieces == ["yes", "no"]  # '.' and '!' are read as pauses
    alone = [bank.synthesize(piece) for piece in pieces]
    assert np.array_equal(bank.synthesize(text), np.concatenate(alone))


@pytest.fixture(scope="module")
def url(bank: AdapterBank) -> Iterator[str]:
    """`speechpeft serve` on a free loopback port, over the module's bank."""
    with serving(create_app(bank)) as url:
        yield url


@pytest.mark.slow
def test_the_server_answers_400_on_input_with_the_reason_and_keeps_serving(url: str, bank: AdapterBank) -> None:
    refused = {
        "": "input is empty",
        "\t \n": "input is empty",
        "beep\x07": "U+0007 at position 4",
        "x" * (MAX_TEXT_CHARACTERS + 1): "the limit is 4096",
        "\u4f60\u597d": "cannot spell: '\u4f60' (U+4F60), '\u597d' (U+597D)",
        "call 911": "write numbers as words",
    }
    with httpx.Client(base_url=url, timeout=60) as http:
        for text, says in refused.items():
            response = http.post("/v1/audio/speech", json={"model": BASE, "input": text})
            assert response.status_code == 400, (text, response.text)
            error = response.json()["error"]
            assert (error["type"], error["param"]) == ("invalid_request_error", "input") and says in error["message"]
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)
    with pytest.raises(openai.BadRequestError, match="control character"):
        client.audio.speech.create(model=BASE, input="\x1b[31mred", voice="alloy")
    wav = client.audio.speech.create(model=BASE, input="Yes!", voice="alloy", response_format="wav").content
    samples, rate = sf.read(io.BytesIO(wav), dtype="float32")
    assert rate == bank.sample_rate and len(samples) == len(bank.synthesize("yes"))
