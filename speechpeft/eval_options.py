"""Options of `speechpeft eval` (a light module: the CLI imports it for --help)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from speechpeft.errors import InputError
from speechpeft.leaderboard.normalize import NORMALIZER, NormalizerName
from speechpeft.options import help_text as _help
from speechpeft.train_options import check_streaming


@dataclass(frozen=True)
class EvalOptions:
    """Score a trained adapter on a dataset split."""

    adapter: str = field(metadata=_help("adapter directory written by `speechpeft train`, or a store name"))
    store: Path | None = field(default=None, metadata=_help("adapter store (default: $SPEECHPEFT_ADAPTERS)"))
    dataset: str | None = field(
        default=None, metadata=_help("corpus directory, Hub-format folder or Hub id (default: the one the adapter "
                                     "trained on, in the config it trained on)")
    )  # fmt: skip
    dataset_config: str | None = field(
        default=None, metadata=_help("the dataset's config, for one that has several (Common Voice en, FLEURS en_us)")
    )
    streaming: bool = field(
        default=False,
        metadata=_help("stream the split and score its first --max-utterances rows (a large Hub dataset)"),
    )
    split: str = field(default="test", metadata=_help("split to score"))
    out: Path | None = field(default=None, metadata=_help("where to write outputs (default: ADAPTER/eval/SPLIT)"))
    batch_size: int = field(default=16, metadata=_help("utterances per batch"))
    max_utterances: int | None = field(default=None, metadata=_help("score at most this many utterances"))
    precision: str | None = field(default=None, metadata=_help("fp32, bf16 or int8 (default: as trained)"))
    window_seconds: float | None = field(
        default=None, metadata=_help("Whisper: encoder window for clips that fit it (default: as trained)")
    )
    normalizer: NormalizerName | None = field(
        default=None,
        metadata=_help(f"text normaliser before WER/CER: {NORMALIZER} (the leaderboard's), whisper-english or "
                       f"whisper-basic (Whisper's own, from transformers); default: the one the adapter validated "
                       f"with ({NORMALIZER} for adapters trained before --normalizer)"),
    )  # fmt: skip
    backbone: str | None = field(
        default=None,
        metadata=_help("the backbone to load the adapter on (default: the one it trained on); for a backbone "
                       "directory that moved: the same weights elsewhere"),
    )  # fmt: skip

    def __post_init__(self) -> None:
        if self.batch_size < 1 or (self.max_utterances is not None and self.max_utterances < 1):
            raise InputError("--batch-size and --max-utterances must be positive")
        check_streaming(self.streaming, self.max_utterances)
        if self.precision not in (None, "fp32", "bf16", "int8", "auto"):
            raise InputError("--precision must be fp32, bf16, int8 or auto")
