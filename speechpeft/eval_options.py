"""Options of `speechpeft eval` (a light module: the CLI imports it for --help)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from speechpeft.errors import InputError
from speechpeft.options import help_text as _help


@dataclass(frozen=True)
class EvalOptions:
    """Score a trained adapter on a dataset split."""

    adapter: str = field(metadata=_help("adapter directory written by `speechpeft train`, or a store name"))
    store: Path | None = field(default=None, metadata=_help("adapter store (default: $SPEECHPEFT_ADAPTERS)"))
    dataset: str | None = field(default=None, metadata=_help("dataset (default: the one the adapter trained on)"))
    split: str = field(default="test", metadata=_help("split to score"))
    out: Path | None = field(default=None, metadata=_help("where to write outputs (default: ADAPTER/eval/SPLIT)"))
    batch_size: int = field(default=16, metadata=_help("utterances per batch"))
    max_utterances: int | None = field(default=None, metadata=_help("score at most this many utterances"))
    precision: str | None = field(default=None, metadata=_help("fp32, bf16 or int8 (default: as trained)"))
    window_seconds: float | None = field(
        default=None, metadata=_help("Whisper: encoder window for clips that fit it (default: as trained)")
    )

    def __post_init__(self) -> None:
        if self.batch_size < 1 or (self.max_utterances is not None and self.max_utterances < 1):
            raise InputError("--batch-size and --max-utterances must be positive")
        if self.precision not in (None, "fp32", "bf16", "int8", "auto"):
            raise InputError("--precision must be fp32, bf16, int8 or auto")
