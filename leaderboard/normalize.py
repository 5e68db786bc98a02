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
"""

from __future__ import annotations

import functools
import re
import unicodedata

NORMALIZER = "speechpeft-en-3"
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})
_SEPARATORS = re.compile(r"[-\u2010-\u2015/]")
_DROPPED = re.compile(r"[^\w'\s]|_")  # \w: the letters and digits of every script (categories L, N), and _
_STRAY_APOSTROPHE = re.compile(r"(?<![^\W\d_])'|'(?![^\W\d_])")  # [^\W\d_]: \w less digits and _
_SPACES = re.compile(r"\s+")


@functools.cache
def _whisper_normalizer():
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    return EnglishTextNormalizer(english_spelling_mapping={})


def normalize_english(text: str) -> str:
    """Apply speechpeft-en-3 (see the module docstring) to one transcript."""
    text = _whisper_normalizer()(text.translate(_APOSTROPHES))
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = _DROPPED.sub("", _SEPARATORS.sub(" ", text))
    text = _STRAY_APOSTROPHE.sub("", text)
    return _SPACES.sub(" ", text).strip()
