"""Log-mel features computed once and kept in a memory-mapped file, so training reads, never recomputes.

Whisper's encoder takes exactly 2 x max_source_positions frames, so every clip is padded (or cut)
to the chunk length by the feature extractor and stored at that size, in float16.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import transformers
from tqdm.auto import tqdm

BATCH = 64


@dataclass
class FeatureSet:
    """Features [N, mel bins, frames] with their transcripts, durations and voices."""

    features: np.ndarray  # float16 memmap
    texts: list[str]
    durations: np.ndarray  # seconds
    voices: list[str]

    def __len__(self) -> int:
        return len(self.texts)


def build_features(rows: datasets.Dataset, extractor: transformers.WhisperFeatureExtractor, path: Path,
                   desc: str = "features") -> FeatureSet:  # fmt: skip
    """Compute (or reuse, if complete) the feature file for `rows`."""
    meta_path = path.with_suffix(".json")
    if meta_path.exists():
        return load_features(path)
    shape = (len(rows), extractor.feature_size, extractor.nb_max_frames)
    partial = path.with_suffix(".partial")
    out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float16, shape=shape)
    for start in tqdm(range(0, len(rows), BATCH), desc=desc, unit="batch"):
        batch = rows[start : start + BATCH]["audio"]
        audio = [clip.get_all_samples().data[0].numpy() for clip in batch]
        mel = extractor(audio, sampling_rate=extractor.sampling_rate, return_tensors="np")["input_features"]
        out[start : start + len(audio)] = mel.astype(np.float16)
    out.flush()
    del out
    partial.replace(path)
    meta = {"texts": list(rows["text"]), "durations": list(rows["duration"]), "voices": list(rows["voice"])}
    meta_path.write_text(json.dumps(meta))
    return load_features(path)


def load_features(path: Path) -> FeatureSet:
    meta = json.loads(path.with_suffix(".json").read_text())
    features = np.load(path, mmap_mode="r")
    return FeatureSet(features, meta["texts"], np.asarray(meta["durations"], dtype=np.float32), meta["voices"])
