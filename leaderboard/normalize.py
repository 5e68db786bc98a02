"""The pinned English text normaliser that every WER and CER in speechpeft is computed after.

Pinned means versioned: results record `NORMALIZER`, and any change to the rules below gets a new
version, so two leaderboard rows are comparable only when their normaliser versions match.

Rules of speechpeft-en-3, in order:
0. OpenAI Whisper's English normaliser (`EnglishTextNormalizer`, in transformers' port, with no spelling map:
   the British-to-American list is a file the offline wheels do not ship): spelled-out numbers become digits
   ("twenty five" -> "25", "ten fifteen" -> "1015"), ordinals and currencies likewise, contractions are
   expanded ("won't" -> "will not"), fillers (um, uh, hmm) and bracketed text are dropped. Real Whisper writes
   numbers as digits; without this step "set a timer for 5 minutes" against "five minutes" is an error.
   Its quirks apply to both sides alike: "'s" becomes " is" ("the dog's bone" -> "the dog is bone"), other
   apostrophes become spaces, "o'clock" -> "0 clock".
1. Unicode NFKD with combining marks dropped ("café" -> "cafe"), lowercase; typographic apostrophes
   (U+2019, U+2018, U+02BC) become '.
2. Hyphens, dashes and slashes separate words ("well-known" -> "well known").
3. Every character other than a letter or digit (of any script: Unicode categories L and N), apostrophe and
   whitespace is dropped (punctuation, symbols), the "." and "%" that step 0 keeps in numbers included: "10.15"
   and "1015" match (a time spoken "ten fifteen", which Whisper writes 10.15), and so do "3.5" and "35". Letters
   that steps 0 and 1 leave outside a-z stay as they are ("привет", "日本語", Turkish dotless i): a word in another
   script is a word, spelled right or wrong. Marks do not survive step 0: it drops the nonspacing ones (the
   virama) and turns the spacing ones into spaces, so a word written with spacing vowel signs (Devanagari,
   Bengali, Tamil) comes out split at them ("हिन्दी" -> "ह नद"), as Whisper's own normalisers split it; this
   normaliser is for English, and those pieces count alike in references and hypotheses.
4. An apostrophe is kept only between two letters (after step 0, which removes them, this rarely applies).
5. Runs of whitespace become one space; leading and trailing spaces go.
speechpeft-en-2 dropped, in rule 3, every letter outside a-z: "a привет b" and "a b" matched.
speechpeft-en-1 was rules 1-5 alone (digits and spelled numbers never matched).

Two more normalisers are there to pick (`speechpeft eval --normalizer`, `speechpeft train --normalizer`), for
comparing with numbers others report: "whisper-english", Whisper's English normaliser alone (transformers' port of
openai/whisper `normalizers/english.py`, no spelling map: step 0 above), and "whisper-basic", Whisper's language-
independent `BasicTextNormalizer` (lowercase, bracketed text and symbols removed, diacritics kept). The leaderboard
always scores with `NORMALIZER`, so its rows compare. None of the three deletes a letter: each keeps a letter of
any script, or spells it in ASCII ("ß" -> "ss"); `vanished_letters` checks that on the texts a run scores.
"""

from __future__ import annotations

import functools
import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Literal, get_args

from speechpeft.errors import InputError

logger = logging.getLogger(__name__)
NormalizerName = Literal["speechpeft-en-3", "whisper-english", "whisper-basic"]
NORMALIZER: NormalizerName = "speechpeft-en-3"  # the default, and the leaderboard's
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})
_SEPARATORS = re.compile(r"[-\u2010-\u2015/]")
_DROPPED = re.compile(r"[^\w'\s]|_")  # \w: the letters and digits of every script (categories L, N), and _
_STRAY_APOSTROPHE = re.compile(r"(?<![^\W\d_])'|'(?![^\W\d_])")  # [^\W\d_]: \w less digits and _
_SPACES = re.compile(r"\s+")


@functools.cache
def _whisper_normalizer():
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    return EnglishTextNormalizer(english_spelling_mapping={})


@functools.cache
def _whisper_basic():
    from transformers.models.whisper.english_normalizer import BasicTextNormalizer

    return BasicTextNormalizer()


def normalizer(name: str = NORMALIZER) -> Callable[[str], str]:
    """The text normaliser called `name` (one of `NormalizerName`): a function from a transcript to its normal form.

    Raises InputError for an unknown name, listing the known ones."""
    if name == NORMALIZER:
        return normalize_english
    if name == "whisper-english":
        return lambda text: _whisper_normalizer()(text).strip()
    if name == "whisper-basic":
        return lambda text: _whisper_basic()(text).strip()
    raise InputError(f"--normalizer {name!r}: choose one of {', '.join(get_args(NormalizerName))}")


def vanished_letters(texts: Iterable[str], normalize: Callable[[str], str]) -> Counter[str]:
    """The letters outside ASCII (after NFKD, combining marks dropped: "é" is an "e") in `texts` that `normalize`
    turns into nothing when given alone, with how often each occurs: letters a WER or CER would silently leave out.
    A letter it spells another way ("ß" -> "ss") or keeps is not counted."""
    found = Counter(c for text in texts for c in text if c.isalpha() and not _base(c).isascii())
    return Counter({c: n for c, n in found.items() if not normalize(c).strip()})


def warn_vanished(texts: list[str], name: str) -> int:
    """How many letters the normaliser `name` deletes from `texts` (`vanished_letters`), said in a warning naming
    the letters when there are any, so a WER or CER over them is never quietly lower."""
    lost = vanished_letters(texts, normalizer(name))
    if lost:
        shown = ", ".join(f"{c!r} x{n}" for c, n in lost.most_common(10))
        logger.warning("the %s normaliser deletes %d letters of these transcripts (%s): their words are not scored; "
                       "pick another with --normalizer", name, sum(lost.values()), shown)  # fmt: skip
    return sum(lost.values())


def _base(character: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", character) if not unicodedata.combining(c))


def normalize_english(text: str) -> str:
    """Apply speechpeft-en-3 (see the module docstring) to one transcript."""
    text = _whisper_normalizer()(text.translate(_APOSTROPHES))
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = _DROPPED.sub("", _SEPARATORS.sub(" ", text))
    text = _STRAY_APOSTROPHE.sub("", text)
    return _SPACES.sub(" ", text).strip()
