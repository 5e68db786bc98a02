"""Options of `speechpeft backbones pretrain ...` (a light module: the CLI imports it for --help)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from speechpeft.errors import InputError
from speechpeft.options import help_text as _help
from speechpeft.tasks.corpus.voices import VOICES


def cpu_has_native_bf16() -> bool:
    """Without AVX512-BF16 or AMX, bf16 matmul is emulated: 3.6x slower than fp32 on a 2-core Xeon here."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


@dataclass(frozen=True)
class PretrainOptions:
    """What every pretraining recipe takes; a recipe's options add their own fields and defaults."""

    corpus: Path = field(metadata=_help("corpus from `speechpeft data synth` (its pretrain and test splits)"))
    out: Path = field(metadata=_help("run directory: features, checkpoints, curves and the exported model"))
    steps: int = field(default=6000, metadata=_help("optimisation steps"))
    batch_size: int = field(default=24, metadata=_help("utterances per step"))
    lr: float = field(default=1.5e-3, metadata=_help("peak learning rate (AdamW), after linear warm-up"))
    warmup: int = field(default=300, metadata=_help("warm-up steps"))
    layers: int = field(default=4, metadata=_help("encoder and decoder layers (each)"))
    heads: int = field(default=4, metadata=_help("attention heads"))
    ffn: int = field(default=1024, metadata=_help("feed-forward width"))
    eval_every: int = field(default=250, metadata=_help("steps between evaluations (and checkpoints)"))
    eval_utterances: int = field(default=96, metadata=_help("held-out utterances per evaluation"))
    seed: int = field(default=0, metadata=_help("seed for initialisation and batches"))
    threads: int = field(default_factory=lambda: os.cpu_count() or 1, metadata=_help("CPU threads"))
    precision: str = field(
        default="auto", metadata=_help("bf16 (autocast), fp32, or auto: bf16 where the CPU has native bf16 matmul")
    )

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "bf16", "fp32"):
            raise InputError("--precision must be auto, bf16 or fp32")
        if self.precision == "auto":
            object.__setattr__(self, "precision", "bf16" if cpu_has_native_bf16() else "fp32")
        if min(self.steps, self.batch_size, self.eval_every, self.warmup, self.eval_utterances) < 1:
            raise InputError("--steps, --batch-size, --eval-every, --warmup and --eval-utterances must be positive")
        if not 0 < self.lr < math.inf:  # argparse reads "nan" and "inf"
            raise InputError(f"--lr {self.lr}: the learning rate must be a positive number")


@dataclass(frozen=True)
class WhisperPretrainOptions(PretrainOptions):
    """Options of `speechpeft backbones pretrain tiny-whisper`."""

    chunk_seconds: int = field(default=6, metadata=_help("encoder window; longer clips are left out"))
    d_model: int = field(default=256, metadata=_help("model width"))
    vocab_size: int = field(default=512, metadata=_help("BPE vocabulary (256 bytes + merges + specials)"))
    ctc_weight: float = field(default=0.3, metadata=_help("weight of the auxiliary CTC loss"))
    curriculum_steps: int = field(default=1500, metadata=_help("steps over which the longest clip grows"))
    curriculum_start_seconds: float = field(default=2.5, metadata=_help("longest clip at step 0"))
    init_from: Path | None = field(
        default=None,
        metadata=_help("continue from this exported model (a run's model/ dir): its weights, shape and tokenizer"),
    )
    freq_masks: int = field(default=0, metadata=_help("SpecAugment: mel-band masks per clip (up to 10 bins each)"))
    time_masks: int = field(default=0, metadata=_help("SpecAugment: time masks per clip (up to 5%% of it each)"))
    label_smoothing: float = field(default=0.0, metadata=_help("label smoothing of the decoder's cross-entropy"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if min(self.freq_masks, self.time_masks) < 0 or not 0 <= self.label_smoothing < 1:
            raise InputError("--freq-masks and --time-masks must be >= 0, --label-smoothing in [0, 1)")
        if self.init_from is not None and not (Path(self.init_from) / "config.json").exists():
            raise InputError(
                f"--init-from {self.init_from}: no config.json there; point it at a finished run's model/ directory"
            )


@dataclass(frozen=True)
class SpeechT5PretrainOptions(PretrainOptions):
    """Options of `speechpeft backbones pretrain tiny-speecht5`."""

    steps: int = field(default=4000, metadata=_help("optimisation steps"))
    batch_size: int = field(default=16, metadata=_help("utterances per step"))
    lr: float = field(default=1e-3, metadata=_help("peak learning rate (AdamW), after linear warm-up"))
    eval_utterances: int = field(default=16, metadata=_help("held-out sentences per evaluation"))
    voice: str = field(default="espeak-en-us", metadata=_help("the one voice to learn (a pretrain voice)"))
    hidden: int = field(default=256, metadata=_help("model width"))
    reduction_factor: int = field(default=2, metadata=_help("mel frames predicted per decoder step"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.reduction_factor < 1:
            raise InputError("--reduction-factor must be positive")


@dataclass(frozen=True)
class FastSpeech2PretrainOptions(PretrainOptions):
    """Options of `speechpeft backbones pretrain tiny-fastspeech2` (backbones/pretrain/fastspeech2_plan.md §7)."""

    corpus: Path = field(metadata=_help("corpus from `speechpeft data synth`: its pretrain rows spoken by --voice"))
    steps: int = field(default=10_000, metadata=_help("optimisation steps"))
    batch_size: int = field(default=16, metadata=_help("utterances per step (drawn from a bucket of similar lengths)"))
    lr: float = field(default=1e-3, metadata=_help("peak learning rate (AdamW), after linear warm-up"))
    warmup: int = field(default=500, metadata=_help("warm-up steps"))
    layers: int = field(default=4, metadata=_help("Conformer layers of the encoder and of the decoder (each)"))
    heads: int = field(default=2, metadata=_help("attention heads"))
    ffn: int = field(default=384, metadata=_help("feed-forward width (a linear FFN: kernel 1)"))
    eval_every: int = field(default=500, metadata=_help("steps between evaluations (and checkpoints)"))
    eval_utterances: int = field(
        default=16, metadata=_help("sentences held out of the pretrain split for the teacher-forced mel L1")
    )
    voice: str = field(default="espeak-en-us", metadata=_help("the one espeak-ng voice to learn (a pretrain voice)"))
    hidden: int = field(default=128, metadata=_help("model width (128: 3.4 M parameters, a 41 MB checkpoint)"))
    decoder_kernel: int = field(default=15, metadata=_help("kernel of the decoder's Conformer convolution (odd)"))
    dropout: float = field(default=0.1, metadata=_help("dropout of the encoder and decoder layers"))
    feature_jobs: int = field(
        default_factory=lambda: os.cpu_count() or 1,
        metadata=_help("libespeak-ng processes at once while the features are computed (once per run)"),
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        espeak = [v.id for v in VOICES if v.engine == "espeak-ng"]
        if self.voice not in espeak:
            raise InputError(f"--voice {self.voice}: timings come from espeak-ng; choose one of {', '.join(espeak)}")
        if min(self.layers, self.heads, self.ffn, self.hidden, self.feature_jobs) < 1:
            raise InputError("--layers, --heads, --ffn, --hidden and --feature-jobs must be positive")
        if self.hidden % self.heads:
            raise InputError(f"--hidden {self.hidden} must be a multiple of --heads {self.heads}")
        if self.decoder_kernel < 1 or self.decoder_kernel % 2 == 0:
            raise InputError(f"--decoder-kernel {self.decoder_kernel}: must be a positive odd number")
        if not 0 <= self.dropout < 1:  # also refuses nan
            raise InputError(f"--dropout {self.dropout}: must be at least 0 and below 1")


MIN_SEGMENT_FRAMES = 8  # 2048 samples: the MR-STFT loss's longest FFT, so every resolution sees whole frames
HIFIGAN_UPSAMPLING = 16  # the generator halves its channels at each of its 4 upsampling layers


@dataclass(frozen=True)
class HifiGanPretrainOptions(PretrainOptions):
    """Options of `speechpeft backbones pretrain tiny-hifigan`: a HiFi-GAN generator (https://arxiv.org/abs/2010.05646)
    trained on random segments with a reconstruction loss only."""

    corpus: Path = field(metadata=_help("corpus from `speechpeft data synth`: its pretrain recordings by --voice"))
    steps: int = field(default=10_000, metadata=_help("optimisation steps (about 1.8 s each on one core)"))
    batch_size: int = field(default=16, metadata=_help("segments per step, each from a different utterance"))
    lr: float = field(default=5e-4, metadata=_help("peak learning rate (AdamW), after linear warm-up"))
    warmup: int = field(default=500, metadata=_help("warm-up steps"))
    layers: int = field(default=4, metadata=_help("not used by tiny-hifigan: its size is --channels"))
    heads: int = field(default=4, metadata=_help("not used by tiny-hifigan: its size is --channels"))
    ffn: int = field(default=1024, metadata=_help("not used by tiny-hifigan: its size is --channels"))
    eval_every: int = field(default=500, metadata=_help("steps between evaluations (and checkpoints)"))
    eval_utterances: int = field(
        default=16, metadata=_help("sentences held out of the pretrain split, vocoded whole for the held-out mel L1")
    )
    voice: str = field(default="espeak-en-us", metadata=_help("the voice whose recordings to learn"))
    channels: int = field(
        default=128, metadata=_help("generator width after its input convolution, halved by each of its 4 upsamplings")
    )
    segment_frames: int = field(
        default=32, metadata=_help("mel frames per training segment (x 256 samples); shorter utterances are left out")
    )
    mel_weight: float = field(
        default=45.0, metadata=_help("weight of the log10-mel L1 beside the multi-resolution STFT loss (HiFi-GAN: 45)")
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        voices = [v.id for v in VOICES]
        if self.voice not in voices:
            raise InputError(f"--voice {self.voice}: not a corpus voice; choose one of {', '.join(voices)}")
        if self.channels < HIFIGAN_UPSAMPLING or self.channels % HIFIGAN_UPSAMPLING:
            raise InputError(f"--channels {self.channels}: must be a positive multiple of {HIFIGAN_UPSAMPLING} "
                             "(halved at each of 4 upsamplings), e.g. 128")  # fmt: skip
        if self.segment_frames < MIN_SEGMENT_FRAMES:
            raise InputError(f"--segment-frames {self.segment_frames}: must be at least {MIN_SEGMENT_FRAMES} "
                             "(2048 samples, the STFT loss's longest window), e.g. 32")  # fmt: skip
        if not 0 <= self.mel_weight < math.inf:  # also refuses nan
            raise InputError(f"--mel-weight {self.mel_weight}: must be a number at least 0, e.g. 45")
        for name in ("layers", "heads", "ffn"):  # PretrainOptions' transformer shape: HiFi-GAN has none
            if getattr(self, name) != PretrainOptions.__dataclass_fields__[name].default:
                raise InputError(f"--{name} does not apply to tiny-hifigan: leave it out and set --channels instead")
