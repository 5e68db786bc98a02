"""The ASR task's corpus scores from hand-made predictions: WER and CER after the normaliser, and RTFx."""

import pytest

from speechpeft.backbones import load_frozen
from speechpeft.tasks.asr import SpeechRecognition
from speechpeft.tasks.base import Predictions


def test_rtfx_is_audio_seconds_per_compute_second(tiny_backbone_dirs):
    """RTFx (Open ASR Leaderboard) = audio seconds / compute seconds, higher is faster; RTF is its inverse."""
    task = SpeechRecognition(load_frozen(tiny_backbone_dirs["whisper"], "asr", "fp32", device="cpu"))
    batches = [
        Predictions(["turn on the lights"], ["Turn on the lights."], seconds=0.5, audio_seconds=3.0),
        Predictions(["play jazz", "yes"], ["play some jazz", "no"], seconds=1.5, audio_seconds=9.0),
    ]
    metrics, items = task.score(batches)
    assert set(metrics) == {"wer", "cer", "rtfx"}
    assert metrics["rtfx"] == pytest.approx((3.0 + 9.0) / (0.5 + 1.5))  # 6x faster than real time
    assert metrics["wer"] == pytest.approx((0 + 1 + 1) / (4 + 3 + 1))  # "some" deleted, "no" -> "yes"
    assert [item["word_errors"] for item in items] == [0, 1, 1]
