"""The backbone a command uses when none is named: real Whisper for speech input, the shipped SpeechT5 for TTS."""

import dataclasses
from pathlib import Path

import pytest

from speechpeft.backbones import load_frozen
from speechpeft.backbones.builtin import DEFAULT_BACKBONE, default_backbone, is_builtin
from speechpeft.train import reference
from speechpeft.train_options import TrainOptions


@pytest.mark.parametrize(
    ("task", "expected"),
    [("asr", "openai/whisper-tiny.en"), ("intent", "openai/whisper-tiny.en"), ("keyword", "openai/whisper-tiny.en"),
     ("speaker", "openai/whisper-tiny.en"), ("tts", "speechpeft/tiny-speecht5")],
)  # fmt: skip
def test_train_without_a_backbone_takes_the_tasks_default(task, expected, tmp_path):
    assert default_backbone(task) == expected
    assert TrainOptions(task=task, out=tmp_path / "adapter").backbone == expected


def test_train_help_names_the_defaults():
    field = next(f for f in dataclasses.fields(TrainOptions) if f.name == "backbone")
    assert DEFAULT_BACKBONE in field.metadata["help"] and default_backbone("tts") in field.metadata["help"]


def test_records_name_a_builtin_by_its_name_a_directory_by_its_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model").mkdir()
    assert is_builtin("SpeechPEFT/Tiny-Whisper") and not is_builtin("openai/whisper-tiny.en")
    assert reference("speechpeft/tiny-fastspeech2") == ("speechpeft/tiny-fastspeech2", "builtin")
    assert reference("model") == (str(tmp_path / "model"), "directory")
    assert reference("openai/whisper-tiny.en") == ("openai/whisper-tiny.en", "hub")


@pytest.mark.slow
def test_the_default_whisper_loads_offline_for_asr_and_classification():
    """HF_HUB_OFFLINE=1 (tests/conftest.py): the id resolves to its converted local copy, no download."""
    asr = load_frozen(DEFAULT_BACKBONE, "asr", "fp32", device="cpu")
    assert Path(asr.source).is_dir() and asr.spec.family == "whisper"
    assert asr.model.config.vocab_size == 51864 and not asr.model.generation_config.is_multilingual  # tiny.en
    classify = load_frozen(DEFAULT_BACKBONE, "classify", "fp32", device="cpu", labels=["yes", "no"])
    assert type(classify.model).__name__ == "WhisperForAudioClassification" and classify.source == asr.source
