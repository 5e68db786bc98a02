"""Spoken classification with an encoder-decoder's own decoder: the label is written as text, and scored.

`speechpeft train --classifier decoder` (Whisper; any seq2seq ASR backbone): instead of a new pooled head over
the encoder (`tasks.classify.SpokenClassification`), the pretrained decoder learns to write the label's name
("lights on" for `lights_on`) with the ASR loss. Prediction scores every label of the label map by its
teacher-forced log-likelihood given the clip and takes the best, so the answer is always a label and the
scores' softmax is its confidence. The decoder already spells words from speech, so a few steps teach it
the labels; the zero-shot (`frozen`) row is the backbone choosing among the label names as it is. End-to-end
spoken language understanding by writing the intent as text follows Haghani et al., "From audio to semantics"
(SLT 2018); scoring a closed label set by likelihood is the usual way to make a generative model a classifier.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.models.whisper.modeling_whisper import shift_tokens_right

from speechpeft.adapters import routing
from speechpeft.backbones import FrozenBackbone
from speechpeft.errors import InputError
from speechpeft.tasks.asr import english_prompt
from speechpeft.tasks.base import Predictions, decode_audio
from speechpeft.tasks.classify import IGNORE_INDEX, SpokenClassification
from speechpeft.tasks.features import predict_in_exact_groups, window_inputs

CHUNK = 64  # label sequences scored at once (clips x labels)


def label_text(label: str) -> str:
    """What the decoder writes for a label: `lights_on` -> "lights on"."""
    return label.replace("_", " ").replace("-", " ").strip()


class DecoderClassification(SpokenClassification):
    """Classification by a seq2seq ASR backbone's decoder (`backbone.task == "asr"`)."""

    def __init__(self, backbone: FrozenBackbone, name: str, labels: list[str]) -> None:
        super().__init__(backbone, name, labels)
        if not getattr(backbone.model.config, "is_encoder_decoder", False):
            raise InputError(f"--classifier decoder needs an encoder-decoder backbone (Whisper); "
                             f"{backbone.spec.family} has no decoder: use --classifier pooled")  # fmt: skip
        _check_distinct(self.labels)
        tokenizer, start = backbone.processor.tokenizer, backbone.model.config.decoder_start_token_id
        if english_prompt(backbone.model):  # multilingual Whisper: the prompt that says English, as ASR trains
            tokenizer.set_prefix_tokens(**english_prompt(backbone.model))
        ids = [tokenizer(label_text(label)).input_ids for label in self.labels]
        self.targets = [seq[1:] if seq and seq[0] == start else seq for seq in ids]  # the model adds the start

    def collate(self, rows: list[dict]) -> dict[str, Any]:
        names, audio = [str(row[self.name]) for row in rows], decode_audio(rows)
        inputs = window_inputs(self.backbone, self.extractor, audio)
        return {**inputs, "labels": self._padded([self.targets[self.index[n]] for n in names]),
                "references": names, "audio": audio}  # fmt: skip

    def _padded(self, sequences: list[list[int]]) -> torch.Tensor:
        out = torch.full((len(sequences), max(map(len, sequences))), IGNORE_INDEX)
        for row, sequence in enumerate(sequences):
            out[row, : len(sequence)] = torch.tensor(sequence)
        return out

    def predict(self, model: torch.nn.Module, batch: dict[str, Any]) -> Predictions:
        """Each clip's most likely label and its share of the label scores' softmax."""

        def classify(inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
            return list(self.label_log_likelihoods(model, inputs).softmax(-1).cpu())

        probabilities, seconds = predict_in_exact_groups(self.backbone, self.extractor, batch, classify)
        best = [int(row.argmax()) for row in probabilities]
        extras = [{"confidence": round(row[b].item(), 4)} for row, b in zip(probabilities, best, strict=True)]
        return Predictions([self.labels[b] for b in best], batch["references"], seconds, extras=extras)

    def label_log_likelihoods(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(clips, labels) summed log-probabilities of each label's tokens (end token included), teacher-forced.

        The encoder and the decoder's prompt (the tokens every label starts with) run once per clip; their cache,
        cross-attention keys and values included, is then copied to the clip's label continuations, so the
        encoder's frames are projected once per clip rather than once per label. Clips go `CHUNK` label sequences
        at a time, which bounds the copies' memory.
        """
        clips = inputs["input_features"].shape[0]
        step = max(1, CHUNK // len(self.labels))
        scores = []
        for start in range(0, clips, step):
            with routing.rows(range(start, min(start + step, clips))):  # the bank's adapters follow the chunk
                scores.append(self._scores(model, {k: v[start : start + step] for k, v in inputs.items()}))
        return torch.cat(scores)

    def _scores(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        clips, count = inputs["input_features"].shape[0], len(self.labels)
        labels = self._padded(self.targets).to(self.backbone.device)  # (labels, tokens)
        config = self.backbone.model.config
        starts = shift_tokens_right(labels, config.pad_token_id, config.decoder_start_token_id)
        shared = min(_common_prefix(starts), starts.shape[1] - 1)  # at least one token differs per label row
        first = model(**inputs, decoder_input_ids=starts[:1, :shared].expand(clips, -1), use_cache=True)
        cache = first.cache
        cache.batch_repeat_interleave(count)
        rest = model(encoder_outputs=(first.encoder_last_hidden_state.repeat_interleave(count, 0),),
                     decoder_input_ids=starts[:, shared:].repeat(clips, 1), cache=cache).logits  # fmt: skip
        logits = torch.cat([first.logits.repeat_interleave(count, 0), rest], dim=1).float()
        targets = labels.repeat(clips, 1)
        picked = logits.log_softmax(-1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        return torch.where(targets != IGNORE_INDEX, picked, 0.0).sum(-1).view(clips, count)


def _common_prefix(sequences: torch.Tensor) -> int:
    """How many leading tokens every row of `sequences` shares (at least 1: the decoder start token)."""
    same = (sequences == sequences[:1]).all(0).int()
    return max(1, int(same.cumprod(0).sum()))


def _check_distinct(labels: list[str]) -> None:
    """Two labels the decoder would write the same way could never be told apart: refuse them."""
    written: dict[str, str] = {}
    for label in labels:
        other = written.setdefault(label_text(label), label)
        if other != label:
            raise InputError(f"labels {other!r} and {label!r} are both written {label_text(label)!r}: rename one")
