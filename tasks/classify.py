"""Spoken classification: intent (templated commands), keyword spotting and speaker identification.

The three differ only in the label column they read; the head (Whisper's pooled projector + classifier,
or the SSL encoders' sequence-classification head) is sized by the label map, starts random and trains
with the adapter. The label map is saved with the adapter, so predictions come back as names.
"""

from __future__ import annotations

from typing import Any

import datasets
import torch

from speechpeft.backbones import FrozenBackbone
from speechpeft.errors import InputError
from speechpeft.leaderboard.metrics import load_metric
from speechpeft.tasks.base import TASKS, Predictions, TaskEntry, decode_audio, model_inputs
from speechpeft.tasks.features import predict_in_exact_groups, window_inputs
from speechpeft.tasks.rows import LeftOut, Rule, fixed_window, sift

IGNORE_INDEX = -100  # what the models' cross-entropy skips


class SpokenClassification:
    kind = "classify"

    def __init__(self, backbone: FrozenBackbone, name: str, labels: list[str]) -> None:
        if not labels:
            raise InputError(f"task {name!r} needs a label map: the training split has no {name} labels")
        self.backbone, self.name, self.roles, self.labels = backbone, name, ("audio", name), list(labels)
        self.index = {label: i for i, label in enumerate(self.labels)}
        self.extractor = getattr(backbone.processor, "feature_extractor", backbone.processor)

    def usable(self, rows: datasets.Dataset) -> tuple[datasets.Dataset, LeftOut]:
        """Leave out (and count) labels outside the label map (an evaluation split's new classes) and clips
        longer than a fixed-window extractor's window (Whisper would cut them)."""
        unknown = Rule("label_not_in_map", (self.name,), lambda label: str(label) not in self.index)
        return sift(rows, [unknown, *fixed_window(self.extractor)])

    def collate(self, rows: list[dict]) -> dict[str, Any]:
        names, audio = [str(row[self.name]) for row in rows], decode_audio(rows)
        inputs = window_inputs(self.backbone, self.extractor, audio)
        # `usable` leaves out labels outside the map; the ignore index only guards callers that skip it
        targets = torch.tensor([self.index.get(n, IGNORE_INDEX) for n in names])
        return {**inputs, "labels": targets, "references": names, "audio": audio}

    def loss(self, model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        return model(**model_inputs(batch, self.backbone.device)).loss

    def predict(self, model: torch.nn.Module, batch: dict[str, Any]) -> Predictions:
        """Labels and their probabilities, each as if its clip were alone in the batch (`predict_in_exact_groups`)."""

        def classify(inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
            return list(model(**inputs).logits.float().softmax(-1).cpu())  # one [labels] row per clip

        probabilities, seconds = predict_in_exact_groups(self.backbone, self.extractor, batch, classify)
        best = [int(row.argmax()) for row in probabilities]
        extras = [{"confidence": round(row[b].item(), 4)} for row, b in zip(probabilities, best, strict=True)]
        return Predictions([self.labels[b] for b in best], batch["references"], seconds, extras=extras)

    def score(self, predictions: list[Predictions]) -> tuple[dict[str, float], list[dict]]:
        outputs = [o for p in predictions for o in p.outputs]
        references = [r for p in predictions for r in p.references]
        extras = [e for p in predictions for e in p.extras]
        metrics = load_metric("classification").compute(predictions=outputs, references=references)
        items = [{"reference": r, "label": o, "correct": r == o, **e}
                 for r, o, e in zip(references, outputs, extras, strict=True)]  # fmt: skip
        return metrics, items


def build_classification(backbone: FrozenBackbone, name: str, labels: list[str]) -> SpokenClassification:
    """A pooled head over the encoder for a `classify` backbone; the decoder writing the label for a seq2seq ASR
    backbone (`speechpeft train --classifier decoder`: `tasks.classify_decoder`)."""
    if backbone.task == "asr":
        from speechpeft.tasks.classify_decoder import DecoderClassification

        return DecoderClassification(backbone, name, labels)
    return SpokenClassification(backbone, name, labels)


def _register(name: str, what: str) -> None:
    TASKS.register(name, TaskEntry("classify", ("audio", name),
                                   lambda backbone, labels: build_classification(backbone, name, labels or []),
                                   f"{what}: accuracy, macro-F1", ("accuracy", "max")))  # fmt: skip


_register("intent", "intent classification of spoken commands")
_register("keyword", "keyword spotting")
_register("speaker", "speaker identification")
