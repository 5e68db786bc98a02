"""Real speech for tests: a sentence spoken by one of the corpus's engines, decoded by torchcodec."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
from torchcodec.decoders import AudioDecoder

from speechpeft.tasks.corpus.plan import Utterance
from speechpeft.tasks.corpus.render import render_clip
from speechpeft.tasks.corpus.voices import voice_by_id


def spoken(text: str, directory: Path, voice: str = "espeak-en-us", name: str = "clip") -> np.ndarray:
    """16 kHz mono float32 samples of `text` spoken by `voice` (engine, then sox, then FLAC, then decoded)."""
    return AudioDecoder(str(spoken_file(text, directory, voice, name))).get_all_samples().data[0].numpy()


def speech_rows(clips: list[tuple[str, str]], directory: Path, **columns: list) -> datasets.Dataset:
    """A dataset of `(text, voice)` clips as a task reads it: `audio` decoded at 16 kHz, `text`, and `columns`."""
    paths = [str(spoken_file(text, directory, voice, f"clip{i}")) for i, (text, voice) in enumerate(clips)]
    rows = datasets.Dataset.from_dict({"audio": paths, "text": [text for text, _ in clips], **columns})
    return rows.cast_column("audio", datasets.Audio(sampling_rate=16_000))


def spoken_file(text: str, directory: Path, voice: str = "espeak-en-us", name: str = "clip") -> Path:
    """The FLAC file of `text` spoken by `voice`."""
    engine = voice_by_id(voice).engine
    utterance = Utterance(id=name, text=text, kind="sentence", intent="", slots="[]", keyword="", voice=voice,
                          engine=engine, voice_group="pretrain", split="test", rate=1.0, pitch=0.0)  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    return render_clip(utterance, directory)
