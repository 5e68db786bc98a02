"""Options of `speechpeft backbones pretrain tiny-whisper` (a light module: the CLI imports it for --help)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def cpu_has_native_bf16() -> bool:
    """Without AVX512-BF16 or AMX, bf16 matmul is emulated: 3.6x slower than fp32 on a 2-core Xeon here."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass(frozen=True)
class WhisperPretrainOptions:
    """Options of `speechpeft backbones pretrain tiny-whisper`."""

    corpus: Path = field(metadata={"help": "corpus from `speechpeft data synth` (its pretrain and test splits)"})
    out: Path = field(metadata={"help": "run directory: features, checkpoints, curves and the exported model"})
    steps: int = field(default=6000, metadata={"help": "optimisation steps"})
    batch_size: int = field(default=24, metadata={"help": "utterances per step"})
    lr: float = field(default=1.5e-3, metadata={"help": "peak learning rate (AdamW), after linear warm-up"})
    warmup: int = field(default=300, metadata={"help": "warm-up steps"})
    chunk_seconds: int = field(default=6, metadata={"help": "encoder window; longer clips are left out"})
    d_model: int = field(default=256, metadata={"help": "model width"})
    layers: int = field(default=4, metadata={"help": "encoder and decoder layers (each)"})
    heads: int = field(default=4, metadata={"help": "attention heads"})
    ffn: int = field(default=1024, metadata={"help": "feed-forward width"})
    vocab_size: int = field(default=512, metadata={"help": "BPE vocabulary (256 bytes + merges + specials)"})
    ctc_weight: float = field(default=0.3, metadata={"help": "weight of the auxiliary CTC loss"})
    curriculum_steps: int = field(default=1500, metadata={"help": "steps over which the longest clip grows"})
    curriculum_start_seconds: float = field(default=2.5, metadata={"help": "longest clip at step 0"})
    eval_every: int = field(default=250, metadata={"help": "steps between evaluations (and checkpoints)"})
    eval_utterances: int = field(default=96, metadata={"help": "test utterances per voice group per evaluation"})
    seed: int = field(default=0, metadata={"help": "seed for initialisation and batches"})
    threads: int = field(default_factory=lambda: os.cpu_count() or 1, metadata={"help": "CPU threads"})
    precision: str = field(
        default="auto", metadata={"help": "bf16 (autocast), fp32, or auto: bf16 where the CPU has native bf16 matmul"}
    )

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError("--precision must be auto, bf16 or fp32")
        if self.precision == "auto":
            object.__setattr__(self, "precision", "bf16" if cpu_has_native_bf16() else "fp32")
        if min(self.steps, self.batch_size, self.eval_every, self.warmup) < 1:
            raise ValueError("--steps, --batch-size, --eval-every and --warmup must be positive")


@dataclass(frozen=True)
class SpeechT5PretrainOptions:
    """Options of `speechpeft backbones pretrain tiny-speecht5`."""

    corpus: Path = field(metadata={"help": "corpus from `speechpeft data synth` (its pretrain and test splits)"})
    out: Path = field(metadata={"help": "run directory: features, checkpoints, curves and the exported model"})
    voice: str = field(default="espeak-en-us", metadata={"help": "the one voice to learn (a pretrain voice)"})
    steps: int = field(default=4000, metadata={"help": "optimisation steps"})
    batch_size: int = field(default=16, metadata={"help": "utterances per step"})
    lr: float = field(default=1e-3, metadata={"help": "peak learning rate (AdamW), after linear warm-up"})
    warmup: int = field(default=300, metadata={"help": "warm-up steps"})
    hidden: int = field(default=256, metadata={"help": "model width"})
    layers: int = field(default=4, metadata={"help": "encoder and decoder layers (each)"})
    heads: int = field(default=4, metadata={"help": "attention heads"})
    ffn: int = field(default=1024, metadata={"help": "feed-forward width"})
    reduction_factor: int = field(default=2, metadata={"help": "mel frames predicted per decoder step"})
    eval_every: int = field(default=250, metadata={"help": "steps between evaluations (and checkpoints)"})
    eval_utterances: int = field(default=16, metadata={"help": "held-out sentences per evaluation"})
    seed: int = field(default=0, metadata={"help": "seed for initialisation and batches"})
    threads: int = field(default_factory=lambda: os.cpu_count() or 1, metadata={"help": "CPU threads"})
    precision: str = field(
        default="auto", metadata={"help": "bf16 (autocast), fp32, or auto: bf16 where the CPU has native bf16 matmul"}
    )

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "bf16", "fp32"):
            raise ValueError("--precision must be auto, bf16 or fp32")
        if self.precision == "auto":
            object.__setattr__(self, "precision", "bf16" if cpu_has_native_bf16() else "fp32")
        if min(self.steps, self.batch_size, self.eval_every, self.warmup, self.reduction_factor) < 1:
            raise ValueError("--steps, --batch-size, --eval-every, --warmup and --reduction-factor must be positive")
