"""Speakable English text: sentences from Debian's `fortunes`, normalised to what an ASR model writes.

A transcript here is lowercase letters, apostrophes and single spaces: what the engines
speak and what recognisers are scored against, with nothing a speech engine would
read out in a way the transcript does not show (digits, symbols, abbreviations).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from speechpeft.errors import MissingInputError

FORTUNES_DIR = Path("/usr/share/games/fortunes")
DICTIONARY = Path("/usr/share/dict/american-english")
MIN_WORDS, MAX_WORDS = 3, 14

_ALLOWED = re.compile(r"^[A-Za-z][A-Za-z' ,;:.!?\"-]*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_PUNCTUATION = re.compile(r"[,;:.!?\"-]+")
_TRANSCRIPT = re.compile(r"^[a-z']+( [a-z']+)*$")


class MissingTextSourceError(MissingInputError):
    """A Debian text package the corpus needs is not installed."""


def normalise(text: str) -> str:
    """Lowercase, punctuation to spaces, one space between words, no stray apostrophes."""
    words = _PUNCTUATION.sub(" ", text.lower()).split()
    return " ".join(w.strip("'") for w in words if w.strip("'"))


def is_transcript(text: str) -> bool:
    return bool(_TRANSCRIPT.match(text))


def stable_fraction(text: str) -> float:
    """A number in [0, 1) fixed by the text alone, so a sentence's split never depends on corpus size or seed."""
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def load_dictionary(path: Path = DICTIONARY) -> frozenset[str]:
    if not path.exists():
        raise MissingTextSourceError(f"word list {path} not found: install it with `apt-get install wamerican`")
    words = (w.strip() for w in path.read_text(encoding="utf-8", errors="ignore").splitlines())
    # acronyms (TV, NASA) are read out letter by letter, which a transcript of the word does not show
    return frozenset(w.lower() for w in words if not (len(w) > 1 and w.isupper()))


def fortune_entries(directory: Path = FORTUNES_DIR) -> Iterator[str]:
    """Each fortune (entries are separated by lines holding a single '%')."""
    files = sorted(p for p in directory.glob("*") if p.is_file() and not p.suffix) if directory.is_dir() else []
    if not files:
        raise MissingTextSourceError(
            f"no fortune files in {directory}: install them with `apt-get install fortunes` (or `make setup`)"
        )
    for path in files:
        yield from path.read_text(encoding="utf-8", errors="ignore").split("\n%\n")


def speakable_sentences(entries: Iterable[str], dictionary: frozenset[str]) -> list[str]:
    """Sentences of MIN_WORDS..MAX_WORDS dictionary words with no digits or symbols, deduplicated and sorted."""
    found: set[str] = set()
    for entry in entries:
        prose = entry.split("--")[0]  # drop attributions ("\t\t-- Mark Twain")
        for raw in _SENTENCE_END.split(" ".join(prose.split())):
            sentence = _clean_sentence(raw, dictionary)
            if sentence:
                found.add(sentence)
    return sorted(found)


def _clean_sentence(raw: str, dictionary: frozenset[str]) -> str | None:
    raw = raw.strip(" \"'")
    if not _ALLOWED.match(raw) or not _is_whole_sentence(raw):
        return None
    text = normalise(raw)
    words = text.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS or not all(w in dictionary for w in words):
        return None
    return text


def _is_whole_sentence(raw: str) -> bool:
    """Starts with a capital, ends with . ! or ?, and the full stop is not an abbreviation's (Mr. Rev.)."""
    if not raw[0].isupper() or raw[-1] not in ".!?" or raw.isupper():
        return False
    last = raw.rstrip(".!?").split()[-1]
    return not (raw.endswith(".") and last[0].isupper() and len(last) <= 4)


def read_text_file(path: Path) -> list[str]:
    """User-supplied sentences, one per line, normalised; lines that are not speakable are dropped."""
    lines = (normalise(line) for line in path.read_text(encoding="utf-8").splitlines())
    return sorted({line for line in lines if line and is_transcript(line)})
