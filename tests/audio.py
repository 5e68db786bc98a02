"""Real speech for tests: a sentence spoken by one of the corpus's engines, decoded by torchcodec."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torchcodec.decoders import AudioDecoder

from speechpeft.tasks.corpus.plan import Utterance
from speechpeft.tasks.corpus.render import render_clip
from speechpeft.tasks.corpus.voices import voice_by_id


def spoken(text: str, directory: Path, voice: str = "espeak-en-us", name: str = "clip") -> np.ndarray:
    """16 kHz mono float32 samples of `text` spoken by `voice` (engine, then sox, then FLAC, then decoded)."""
    engine = voice_by_id(voice).engine
    utterance = Utterance(id=name, text=text, kind="sentence", intent="", slots="[]", keyword="", voice=voice,
                          engine=engine, voice_group="pretrain", split="test", rate=1.0, pitch=0.0)  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    return AudioDecoder(str(render_clip(utterance, directory))).get_all_samples().data[0].numpy()
