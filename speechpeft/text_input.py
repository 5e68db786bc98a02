"""Text as text-to-speech takes it: checked, cleaned, spelled in the characters the backbone knows, split to fit.

`clean_text` (the server and `AdapterBank.synthesize`): Unicode NFC; tabs, newlines and other whitespace runs become
one space; invisible format characters (zero-width spaces, byte-order marks, soft hyphens) are removed. Refused
with a TextInputError: a non-string, a text with nothing but whitespace, other control characters (NUL, ESC, ...),
lone surrogates, more than MAX_TEXT_CHARACTERS.

`spell` (per backbone): SpeechT5's character vocabulary turns a character it lacks into `<unk>`, silently. So a
character the tokenizer cannot spell is written in a case it can, else without its accents (é -> e); punctuation and
symbols it cannot spell are read as a pause (a space), stray combining marks dropped; any other character (letters
of another script, digits the vocabulary lacks) is refused, naming them. Every change but case is logged.

`split_text`: a text longer than the backbone speaks at once is spoken in pieces: whole sentences packed up to the
limit, a sentence too long on its own cut between words (a word too long on its own, between characters).
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable
from typing import Any

from speechpeft.errors import InputError

logger = logging.getLogger(__name__)

MAX_TEXT_CHARACTERS = 4096  # OpenAI's limit for /v1/audio/speech `input`; the bank's too
SHOWN_CHARACTERS = 10  # unspellable characters named in an error, at most
SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
APOSTROPHES = {"\u2019": "'", "\u2018": "'", "\u02bc": "'"}  # typographic ones, spelled as ASCII's when need be


class TextInputError(InputError):
    """Text that cannot be spoken (empty, control characters, too long, unspellable); the message says which."""


def clean_text(text: Any, what: str = "text") -> str:
    """`text` cleaned as the module docstring says, or TextInputError naming the problem and the fix."""
    if not isinstance(text, str):
        raise TextInputError(f"{what} must be a string, not {type(text).__name__}")
    if len(text) > MAX_TEXT_CHARACTERS:
        raise TextInputError(f"{what} is {len(text)} characters long; the limit is {MAX_TEXT_CHARACTERS} "
                             "(MAX_TEXT_CHARACTERS): send it in parts")  # fmt: skip
    refused = [(i, c) for i, c in enumerate(text) if _is_refused(c)]
    if refused:
        index, character = refused[0]
        raise TextInputError(f"{what} holds {len(refused)} control character(s) or lone surrogate(s), the first "
                             f"U+{ord(character):04X} at position {index}: remove them")  # fmt: skip
    text = unicodedata.normalize("NFC", text)
    text = " ".join("".join(c for c in text if unicodedata.category(c) != "Cf").split())
    if not text:
        raise TextInputError(f"{what} is empty: send the words to speak")
    return text


def _is_refused(character: str) -> bool:
    category = unicodedata.category(character)
    return (category == "Cc" and not character.isspace()) or category == "Cs"


def spell(text: str, tokenizer: Any, backbone: str, what: str = "text") -> str:
    """`text` in characters `tokenizer` spells (see the module docstring); TextInputError naming those it cannot.

    A tokenizer without an unknown token (byte-level BPE) spells everything: the text comes back unchanged.
    """
    if tokenizer.unk_token_id is None:
        return text
    known: dict[str, bool] = {}
    spelled, changed, unspellable = {}, {}, []
    for character in dict.fromkeys(text.replace(" ", "")):
        spelled[character] = _spelling(character, tokenizer, known)
        if spelled[character] is None:
            unspellable.append(character)
        elif spelled[character].lower() != character.lower():
            changed[character] = spelled[character]
    if unspellable:
        raise _unspellable(unspellable, tokenizer, backbone, what)
    result = " ".join("".join(spelled.get(c, c) for c in text).split())
    if not result:
        raise TextInputError(f"{what} has nothing {backbone} can speak: only punctuation or symbols, read as pauses")
    if changed:
        shown = ", ".join(f"{c!r} as {_shown(s)}" for c, s in changed.items())
        logger.warning("%s: %s cannot spell every character; read %s", what, backbone, shown)
    return result


def _shown(spelling: str) -> str:
    return {" ": "a pause", "": "nothing"}.get(spelling, repr(spelling))


def _spelling(character: str, tokenizer: Any, known: dict[str, bool]) -> str | None:
    """How `character` is written for `tokenizer`: itself, another case, without accents, a pause, or None."""
    bare = "".join(c for c in unicodedata.normalize("NFKD", character) if not unicodedata.combining(c))
    candidates = (character, character.lower(), character.upper(), character.casefold(), bare, bare.lower(),
                  bare.upper())  # fmt: skip
    for candidate in (*candidates, APOSTROPHES.get(character)):
        if candidate and all(_spells(c, tokenizer, known) for c in candidate):
            return candidate
    kind = unicodedata.category(character)[0]
    return " " if kind in "PSZ" else "" if kind == "M" else None  # marks: accents on a letter spelled without them


def _spells(character: str, tokenizer: Any, known: dict[str, bool]) -> bool:
    if character not in known:
        known[character] = tokenizer.unk_token_id not in tokenizer(character, add_special_tokens=False).input_ids
    return known[character]


def _unspellable(characters: list[str], tokenizer: Any, backbone: str, what: str) -> TextInputError:
    shown = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in characters[:SHOWN_CHARACTERS])
    more = f" and {len(characters) - SHOWN_CHARACTERS} more" if len(characters) > SHOWN_CHARACTERS else ""
    alphabet = "".join(sorted(t for t in tokenizer.get_vocab() if len(t) == 1 and t.isprintable() and t != "▁"))
    digits = "; write numbers as words" if any(c.isdigit() for c in characters) else ""
    return TextInputError(f"{what} holds characters {backbone} cannot spell: {shown}{more}; it spells only these: "
                          f"{alphabet[:80]}{digits}")  # fmt: skip


def split_text(text: str, fits: Callable[[str], bool]) -> list[str]:
    """`text` in pieces that each `fits` (one piece when it all fits): sentences packed greedily, then words, then
    characters, for units that do not fit alone."""
    if fits(text):
        return [text]
    pieces: list[str] = []
    for sentence in SENTENCE_END.split(text):
        for word in sentence.split(" ") if not fits(sentence) else [sentence]:
            for unit in _characters(word, fits) if not fits(word) else [word]:
                if pieces and fits(f"{pieces[-1]} {unit}"):
                    pieces[-1] = f"{pieces[-1]} {unit}"
                else:
                    pieces.append(unit)
    return pieces


def _characters(word: str, fits: Callable[[str], bool]) -> list[str]:
    """A word too long to speak at once, in the longest slices that fit (found by bisection; one character at
    least)."""
    slices, start = [], 0
    while start < len(word):
        low, high = start + 1, len(word)  # word[start:low] is taken even if it does not fit
        while low < high:
            middle = (low + high + 1) // 2
            low, high = (middle, high) if fits(word[start:middle]) else (low, middle - 1)
        slices.append(word[start:low])
        start = low
    return slices
