"""The pinned English text normaliser that every WER and CER in speechpeft is computed after.

Pinned means versioned: results record `NORMALIZER`, and any change to the rules below gets a new
version, so two leaderboard rows are comparable only when their normaliser versions match.

Rules of speechpeft-en-1, in order:
1. Unicode NFKD with combining marks dropped ("café" -> "cafe"), lowercase; typographic apostrophes
   (U+2019, U+2018, U+02BC) become '.
2. Hyphens, dashes and slashes separate words ("well-known" -> "well known").
3. Every character other than a-z, 0-9, apostrophe and whitespace is dropped (punctuation, symbols).
4. An apostrophe is kept only between two letters ("don't" stays, "'quoted'" loses its quotes).
5. Runs of whitespace become one space; leading and trailing spaces go.
Digits are kept as digits (no number spelling) and spelling variants are not mapped: the synthetic
corpus has neither, and a Hub dataset's own conventions are left as they are.
"""

from __future__ import annotations

import re
import unicodedata

NORMALIZER = "speechpeft-en-1"
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})
_SEPARATORS = re.compile(r"[-\u2010-\u2015/]")
_DROPPED = re.compile(r"[^a-z0-9'\s]")
_STRAY_APOSTROPHE = re.compile(r"(?<![a-z])'|'(?![a-z])")
_SPACES = re.compile(r"\s+")


def normalize_english(text: str) -> str:
    """Apply speechpeft-en-1 (see the module docstring) to one transcript."""
    text = unicodedata.normalize("NFKD", text.translate(_APOSTROPHES))
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = _DROPPED.sub("", _SEPARATORS.sub(" ", text))
    text = _STRAY_APOSTROPHE.sub("", text)
    return _SPACES.sub(" ", text).strip()
