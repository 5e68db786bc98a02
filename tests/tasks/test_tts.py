"""The TTS task's quality columns on real speech: DNSMOS, MCD against the recording, and CER through a listener."""

import numpy as np
import pytest

from speechpeft.backbones import load_frozen
from speechpeft.tasks.base import Predictions
from speechpeft.tasks.tts import SpeechSynthesis
from tests.audio import spoken


@pytest.mark.slow
def test_tts_score_reports_every_column(tiny_backbone_dirs, tmp_path):
    backbone = load_frozen(tiny_backbone_dirs["speecht5"], "tts", "fp32", device="cpu")
    task = SpeechSynthesis(backbone, listener=str(tiny_backbone_dirs["whisper"]))
    recording = spoken("turn on the lights", tmp_path)
    noisy = recording + np.random.default_rng(0).normal(0, 0.05, recording.shape).astype(np.float32)
    batch = Predictions(
        [recording, noisy], ["turn on the lights"] * 2, 0.1, extras=[{"reference_audio": recording}] * 2
    )
    metrics, items = task.score([batch])
    assert {"ovrl_mos", "sig_mos", "bak_mos", "p808_mos", "mcd", "cer"} <= set(metrics)
    assert items[0]["mcd"] == 0.0 and items[1]["mcd"] > 0.0  # the recording itself, then a noisy copy
    assert metrics["mcd"] == pytest.approx(items[1]["mcd"] / 2)
    assert all(isinstance(item["heard"], str) for item in items)  # what the (random, tiny) listener heard
