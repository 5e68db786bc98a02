"""Options of `speechpeft train` (a light module: the CLI imports it for --help)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from speechpeft.errors import InputError
from speechpeft.leaderboard.normalize import NORMALIZER, NormalizerName
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
    dataset_config: str | None = field(
        default=None, metadata=_help("the dataset's config, for one that has several (Common Voice en, FLEURS en_us)")
    )
    streaming: bool = field(
        default=False,
        metadata=_help("stream the dataset and keep the first --max-utterances rows of each split read (a large Hub "
                       "dataset: nothing else is downloaded)"),
    )  # fmt: skip
    split: str = field(default="adapt", metadata=_help("training split"))
    validation_split: str | None = field(
        default=None, metadata=_help("split for model selection (default: a held-out slice of --split)")
    )
    validation_fraction: float = field(default=0.1, metadata=_help("share of --split held out for validation"))
    max_utterances: int | None = field(
        default=None,
        metadata=_help("use at most this many training utterances (a seeded sample); with --streaming, also the "
                       "rows read of each split, --validation-split's included"),
    )  # fmt: skip
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
    lora_alpha: float | None = field(
        default=None,
        metadata=_help("lora, adalora: scaling numerator; an update is scaled by alpha / rank (adalora: alpha / its "
                       "initial rank, 1.5 x --rank). Default 16 whatever the rank, so --rank 64 scales by 0.25; "
                       "alpha = 2 x rank is a common choice"),
    )  # fmt: skip
    lora_dropout: float | None = field(
        default=None, metadata=_help("lora, adalora: dropout on the adapter's input, 0 to <1 (default 0.05)")
    )
    target_modules: tuple[str, ...] | None = field(
        default=None,
        metadata=_help("lora, adalora: the linear layers to adapt, by name or the end of their path (q_proj v_proj "
                       "fc1, self_attn.q_proj), or all-linear (every one but the output layer and the task head); "
                       "default: the backbone's, see `speechpeft backbones info NAME`"),
    )  # fmt: skip
    modules_to_save: tuple[str, ...] | None = field(
        default=None,
        metadata=_help("lora, adalora: modules to train in full and save with the adapter, besides the task head "
                       "(e.g. encoder.layer_norm; a name takes every module whose path ends with it)"),
    )  # fmt: skip
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
    normalizer: NormalizerName = field(
        default=NORMALIZER,
        metadata=_help("asr, tts: text normaliser before the validation WER/CER: speechpeft-en-3 (the leaderboard's), "
                       "whisper-english or whisper-basic (Whisper's own, from transformers)"),
    )  # fmt: skip

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
        check_streaming(self.streaming, self.max_utterances)
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

        peft_knobs = {name: getattr(self, key) for key, name in PEFT_KNOBS.items() if getattr(self, key) is not None}
        _check_method_reads(self.method, peft_knobs)
        return AdapterOptions(
            rank=self.rank, steps=self.steps, prefix_length=self.prefix_length, prefix_encoder=self.prefix_encoder,
            bottleneck_style=self.bottleneck_style, reduction_factor=self.reduction_factor, **peft_knobs,
        )  # fmt: skip


# the PEFT flags of LoRA-like methods -> their `AdapterOptions` field; unset (None): the option's default
PEFT_KNOBS = {"lora_alpha": "alpha", "lora_dropout": "dropout", "target_modules": "target_modules",
              "modules_to_save": "modules_to_save"}  # fmt: skip


def _check_method_reads(method: str, knobs: dict[str, object]) -> None:
    """Refuse a PEFT flag that `method` would ignore (it changes nothing, and the user believes it did)."""
    if not knobs:
        return
    from speechpeft.adapters.catalog import METHODS

    if method not in METHODS:  # refused with the valid names when training starts
        return
    unread = [name for name in knobs if name not in METHODS.get(method).reads]
    if unread:
        flags = " and ".join(f"--{flag.replace('_', '-')}" for flag, name in PEFT_KNOBS.items() if name in unread)
        users = ", ".join(m for m in METHODS.names() if set(unread) <= METHODS.get(m).reads)
        raise InputError(f"{flags}: --method {method} does not use {'them' if len(unread) > 1 else 'it'} "
                         f"({users} do)")  # fmt: skip


def backbone_kind(task_kind: str, classifier: str | None) -> str:
    """The backbone kind to load for a task of `task_kind`: a decoder classifier loads the ASR model."""
    return "asr" if task_kind == "classify" and classifier == "decoder" else task_kind


def check_streaming(streaming: bool, max_utterances: int | None) -> None:
    """Refuse --streaming without a cap: the rows streamed are kept in memory as a map-style dataset (the usable-row
    filter and the seeded validation slice need one), so a streamed split is read up to --max-utterances rows."""
    if max_utterances is not None and max_utterances < 1:
        raise InputError("--max-utterances must be positive")
    if streaming and max_utterances is None:
        raise InputError("--streaming reads the first --max-utterances rows of each split: give --max-utterances N "
                         "(e.g. 2000), or leave --streaming out to download the whole dataset")  # fmt: skip


def _check_destination(out: Path, validating_on_training_rows: bool) -> None:
    """Refuse to overwrite a directory that is not an adapter, and validation on the training rows."""
    from speechpeft.adapter_dir import RECORD

    if out.exists() and any(out.iterdir()) and not (out / RECORD).exists():
        raise InputError(f"--out {out} exists and is not an adapter directory: choose a new or empty directory")
    if validating_on_training_rows:
        raise InputError("--validation-split is the training split: pick another split, or leave it out to hold "
                         "out a slice of the training split")  # fmt: skip
