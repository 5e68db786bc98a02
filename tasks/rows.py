"""Which rows a task can use, and an account of every row it leaves out, by reason.

Nothing is dropped or cut silently: `sift` keeps the rows that pass a task's rules and counts the others
under the first rule they fail (`LeftOut`, reason -> rows). `speechpeft train` writes the counts into the
adapter record and `speechpeft eval` into `summary.json`; both print them with `warn_left_out`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import datasets

from speechpeft.leaderboard.normalize import NORMALIZER, normalizer

logger = logging.getLogger(__name__)
LeftOut = dict[str, int]  # reason -> rows left out for it

REASONS = {  # what each reason means, for the warning (plus "empty_<role>", see `describe`)
    "audio_too_long": "audio longer than the model can take whole",
    "text_too_long": "text longer than the model's text positions",
    "text_normalises_to_nothing": f"transcript empty after the text normaliser ({NORMALIZER} unless --normalizer)",
    "label_not_in_map": "label missing from the adapter's label map",
    "timing_length_mismatch": "libespeak-ng's resynthesis is not exactly as long as the clip",
    "no_phoneme_timings": "libespeak-ng could not time the utterance, or said a phoneme missing from the inventory",
    "not_an_espeak_ng_clip": "not rendered by espeak-ng: no exact phoneme durations to learn from",
    "audio_not_16_khz": "audio not at 16 kHz (the vocoder's rate)",
    "audio_shorter_than_segment": "audio shorter than one training segment of the vocoder",
}


@dataclass(frozen=True)
class Rule:
    """One reason to leave a row out: `fails(*values of columns)` is True for a row the task cannot use."""

    reason: str
    columns: tuple[str, ...]
    fails: Callable[..., bool]


def sift(rows: datasets.Dataset, rules: list[Rule]) -> tuple[datasets.Dataset, LeftOut]:
    """The rows that pass every rule, and how many were left out under the first rule each one failed."""
    columns = list(dict.fromkeys(c for rule in rules for c in rule.columns))
    if not columns or not len(rows):
        return rows, {}
    kept, left_out = [], Counter()
    for index, row in enumerate(rows.select_columns(columns)):
        reason = next((r.reason for r in rules if r.fails(*(row[c] for c in r.columns))), None)
        if reason is None:
            kept.append(index)
        else:
            left_out[reason] += 1
    return (rows.select(kept) if left_out else rows), dict(left_out)


def combine(*counts: LeftOut) -> LeftOut:
    """Counts of several sifts of the same rows, added up by reason."""
    return dict(sum((Counter(c) for c in counts), Counter()))


def describe(reason: str) -> str:
    """What a reason means, in words."""
    if reason.startswith("empty_"):
        return f"{reason.removeprefix('empty_')} missing, empty or punctuation only"
    return REASONS.get(reason, reason)


def warn_left_out(left_out: LeftOut, kept: int, what: str) -> None:
    """One warning naming each reason and its count, e.g. `left out 3 test rows (21 kept): audio_too_long 3 (...)`."""
    if left_out:
        reasons = "; ".join(f"{reason} {count} ({describe(reason)})" for reason, count in sorted(left_out.items()))
        logger.warning("left out %d %s rows (%d kept): %s", sum(left_out.values()), what, kept, reasons)


def has_no_words(value: Any) -> bool:
    """A missing value, or one without a letter or digit (empty, blank or punctuation only)."""
    return value is None or not any(character.isalnum() for character in str(value))


def empty(role: str) -> Rule:
    """A row whose `role` column (a label or transcript) has no letter or digit: `empty_<role>`."""
    return Rule(f"empty_{role}", (role,), has_no_words)


def normalises_to_nothing(name: str = NORMALIZER) -> Rule:
    """A transcript with no words after the normaliser `name` (`leaderboard.normalize.NormalizerName`) cannot be a
    WER or CER reference."""
    normalize = normalizer(name)
    return Rule("text_normalises_to_nothing", ("text",), lambda text: not normalize(text))


def text_longer_than(tokens: int, token_ids: Callable[[str], list[int]]) -> Rule:
    """Text whose `token_ids` exceed `tokens` positions."""
    return Rule("text_too_long", ("text",), lambda text: len(token_ids(text)) > tokens)


def audio_longer_than(samples: int, rate: int) -> Rule:
    """Audio of more than `samples` samples at `rate` Hz (length read from the file header where it can be)."""
    return Rule("audio_too_long", ("audio",), lambda audio: round(audio_seconds(audio) * rate) > samples)


def window_samples(extractor: Any) -> int | None:
    """The fixed window, in samples, that Whisper's extractor pads or cuts every clip to; None for waveform
    extractors (wav2vec2, HuBERT, WavLM, SpeechT5), which take any length."""
    return getattr(extractor, "n_samples", None)


def fixed_window(extractor: Any) -> list[Rule]:
    """Clips longer than a fixed-window extractor's window (it would cut them) are left out; no rule otherwise."""
    samples = window_samples(extractor)
    return [] if samples is None else [audio_longer_than(samples, extractor.sampling_rate)]


def audio_seconds(audio: Any) -> float:
    """A clip's duration in seconds: from the container header (no decoding) when it has one, else decoded."""
    metadata = audio.metadata
    seconds = metadata.duration_seconds_from_header or metadata.duration_seconds
    return seconds if seconds is not None else audio.get_all_samples().duration_seconds
