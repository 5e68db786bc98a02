"""Pretrain `speechpeft/tiny-hifigan`: a small trained vocoder for the built-in TTS backbones' log10 mels.

HiFi-GAN's generator (Kong et al. 2020, https://arxiv.org/abs/2010.05646) as transformers' `SpeechT5HifiGan`
builds it, from scratch and without weight norm (nothing to remove at export). For now it learns by
reconstruction only, no discriminator: Parallel WaveGAN's multi-resolution STFT loss (Yamamoto et al. 2019,
https://arxiv.org/abs/1910.11480; auraloss's implementation and defaults) plus HiFi-GAN's mel L1, here between
log10 mels computed exactly as the backbones' `SpeechT5FeatureExtractor` does, but differentiably (`LogMel`).

Alignment (measured in tests/backbones/test_pretrain_hifigan.py): the extractor gives `1 + samples // 256` frames
and centres frame i's window on sample i * 256. The generator turns every frame into 256 samples, so frames
[s, s + K) are trained against samples [s * 256, (s + K) * 256): each block of 256 starts at its frame's centre
(a fixed half-hop offset the generator learns from the neighbouring frames), and a vocoded utterance lines up
with its clip from sample 0, running on silence for less than one hop past its end.

The clips and their mels are decoded once per run into `out/data/clips` (`build_clip_store`), in resumable
shards; the best step by held-out mel L1 is exported in float16 to `out/model`, loadable by
`speechpeft.backbones.vocoder.load_hifigan`.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import auraloss
import datasets
import numpy as np
import torch
import transformers

from speechpeft.backbones.pretrain.loop import Recipe, export_half, options_record, train, warmup_cosine
from speechpeft.backbones.pretrain.options import HifiGanPretrainOptions
from speechpeft.backbones.pretrain.voice_data import (
    check_plan,
    compute_shards,
    hold_out,
    kept_rows,
    voice_pretrain_rows,
)
from speechpeft.errors import InputError
from speechpeft.tasks.corpus.render import SAMPLE_RATE
from speechpeft.tasks.rows import LeftOut, combine, warn_left_out

MEL_BINS = 80
UPSAMPLE_RATES = (4, 4, 4, 4)  # their product is the mel hop: 256 samples = 16 ms
UPSAMPLE_KERNELS = (8, 8, 8, 8)  # kernel - rate even: each layer's output is exactly rate x its input
RESBLOCK_KERNELS = (3, 7, 11)
RESBLOCK_DILATIONS = ((1, 3, 5),) * 3
PCM_SCALE = 32768.0  # int16 full scale: the corpus stores 16-bit FLAC, so the cache is lossless
SHARD_ROWS = 256  # clips per resumable unit of work
NOT_16_KHZ, TOO_SHORT = "audio_not_16_khz", "audio_shorter_than_segment"
ROWS_FILE, OFFSETS_FILE = "rows.json", "offsets.npz"
AUDIO_FILE, MEL_FILE = "audio.npy", "mels.npy"  # int16 [samples], float32 [frames, 80]: memory-mapped


def hifigan_config(channels: int, extractor: transformers.SpeechT5FeatureExtractor,
                   record: dict | None = None) -> transformers.SpeechT5HifiGanConfig:  # fmt: skip
    """The generator: about 0.85 M parameters at 128 channels. `record` is kept in config.json under "speechpeft".

    Raises ValueError when the upsampling does not turn one mel frame into exactly one hop of samples."""
    if math.prod(UPSAMPLE_RATES) != extractor.sample_stride or extractor.num_mel_bins != MEL_BINS:
        raise ValueError(f"upsampling x{math.prod(UPSAMPLE_RATES)} != the extractor's hop {extractor.sample_stride}")
    if any((kernel - rate) % 2 for kernel, rate in zip(UPSAMPLE_KERNELS, UPSAMPLE_RATES, strict=True)):
        raise ValueError("an upsampling kernel minus its rate must be even for an exact output length")
    return transformers.SpeechT5HifiGanConfig(
        model_in_dim=MEL_BINS, sampling_rate=extractor.sampling_rate, upsample_initial_channel=channels,
        upsample_rates=list(UPSAMPLE_RATES), upsample_kernel_sizes=list(UPSAMPLE_KERNELS),
        resblock_kernel_sizes=list(RESBLOCK_KERNELS), resblock_dilation_sizes=[list(d) for d in RESBLOCK_DILATIONS],
        normalize_before=False, speechpeft=record or {},
    )  # fmt: skip


class LogMel(torch.nn.Module):
    """`SpeechT5FeatureExtractor(audio_target=...)` in torch, differentiable: waveform [B, samples] (16 kHz, [-1, 1])
    -> log10 mel [B, 1 + samples // 256, 80]: centred reflect-padded STFT (n_fft 1024, hop 256, its Hann window),
    magnitude, its slaney mel filters (80-7600 Hz), floored at its `mel_floor`."""

    def __init__(self, extractor: transformers.SpeechT5FeatureExtractor) -> None:
        super().__init__()
        self.register_buffer("window", torch.tensor(np.asarray(extractor.window), dtype=torch.float32))
        self.register_buffer("filters", torch.tensor(np.asarray(extractor.mel_filters), dtype=torch.float32))
        self.n_fft, self.hop, self.floor = extractor.n_fft, extractor.sample_stride, extractor.mel_floor

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        spectrum = torch.stft(waveform, self.n_fft, self.hop, win_length=len(self.window), window=self.window,
                              center=True, pad_mode="reflect", return_complex=True)  # fmt: skip
        mel = spectrum.abs().transpose(-1, -2) @ self.filters  # abs: zero gradient at zero, never NaN
        return torch.log10(mel.clamp(min=self.floor))


class ReconstructionLoss(torch.nn.Module):
    """MR-STFT loss (auraloss, Parallel WaveGAN's three resolutions: spectral convergence + log magnitude L1)
    plus `mel_weight` x the L1 between log10 mels (log10 units). Waveforms [B, samples]."""

    def __init__(self, extractor: transformers.SpeechT5FeatureExtractor, mel_weight: float) -> None:
        super().__init__()
        self.stft, self.mel, self.mel_weight = auraloss.freq.MultiResolutionSTFTLoss(), LogMel(extractor), mel_weight

    def forward(self, generated: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        generated, target = generated.float(), target.float()
        with torch.autocast(generated.device.type, enabled=False):  # STFTs and mel matmuls in fp32 under bf16
            mr_stft = self.stft(generated.unsqueeze(1), target.unsqueeze(1))
            mel_l1 = (self.mel(generated) - self.mel(target)).abs().mean()
        return {"loss": mr_stft + self.mel_weight * mel_l1, "mr_stft": mr_stft, "mel_l1": mel_l1}


@dataclass
class ClipStore:
    """Every kept clip end to end with its mels end to end, memory-mapped, and their offsets."""

    audio: np.ndarray  # [total samples] int16
    mels: np.ndarray  # [total frames, 80] float32 log10, the extractor's own
    sample_offsets: np.ndarray  # [N + 1]
    frame_offsets: np.ndarray  # [N + 1]
    ids: list[str]
    texts: list[str]
    left_out: LeftOut  # reason -> rows

    def __len__(self) -> int:
        return len(self.ids)

    def frames(self) -> np.ndarray:
        return np.diff(self.frame_offsets)

    def mel(self, index: int) -> np.ndarray:
        """[frames, 80] float32 log10 mel of clip `index`."""
        return np.array(self.mels[self.frame_offsets[index] : self.frame_offsets[index + 1]])  # a writable copy

    def clip(self, index: int, start: int = 0, length: int | None = None) -> np.ndarray:
        """float32 samples [length] of clip `index` from sample `start`, zeros past its end (silence)."""
        first, end = self.sample_offsets[index], self.sample_offsets[index + 1]
        length = end - first - start if length is None else length
        samples = np.asarray(self.audio[first + start : min(end, first + start + length)], dtype=np.float32)
        return np.pad(samples / PCM_SCALE, (0, length - len(samples)))


def decode_clip(audio) -> np.ndarray | str:
    """int16 samples of one corpus clip, or the reason it is left out."""
    decoded = audio.get_all_samples()
    if decoded.sample_rate != SAMPLE_RATE:
        return NOT_16_KHZ
    samples = np.round(decoded.data[0].numpy().astype(np.float64) * PCM_SCALE)
    return np.clip(samples, -PCM_SCALE, PCM_SCALE - 1).astype(np.int16)


def _save_shard(path: Path, rows: datasets.Dataset, extractor: transformers.SpeechT5FeatureExtractor) -> None:
    """Decode and analyse one shard of rows; written atomically, so a crash leaves none or a whole one."""
    clips = [decode_clip(audio) for audio in rows["audio"]]
    kept = [c for c in clips if not isinstance(c, str)]
    mels = [extractor(audio_target=c / PCM_SCALE, sampling_rate=SAMPLE_RATE)["input_values"][0] for c in kept]
    partial = path.with_suffix(".partial.npz")
    np.savez(
        partial, reasons=np.array([c if isinstance(c, str) else "" for c in clips], dtype=str),
        audio=np.concatenate(kept) if kept else np.zeros(0, np.int16),
        mels=np.concatenate(mels).astype(np.float32) if mels else np.zeros((0, MEL_BINS), np.float32),
        samples=np.array([len(c) for c in kept], dtype=np.int64), frames=np.array([len(m) for m in mels], np.int64),
    )  # fmt: skip
    partial.replace(path)


def build_clip_store(rows: datasets.Dataset, extractor: transformers.SpeechT5FeatureExtractor, directory: Path,
                     progress: bool = True) -> ClipStore:  # fmt: skip
    """Decode and analyse `rows` into `directory` (resuming shard by shard), or reuse what is there."""
    ids = list(rows["id"])
    settings = {"shard_rows": SHARD_ROWS, "hop": extractor.sample_stride, "mel": "SpeechT5FeatureExtractor log10"}
    check_plan(directory, ids, settings, "clips")
    if (directory / ROWS_FILE).exists():
        return load_clip_store(directory)

    def save(path: Path, start: int, stop: int) -> None:
        _save_shard(path, rows.select(range(start, stop)), extractor)

    paths = compute_shards(directory, len(ids), SHARD_ROWS, save, "clips and mels", progress)
    _assemble(directory, paths, ids, list(rows["text"]))
    shutil.rmtree(directory / "shards")
    return load_clip_store(directory)


def _assemble(directory: Path, shard_paths: list[Path], ids: list[str], texts: list[str]) -> None:
    """Join the shards into the store; `rows.json` is written last: its presence means complete."""
    loaded = [dict(np.load(path, allow_pickle=False)) for path in shard_paths]
    join = lambda key: np.concatenate([s[key] for s in loaded])  # noqa: E731
    offsets = lambda counts: np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)  # noqa: E731
    np.save(directory / AUDIO_FILE, join("audio").astype(np.int16))
    np.save(directory / MEL_FILE, join("mels").astype(np.float32))
    np.savez(directory / OFFSETS_FILE, samples=offsets(join("samples")), frames=offsets(join("frames")))
    meta = kept_rows(ids, texts, join("reasons").tolist())
    (directory / ROWS_FILE).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")


def load_clip_store(directory: Path) -> ClipStore:
    meta = json.loads((directory / ROWS_FILE).read_text(encoding="utf-8"))
    offsets = np.load(directory / OFFSETS_FILE, allow_pickle=False)
    return ClipStore(
        audio=np.load(directory / AUDIO_FILE, mmap_mode="r"), mels=np.load(directory / MEL_FILE, mmap_mode="r"),
        sample_offsets=offsets["samples"], frame_offsets=offsets["frames"], ids=meta["ids"], texts=meta["texts"],
        left_out=meta["left_out"],
    )  # fmt: skip


def segments(frames: np.ndarray, seed: int, step: int, batch_size: int,
             segment_frames: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(clip positions [B], first frames [B]) of `step`'s batch: a pure function of (seed, step), so a resumed run
    draws the same batches. Distinct clips while there are enough; every segment lies within its clip's frames."""
    rng = np.random.default_rng([seed, step])
    positions = rng.choice(len(frames), size=batch_size, replace=len(frames) < batch_size)
    return positions, rng.integers(0, frames[positions] - segment_frames + 1)


def make_batch(store: ClipStore, clips: np.ndarray, starts: np.ndarray,
               segment_frames: int) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Segments of store rows `clips` from frames `starts`: log10 mels [B, K, 80] and their samples [B, K * 256]."""
    hop = math.prod(UPSAMPLE_RATES)
    mels = [store.mel(int(c))[s : s + segment_frames] for c, s in zip(clips, starts, strict=True)]
    audio = [store.clip(int(c), int(s) * hop, segment_frames * hop) for c, s in zip(clips, starts, strict=True)]
    return torch.from_numpy(np.stack(mels)), torch.from_numpy(np.stack(audio))


def evaluate(model: transformers.SpeechT5HifiGan, store: ClipStore, rows: np.ndarray,
             loss: ReconstructionLoss) -> dict[str, float]:  # fmt: skip
    """Whole held-out clips vocoded from their mels, cut to the clip's length: the mean over clips of the mel L1
    (log10 units: the mel of what the vocoder says vs the mel it was given) and of the MR-STFT loss vs the clip."""
    totals = {"mel_l1": 0.0, "mr_stft": 0.0}
    model.eval()
    with torch.no_grad():
        for row in rows:
            mel, clip = torch.from_numpy(store.mel(int(row))), torch.from_numpy(store.clip(int(row)))
            audio = model(mel.unsqueeze(0))[:, : clip.shape[0]].float()
            totals["mel_l1"] += (loss.mel(audio)[0] - mel).abs().mean().item() / len(rows)
            totals["mr_stft"] += loss.stft(audio.unsqueeze(1), clip[None, None]).item() / len(rows)
    model.train()
    return totals


def prepare(options: HifiGanPretrainOptions, extractor) -> tuple[ClipStore, np.ndarray, np.ndarray, LeftOut]:
    """The clip store, its training and held-out rows, and every row left out (by reason)."""
    rows = voice_pretrain_rows(options.corpus, options.voice)
    store = build_clip_store(rows, extractor, options.out / "data" / "clips")
    usable = np.flatnonzero(store.frames() >= options.segment_frames)
    short = len(store) - len(usable)
    left_out = combine(store.left_out, {TOO_SHORT: short} if short else {})
    warn_left_out(left_out, len(usable), "pretrain")
    if len(usable) == 0:
        raise InputError(f"no {options.voice} clip of {options.corpus} is {options.segment_frames} frames long: "
                         f"lower --segment-frames (left out: {left_out})")  # fmt: skip
    train_positions, held_positions = hold_out([store.texts[i] for i in usable], options.eval_utterances, options.seed)
    return store, usable[train_positions], usable[held_positions], left_out


def speechpeft_record(options: HifiGanPretrainOptions, extractor, left_out: LeftOut) -> dict:
    """What a user of the vocoder needs to know, stored in its config.json."""
    return {
        "features": {"sampling_rate": SAMPLE_RATE, "hop_length": extractor.sample_stride, "mel_bins": MEL_BINS,
                     "mel": "SpeechT5FeatureExtractor log10"},
        "alignment": "frame i -> samples [i * 256, (i + 1) * 256); the extractor centres frame i on sample i * 256",
        "training": {"corpus": str(options.corpus), "voice": options.voice, "loss": "MR-STFT + mel L1, no GAN",
                     "left_out": left_out},
    }  # fmt: skip


def pretrain_hifigan(options: HifiGanPretrainOptions) -> dict:
    """Train (resuming from `out/checkpoint`); the best generator by held-out mel L1 is exported to `out/model` in
    float16. Returns the best step's metrics."""
    torch.set_num_threads(options.threads)
    extractor = transformers.SpeechT5FeatureExtractor()
    store, train_rows, held_rows, left_out = prepare(options, extractor)
    torch.manual_seed(options.seed)
    model = transformers.SpeechT5HifiGan(hifigan_config(options.channels, extractor,
                                                        speechpeft_record(options, extractor, left_out)))  # fmt: skip
    loss, frames = ReconstructionLoss(extractor, options.mel_weight), store.frames()[train_rows]

    def step_losses(step: int) -> dict[str, torch.Tensor]:
        positions, starts = segments(frames, options.seed, step, options.batch_size, options.segment_frames)
        mels, target = make_batch(store, train_rows[positions], starts, options.segment_frames)
        parts = loss(model(mels), target)
        return {"loss": parts["loss"], "mr_stft": parts["mr_stft"].detach(), "mel_l1": parts["mel_l1"].detach()}

    recipe = Recipe(
        name="tiny-hifigan", modules={"model": model}, losses=step_losses,
        learning_rate=lambda step: warmup_cosine(options, step), score="mel_l1",
        evaluate=lambda: evaluate(model, store, held_rows, loss),
        export=lambda: export_half(model, None, options.out / "model"), options=options_record(options),
    )  # fmt: skip
    return train(recipe, options.out, options.steps, options.eval_every, options.precision == "bf16")
