"""Classification by the decoder writing the label (`--classifier decoder`), checked against the model's own loss."""

from __future__ import annotations

import pytest
import torch

from speechpeft.backbones import load_frozen
from speechpeft.errors import InputError
from speechpeft.tasks.catalog import TASKS
from speechpeft.tasks.classify_decoder import DecoderClassification, label_text
from tests.audio import speech_rows

LABELS = ["lights_off", "lights_on", "volume_up"]


@pytest.fixture(scope="module")
def task_and_batch(tiny_backbone_dirs, tmp_path_factory):
    backbone = load_frozen(tiny_backbone_dirs["whisper"], "asr", "fp32")
    task = TASKS.get("intent").build(backbone, LABELS)
    rows = speech_rows([("lights on", "espeak-en-us"), ("louder please", "espeak-en-gb")],
                       tmp_path_factory.mktemp("clips"), intent=["lights_on", "volume_up"])  # fmt: skip
    return task, task.collate([rows[0], rows[1]])


def test_label_names_become_words():
    assert label_text("lights_on") == "lights on" and label_text("set-alarm") == "set alarm"


def test_an_asr_backbone_builds_the_decoder_classifier_with_the_label_targets(task_and_batch):
    task, batch = task_and_batch
    assert isinstance(task, DecoderClassification)
    assert batch["labels"][0].tolist()[: len(task.targets[1])] == task.targets[1]  # row 0 is lights_on


def test_label_scores_are_the_teacher_forced_log_likelihoods_the_model_computes(task_and_batch):
    task, batch = task_and_batch
    model = task.backbone.model
    features = batch["input_features"]
    with torch.no_grad():
        scores = task.label_log_likelihoods(model, {"input_features": features})
        for clip in range(2):
            for index, target in enumerate(task.targets):
                labels = torch.tensor([target])
                loss = model(input_features=features[clip : clip + 1], labels=labels).loss  # mean over tokens
                assert scores[clip, index].item() == pytest.approx(-loss.item() * len(target), rel=1e-4, abs=1e-3)


def test_predictions_are_labels_of_the_map_with_their_softmax_confidence(task_and_batch):
    task, batch = task_and_batch
    with torch.no_grad():
        predictions = task.predict(task.backbone.model, batch)
        scores = task.label_log_likelihoods(task.backbone.model, {"input_features": batch["input_features"]})
    assert all(label in LABELS for label in predictions.outputs)
    best = scores.softmax(-1).max(-1).values
    assert [e["confidence"] for e in predictions.extras] == pytest.approx(best.tolist(), abs=1e-4)


def test_labels_written_alike_and_encoder_only_backbones_are_refused(tiny_backbone_dirs):
    whisper = load_frozen(tiny_backbone_dirs["whisper"], "asr", "fp32")
    with pytest.raises(InputError, match="both written 'lights on'"):
        DecoderClassification(whisper, "intent", ["lights-on", "lights_on"])
    task = DecoderClassification(whisper, "intent", ["only_label"])  # one label: every row shares the prompt
    features = torch.zeros(1, 80, 800)  # the tiny model's 8 s window
    with torch.no_grad():
        assert task.label_log_likelihoods(whisper.model, {"input_features": features}).shape == (1, 1)
    wavlm = load_frozen(tiny_backbone_dirs["wavlm"], "classify", "fp32", labels=["a", "b"])
    with pytest.raises(InputError, match="needs an encoder-decoder"):
        DecoderClassification(wavlm, "intent", ["a", "b"])
