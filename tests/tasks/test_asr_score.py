"""The ASR task's corpus scores from hand-made predictions: WER and CER after the normaliser, and RTFx."""

import math

import pytest

from speechpeft.backbones import load_frozen
from speechpeft.evaluation import evaluate_task
from speechpeft.tasks.asr import SpeechRecognition
from speechpeft.tasks.base import Predictions
from tests.audio import speech_rows


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


def test_generate_gets_the_task_cap_not_the_checkpoint_max_length(tiny_backbone_dirs, tmp_path):
    """A checkpoint whose generation config leaves max_length at transformers' default (20 tokens) is not cut there:
    every generate call gets max_new_tokens from the clip's length (`tasks.runaway.token_cap`: 8 per second)."""
    backbone = load_frozen(tiny_backbone_dirs["whisper"], "asr", "fp32", device="cpu")
    backbone.model.generation_config.max_length = 20
    task, calls = SpeechRecognition(backbone), []
    generate = backbone.model.generate

    def recording(*args, **kwargs):
        calls.append(kwargs.get("max_new_tokens"))
        return generate(*args, **kwargs)

    backbone.model.generate = recording
    rows = speech_rows([("please turn on every light in the kitchen and the living room now", "espeak-en-us")],
                       tmp_path)  # fmt: skip
    seconds = len(rows[0]["audio"]["array"]) / rows[0]["audio"]["sampling_rate"]
    evaluate_task(task, backbone.model, rows, batch_size=1)
    assert seconds > 3 and calls == [min(math.ceil(seconds * 8), task._token_cap(1e9))] and calls[0] > 20
