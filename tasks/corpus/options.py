"""Options of `speechpeft data synth`, validated on construction (kept light: no heavy imports)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from speechpeft.errors import InputError
from speechpeft.tasks.corpus.plan import KINDS, SPLITS
from speechpeft.tasks.corpus.voices import VOICES, Voice


@dataclass(frozen=True)
class SynthOptions:
    """Options of `speechpeft data synth`; each field's comment is its --help text."""

    out: Path = field(metadata={"help": "output directory (loadable with datasets.load_from_disk)"})
    utterances: int | None = field(default=None, metadata={"help": "number of utterances to synthesise"})
    hours: float | None = field(default=None, metadata={"help": "or: estimated hours of audio to synthesise"})
    seed: int = field(default=0, metadata={"help": "seed for texts, voices, rates and splits"})
    voices: tuple[str, ...] = field(
        default=(), metadata={"help": "voice ids or groups (pretrain, adapt) to use; default: all"}
    )
    kinds: tuple[str, ...] = field(default=("sentence=0.6", "command=0.3", "keyword=0.1"), metadata={
        "help": "share of each text kind, as kind=weight"})  # fmt: skip
    splits: tuple[str, ...] = field(default=("pretrain=0.7", "adapt=0.2", "test=0.1"), metadata={
        "help": "share of each split, as split=weight"})  # fmt: skip
    test_fraction: float = field(default=0.1, metadata={"help": "fraction of texts held out for the test split"})
    text_file: Path | None = field(
        default=None, metadata={"help": "sentences to speak, one per line (default: fortunes)"}
    )
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1, metadata={"help": "parallel engine processes"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing dataset or partial build in --out"})
    keep_clips: bool = field(default=False, metadata={"help": "keep the per-utterance FLAC files after saving"})

    def __post_init__(self) -> None:
        if (self.utterances is None) == (self.hours is None):
            raise InputError("give exactly one of --utterances N or --hours H")
        hours_fine = self.hours is None or 0 < self.hours < math.inf  # argparse reads "nan" and "inf"
        if (self.utterances is not None and self.utterances < 1) or not hours_fine:
            raise InputError("--utterances and --hours must be positive")
        if self.jobs < 1:
            raise InputError("--jobs must be at least 1")
        if not 0 < self.test_fraction < 1:
            raise InputError("--test-fraction must be between 0 and 1")
        parse_weights(self.kinds, KINDS, "--kinds")
        parse_weights(self.splits, SPLITS, "--splits")
        self.selected_voices()

    def selected_voices(self) -> tuple[Voice, ...]:
        if not self.voices:
            return VOICES
        chosen = [v for v in VOICES if v.id in self.voices or v.group in self.voices]
        unknown = set(self.voices) - {v.id for v in VOICES} - {"pretrain", "adapt"}
        if unknown or not chosen:
            valid = ", ".join(["pretrain", "adapt", *(v.id for v in VOICES)])
            raise InputError(f"unknown voices {sorted(unknown)} in --voices; valid: {valid}")
        return tuple(chosen)

    def plan_key(self) -> dict:
        """Everything the plan depends on: a partial build resumes only if this matches."""
        keys = ("utterances", "hours", "seed", "voices", "kinds", "splits", "test_fraction", "text_file")
        return json.loads(json.dumps({k: asdict(self)[k] for k in keys}, default=str))


def parse_weights(items: tuple[str, ...], valid: tuple[str, ...], flag: str) -> dict[str, float]:
    weights = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            weights[name] = float(value)
        except ValueError:
            raise InputError(f"{flag} expects name=weight, got {item!r}") from None
        if name not in valid or not 0 <= weights[name] < math.inf:
            raise InputError(f"{flag}: {item!r} must be one of {valid} with a weight >= 0")
    if sum(weights.values()) <= 0:
        raise InputError(f"{flag}: at least one weight must be positive")
    return weights
