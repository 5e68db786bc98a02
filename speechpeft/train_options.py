"""Options of `speechpeft train` (a light module: the CLI imports it for --help)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from speechpeft.errors import InputError
from speechpeft.options import help_text as _help

if TYPE_CHECKING:  # the CLI imports this module for --help: no torch at import time
    from speechpeft.adapters.base import AdapterOptions


@dataclass(frozen=True)
class TrainOptions:
    """Train one adapter for one task on a frozen backbone."""

    task: str = field(metadata=_help("asr, tts, intent, keyword or speaker"))
    out: Path | None = field(default=None, metadata=_help("adapter directory to write (the best by validation)"))
    name: str | None = field(
        default=None, metadata=_help("or: a name in the adapter store (e.g. asr/lora-flite-awb) instead of --out")
    )
    store: Path | None = field(default=None, metadata=_help("adapter store (default: $SPEECHPEFT_ADAPTERS)"))
    method: str = field(
        default="lora",
        metadata=_help("adapter method: lora, adalora, prefix, bottleneck, frozen (baseline) or full (baseline)"),
    )
    backbone: str | None = field(
        default=None,
        metadata=_help("built-in name, directory or Hub id (default: speechpeft/tiny-speecht5 for tts, "
                       "openai/whisper-tiny.en otherwise)"),
    )  # fmt: skip
    dataset: str = field(default="data/corpus", metadata=_help("corpus directory, Hub-format folder or Hub id"))
    split: str = field(default="adapt", metadata=_help("training split"))
    validation_split: str | None = field(
        default=None, metadata=_help("split for model selection (default: a held-out slice of --split)")
    )
    validation_fraction: float = field(default=0.1, metadata=_help("share of --split held out for validation"))
    max_utterances: int | None = field(default=None, metadata=_help("use at most this many training utterances"))
    precision: str = field(default="auto", metadata=_help("fp32, bf16, int8 or auto (bf16 on CUDA, else fp32)"))
    window_seconds: float | None = field(
        default=None,
        metadata=_help("Whisper: encoder window for clips that fit it, e.g. 6 (default: the backbone's own, 30 s "
                       "for OpenAI's); much faster on a CPU, longer clips still get the full window"),
    )  # fmt: skip
    classifier: str = field(
        default="pooled",
        metadata=_help("intent, keyword, speaker: pooled (a new head over the encoder) or decoder (an encoder-decoder "
                       "such as Whisper writes the label as text; scored over the label map)"),
    )  # fmt: skip
    steps: int = field(default=300, metadata=_help("optimisation steps"))
    batch_size: int = field(default=8, metadata=_help("utterances per step"))
    lr: float = field(default=1e-3, metadata=_help("peak learning rate (AdamW, linear decay)"))
    rank: int = field(default=8, metadata=_help("LoRA rank (AdaLoRA: the average rank it prunes to)"))
    prefix_length: int = field(default=16, metadata=_help("prefix: learned key/value positions per layer"))
    prefix_encoder: bool = field(default=False, metadata=_help("prefix: prefix the encoder's self-attention too"))
    bottleneck_style: str = field(
        default="pfeiffer", metadata=_help("bottleneck: pfeiffer (after FFN) or houlsby (after attention and FFN)")
    )
    reduction_factor: int = field(default=16, metadata=_help("bottleneck: d_model / bottleneck width"))
    gradient_checkpointing: bool = field(
        default=False, metadata=_help("recompute activations in the backward pass: less memory, slower steps")
    )
    eval_every: int = field(default=50, metadata=_help("steps between validations (and best-checkpoint saves)"))
    patience: int = field(default=4, metadata=_help("stop after this many validations without improvement"))
    seed: int = field(default=0, metadata=_help("seed for initialisation, data order and the validation slice"))

    def __post_init__(self) -> None:
        if self.backbone is None:
            from speechpeft.backbones.builtin import default_backbone

            object.__setattr__(self, "backbone", default_backbone(self.task))
        if (self.out is None) == (self.name is None):
            raise InputError("give the adapter either a directory (--out DIR) or a store name (--name TASK/NAME)")
        if self.name is not None:
            from speechpeft.store import adapter_path

            try:
                object.__setattr__(self, "out", adapter_path(self.name, self.store))
            except InputError as error:  # name the flag the user typed
                raise InputError(f"--name: {error}") from None
        _check_destination(self.out, self.validation_split == self.split)
        if min(self.steps, self.batch_size, self.eval_every, self.patience, self.rank) < 1:
            raise InputError("--steps, --batch-size, --eval-every, --patience and --rank must be positive")
        self.adapter_options()  # the method's own checks, before any data or weights load
        if not 0 < self.validation_fraction < 1:
            raise InputError("--validation-fraction must be between 0 and 1")
        if self.window_seconds is not None and not 0 < self.window_seconds < math.inf:  # argparse reads "nan"
            raise InputError("--window-seconds must be positive (leave it out for the backbone's own window)")
        if not 0 < self.lr < math.inf:
            raise InputError(f"--lr {self.lr}: the learning rate must be a positive number")
        if self.classifier not in ("pooled", "decoder"):
            raise InputError("--classifier must be pooled or decoder")
        if self.precision not in ("fp32", "bf16", "int8", "auto"):
            raise InputError("--precision must be fp32, bf16, int8 or auto")

    def backbone_kind(self, task_kind: str) -> str:
        """The backbone kind to load for a task of `task_kind` (see `backbone_kind`)."""
        return backbone_kind(task_kind, self.classifier)

    def adapter_options(self) -> AdapterOptions:
        """The knobs the adapter method reads (it validates them)."""
        from speechpeft.adapters.base import AdapterOptions

        return AdapterOptions(
            rank=self.rank, steps=self.steps, prefix_length=self.prefix_length, prefix_encoder=self.prefix_encoder,
            bottleneck_style=self.bottleneck_style, reduction_factor=self.reduction_factor,
        )  # fmt: skip


def backbone_kind(task_kind: str, classifier: str | None) -> str:
    """The backbone kind to load for a task of `task_kind`: a decoder classifier loads the ASR model."""
    return "asr" if task_kind == "classify" and classifier == "decoder" else task_kind


def _check_destination(out: Path, validating_on_training_rows: bool) -> None:
    """Refuse to overwrite a directory that is not an adapter, and validation on the training rows."""
    from speechpeft.adapter_dir import RECORD

    if out.exists() and any(out.iterdir()) and not (out / RECORD).exists():
        raise InputError(f"--out {out} exists and is not an adapter directory: choose a new or empty directory")
    if validating_on_training_rows:
        raise InputError("--validation-split is the training split: pick another split, or leave it out to hold "
                         "out a slice of the training split")  # fmt: skip
