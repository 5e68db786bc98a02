"""Which metric ranks each task on the leaderboard, which way is better, and the task's other columns.

Every metric here is computed from per-utterance records (`predictions.jsonl`), so the leaderboard can
score any subset of utterances (one voice) and resample them (bootstrap intervals) with the same
definition the task uses for the whole split (`leaderboard.stats`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Direction = Literal["min", "max"]


@dataclass(frozen=True)
class Headline:
    metric: str  # the column the leaderboard ranks by
    direction: Direction  # "min": lower is better (WER, MCD); "max": higher is better (accuracy, MOS)
    label: str  # how reports name it
    others: tuple[str, ...]  # the task's other per-utterance metrics, reported with intervals too


HEADLINES: dict[str, Headline] = {
    "asr": Headline("wer", "min", "WER", ("cer",)),
    "tts": Headline("ovrl_mos", "max", "DNSMOS OVRL (MOS proxy)", ("cer", "mcd", "sig_mos", "bak_mos", "p808_mos")),
    "intent": Headline("accuracy", "max", "accuracy", ()),
    "keyword": Headline("accuracy", "max", "accuracy", ()),
    "speaker": Headline("accuracy", "max", "accuracy", ()),
}

DIRECTIONS: dict[str, Direction] = {"wer": "min", "cer": "min", "mcd": "min"}  # every other metric: higher is better


def direction(metric: str) -> Direction:
    """Whether lower ("min") or higher ("max") values of `metric` are better."""
    return DIRECTIONS.get(metric, "max")
