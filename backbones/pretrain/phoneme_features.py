"""What tiny-fastspeech2 learns from, computed once per corpus row and cached on disk.

For each row of one espeak-ng voice: its phonemes and their exact durations in mel frames
(libespeak-ng's own timings, `speechpeft.tasks.corpus.espeak_timing`), the log-mel target exactly as the
built-in backbones compute it (`SpeechT5FeatureExtractor`: 16 kHz, hop 256 = 16 ms, 80 bins, log10), and
per phoneme the pitch and energy FastSpeech 2 conditions on (https://arxiv.org/abs/2006.04558 §2.3),
averaged over each phoneme's frames as FastPitch does (https://arxiv.org/abs/2006.06873):

- pitch: log F0 (log Hz) by WORLD's DIO + StoneMask (pyworld, 16 ms frame period = the mel hop), averaged over
  the phoneme's voiced frames; NaN when none is voiced (or it has no frame);
- energy: the L2 norm of each STFT magnitude frame (the extractor's n_fft 1024, Hann window, hop 256,
  centred), averaged over the phoneme's frames; NaN when it has none.

Raw values are stored; the recipe normalises them with the training rows' statistics (`normalisation`).
Rows whose resynthesis is not exactly as long as the clip (or that the engine cannot time) are left out and
counted by reason, never dropped silently. Work is saved in shards of `SHARD_ROWS` rows, so an interrupted
extraction resumes at the first missing shard; the finished store is one memory-mapped mel file plus the
per-phoneme arrays.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pyworld
import torch
import transformers

from speechpeft.backbones.pretrain.voice_data import check_plan, compute_shards, kept_rows
from speechpeft.errors import InputError
from speechpeft.tasks.corpus.espeak_timing import (
    EspeakTimingError,
    Timings,
    check_clip_length,
    frame_durations,
    phoneme_text,
    phoneme_timings,
)
from speechpeft.tasks.corpus.render import SAMPLE_RATE
from speechpeft.tasks.rows import LeftOut

HOP_LENGTH = 256  # samples at 16 kHz = 16 ms: SpeechT5FeatureExtractor's hop
FRAME_PERIOD_MS = 1000 * HOP_LENGTH / SAMPLE_RATE  # 16.0 ms, DIO's frame period = one mel frame
SHARD_ROWS = 64  # rows per resumable unit of work
LENGTH_MISMATCH, NOT_TIMED = "timing_length_mismatch", "no_phoneme_timings"
ROWS_FILE, MEL_FILE, PHONEME_FILE = "rows.json", "mels.npy", "phonemes.npz"


@dataclass(frozen=True)
class PhonemeLabels:
    """What FastSpeech 2 learns per phoneme of one utterance: `durations` (frames, summing to its mel's frames),
    `pitch` (mean log F0 of voiced frames, log Hz, NaN if none) and `energy` (mean STFT norm, NaN if no frame)."""

    durations: np.ndarray  # int32 [phonemes]
    pitch: np.ndarray  # float32 [phonemes]
    energy: np.ndarray  # float32 [phonemes]
    phonemes: str  # `phoneme_text`: one character per phoneme, words separated by spaces

    def labels(self) -> PhonemeLabels:
        return PhonemeLabels(self.durations, self.pitch, self.energy, self.phonemes)


@dataclass(frozen=True)
class RowFeatures(PhonemeLabels):
    """One utterance's labels and its `mel` [frames, 80] log10 (float16)."""

    mel: np.ndarray


@dataclass
class PhonemeFeatures:
    """Every kept row of a store: mels end to end, per-phoneme arrays end to end, and their offsets."""

    mels: np.ndarray  # [total frames, 80] float16, memory-mapped
    frame_offsets: np.ndarray  # [N + 1]
    durations: np.ndarray  # [total phonemes] int32
    pitch: np.ndarray  # [total phonemes] float32, log Hz
    energy: np.ndarray  # [total phonemes] float32
    phoneme_offsets: np.ndarray  # [N + 1]
    phonemes: list[str]
    texts: list[str]
    ids: list[str]
    left_out: LeftOut  # reason -> rows

    def __len__(self) -> int:
        return len(self.ids)

    def mel(self, index: int) -> np.ndarray:
        """[frames, 80] float32 log10 mel of row `index`."""
        return np.asarray(self.mels[self.frame_offsets[index] : self.frame_offsets[index + 1]], dtype=np.float32)

    def phoneme_range(self, index: int) -> slice:
        return slice(int(self.phoneme_offsets[index]), int(self.phoneme_offsets[index + 1]))

    def labels(self, index: int) -> PhonemeLabels:
        """Row `index`'s per-phoneme labels."""
        span = self.phoneme_range(index)
        return PhonemeLabels(self.durations[span], self.pitch[span], self.energy[span], self.phonemes[index])


def frame_log_f0(audio: np.ndarray, n_frames: int) -> np.ndarray:
    """[n_frames] log F0 (log Hz) of 16 kHz `audio`, NaN where unvoiced: DIO + StoneMask at the mel hop.

    DIO gives 1 + samples // 256 frames, the mel's count; any other `n_frames` is cut or padded unvoiced."""
    signal = audio.astype(np.float64)
    f0, times = pyworld.dio(signal, SAMPLE_RATE, frame_period=FRAME_PERIOD_MS)
    f0 = pyworld.stonemask(signal, f0, times, SAMPLE_RATE)[:n_frames]
    f0 = np.pad(f0, (0, n_frames - len(f0)))
    with np.errstate(divide="ignore"):
        return np.where(f0 > 0, np.log(f0), np.nan).astype(np.float32)


def frame_energy(audio: np.ndarray, extractor: transformers.SpeechT5FeatureExtractor, n_frames: int) -> np.ndarray:
    """[n_frames] L2 norm of each STFT magnitude frame (the extractor's n_fft, window and hop, centred)."""
    window = torch.from_numpy(np.asarray(extractor.window, dtype=np.float32))
    spectrum = torch.stft(torch.from_numpy(audio.astype(np.float32)), n_fft=extractor.n_fft,
                          hop_length=extractor.sample_stride, win_length=extractor.sample_size, window=window,
                          center=True, pad_mode="reflect", return_complex=True)  # fmt: skip
    energy = spectrum.abs().norm(dim=0).numpy()[:n_frames]
    return np.pad(energy, (0, n_frames - len(energy)), mode="edge").astype(np.float32)


def per_phoneme_mean(frames: np.ndarray, durations: np.ndarray) -> np.ndarray:
    """Mean of `frames` [n_frames] (NaN = no value) over each phoneme's span of `durations` [phonemes] frames
    (summing to n_frames); NaN where a span has no value."""
    owner = np.repeat(np.arange(len(durations)), durations)  # [n_frames]: the phoneme each frame belongs to
    valid = ~np.isnan(frames)
    sums = np.bincount(owner, weights=np.where(valid, frames, 0.0), minlength=len(durations))
    counts = np.bincount(owner, weights=valid.astype(np.float64), minlength=len(durations))
    with np.errstate(invalid="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan).astype(np.float32)


def row_features(audio: np.ndarray, timings: Timings, extractor: transformers.SpeechT5FeatureExtractor) -> RowFeatures:
    """Features of one clip (16 kHz float32) whose `timings` were checked against its length."""
    mel = extractor(audio_target=audio, sampling_rate=SAMPLE_RATE)["input_values"][0]
    durations = np.asarray(frame_durations(timings, len(mel), HOP_LENGTH), dtype=np.int32)
    pitch = per_phoneme_mean(frame_log_f0(audio, len(mel)), durations)
    energy = per_phoneme_mean(frame_energy(audio, extractor, len(mel)), durations)
    return RowFeatures(durations, pitch, energy, phoneme_text(timings), mel.astype(np.float16))


def _timed(row: dict) -> Timings | str:
    """The row's timings, or the reason it has none."""
    try:
        timings = phoneme_timings(row["text"], row["voice"], row["rate"], row["pitch"])
        phoneme_text(timings)  # every phoneme must have a token
    except EspeakTimingError:
        return NOT_TIMED
    return timings


def extract_rows(rows: datasets.Dataset, extractor, jobs: int) -> list[RowFeatures | str]:
    """Features of each row, or the reason (`LENGTH_MISMATCH`, `NOT_TIMED`) it is left out; `jobs` engines.

    `rows` need columns audio, text, voice, rate and pitch (an `id` column, if any, names a row in errors)."""
    columns = [c for c in ("id", "text", "voice", "rate", "pitch") if c in rows.column_names]
    meta = rows.select_columns(columns).to_list()
    with ThreadPoolExecutor(max_workers=jobs) as pool:  # each timing is a subprocess: threads use every core
        timed = list(pool.map(_timed, meta))
    results: list[RowFeatures | str] = []
    for index, (row, clip, timings) in enumerate(zip(meta, rows["audio"], timed, strict=True)):
        audio = clip.get_all_samples().data[0].numpy()
        if isinstance(timings, str):
            results.append(timings)
            continue
        try:
            check_clip_length(timings, len(audio), row.get("id", f"row {index}"))
        except EspeakTimingError:
            results.append(LENGTH_MISMATCH)
            continue
        results.append(row_features(audio, timings, extractor))
    return results


def extract_labels(rows: datasets.Dataset, extractor, jobs: int) -> list[PhonemeLabels | str]:
    """As `extract_rows`, keeping the labels only (the caller computes mels when it needs them)."""
    return [r if isinstance(r, str) else r.labels() for r in extract_rows(rows, extractor, jobs)]


def _save_shard(path: Path, results: list[RowFeatures | str]) -> None:
    """Write one shard atomically: a crash leaves no shard or a whole one."""
    kept = [r for r in results if isinstance(r, RowFeatures)]
    arrays = {
        "reasons": np.array([r if isinstance(r, str) else "" for r in results], dtype=str),
        "mels": np.concatenate([r.mel for r in kept]) if kept else np.zeros((0, 80), np.float16),
        "frames": np.array([len(r.mel) for r in kept], dtype=np.int64),
        "phoneme_counts": np.array([len(r.durations) for r in kept], dtype=np.int64),
        "phonemes": np.array([r.phonemes for r in kept], dtype=str),
        **{k: np.concatenate([getattr(r, k) for r in kept]) if kept else np.zeros(0, np.float32)
           for k in ("durations", "pitch", "energy")},
    }  # fmt: skip
    partial = path.with_suffix(".partial.npz")
    np.savez(partial, **arrays)
    partial.replace(path)


def build_phoneme_features(rows: datasets.Dataset, extractor, directory: Path, jobs: int = 1,
                           left_out: LeftOut | None = None, progress: bool = True) -> PhonemeFeatures:  # fmt: skip
    """Compute (resuming shard by shard) or reuse the store of `rows` in `directory`; `left_out` counts rows the
    caller already left out, recorded with the store's own."""
    ids = list(rows["id"])
    check_plan(directory, ids, {"shard_rows": SHARD_ROWS, "hop": HOP_LENGTH}, "features")
    if (directory / ROWS_FILE).exists():
        return load_phoneme_features(directory)

    def save(path: Path, start: int, stop: int) -> None:
        _save_shard(path, extract_rows(rows.select(range(start, stop)), extractor, jobs))

    paths = compute_shards(directory, len(ids), SHARD_ROWS, save, f"features ({directory.name})", progress)
    _assemble(directory, paths, ids, list(rows["text"]), left_out or {})
    shutil.rmtree(directory / "shards")
    return load_phoneme_features(directory)


def _assemble(directory: Path, shard_paths: list[Path], ids: list[str], texts: list[str], left_out: LeftOut) -> None:
    """Join the shards into the final store; `rows.json` is written last: its presence means complete."""
    loaded = [dict(np.load(path, allow_pickle=False)) for path in shard_paths]
    join = lambda key, dtype: np.concatenate([s[key] for s in loaded]).astype(dtype)  # noqa: E731
    offsets = lambda counts: np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)  # noqa: E731
    np.save(directory / MEL_FILE, join("mels", np.float16))
    np.savez(directory / PHONEME_FILE, durations=join("durations", np.int32), pitch=join("pitch", np.float32),
             energy=join("energy", np.float32), frame_offsets=offsets(join("frames", np.int64)),
             phoneme_offsets=offsets(join("phoneme_counts", np.int64)))  # fmt: skip
    meta = kept_rows(ids, texts, join("reasons", str).tolist(), left_out)
    meta["phonemes"] = join("phonemes", str).tolist()
    (directory / ROWS_FILE).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")


def load_phoneme_features(directory: Path) -> PhonemeFeatures:
    meta = json.loads((directory / ROWS_FILE).read_text(encoding="utf-8"))
    arrays = np.load(directory / PHONEME_FILE, allow_pickle=False)
    return PhonemeFeatures(
        mels=np.load(directory / MEL_FILE, mmap_mode="r"), frame_offsets=arrays["frame_offsets"],
        durations=arrays["durations"], pitch=arrays["pitch"], energy=arrays["energy"],
        phoneme_offsets=arrays["phoneme_offsets"], phonemes=meta["phonemes"], texts=meta["texts"], ids=meta["ids"],
        left_out=meta["left_out"],
    )  # fmt: skip


def normalisation(features: PhonemeFeatures, rows: np.ndarray) -> dict[str, dict[str, float | str]]:
    """Mean and standard deviation of the pitch and energy of `rows`' phonemes (NaN skipped): label = (x - mean) / std.

    Raises InputError when the rows have no voiced phoneme (nothing to learn pitch from)."""
    spans = [features.phoneme_range(int(i)) for i in rows]
    stats = {}
    for name, unit in (("pitch", "log Hz (DIO + StoneMask)"), ("energy", "L2 norm of the STFT magnitude")):
        values = np.concatenate([getattr(features, name)[s] for s in spans]) if spans else np.zeros(0)
        values = values[~np.isnan(values)]
        if len(values) < 2:
            raise InputError(f"the training rows have no {name} to learn: too few or silent utterances")
        stats[name] = {"mean": float(values.mean()), "std": float(max(values.std(), 1e-6)), "unit": unit}
    return stats


def normalise(values: np.ndarray, stats: dict[str, float]) -> np.ndarray:
    """(values - mean) / std, with NaN (no value) as 0, the mean."""
    return np.nan_to_num((values - stats["mean"]) / stats["std"], nan=0.0).astype(np.float32)
