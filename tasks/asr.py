"""Speech recognition with a sequence-to-sequence backbone (Whisper; SpeechT5 speech-to-text).

Targets are the processor's token ids of the transcript; decoding is the model's `generate` (greedy
unless the backbone's generation config says otherwise); metrics are WER and CER after the pinned
normaliser, and the real-time factor (audio seconds per compute second).
"""

from __future__ import annotations

import logging
from typing import Any

import datasets
import torch

from speechpeft.backbones import FrozenBackbone
from speechpeft.leaderboard.metrics import load_metric
from speechpeft.leaderboard.normalize import normalize_english
from speechpeft.tasks.base import TASKS, Predictions, TaskEntry, decode_audio, model_inputs, timed
from speechpeft.tasks.features import acoustic_inputs

IGNORE_INDEX = -100  # label positions the loss skips (padding)
logger = logging.getLogger(__name__)


class SpeechRecognition:
    name, kind, roles = "asr", "asr", ("audio", "text")

    def __init__(self, backbone: FrozenBackbone) -> None:
        self.backbone = backbone
        self.tokenizer = backbone.processor.tokenizer
        self.extractor = backbone.processor.feature_extractor
        self.generate_kwargs = _english_prompt(backbone.model)
        if self.generate_kwargs:  # multilingual Whisper: train on the prompt that generation uses
            self.tokenizer.set_prefix_tokens(**self.generate_kwargs)

    def usable(self, rows: datasets.Dataset) -> datasets.Dataset:
        """Transcripts longer than the decoder's positions cannot be targets: leave those rows out."""
        config = self.backbone.model.config
        longest = getattr(config, "max_target_positions", None) or config.max_text_positions
        kept = rows.filter(lambda text: len(self._target_ids(text)) <= longest, input_columns="text")
        if len(kept) < len(rows):
            logger.warning("left out %d of %d rows whose transcript exceeds the decoder's %d tokens",
                           len(rows) - len(kept), len(rows), longest)  # fmt: skip
        return kept

    def collate(self, rows: list[dict]) -> dict[str, Any]:
        audio = decode_audio(rows)
        texts = [row["text"] for row in rows]
        ids = [self._target_ids(text) for text in texts]
        labels = torch.full((len(ids), max(map(len, ids))), IGNORE_INDEX)
        for row, seq in enumerate(ids):
            labels[row, : len(seq)] = torch.tensor(seq)
        inputs = acoustic_inputs(self.extractor, audio, self.backbone.input_dtype)
        seconds = sum(len(a) for a in audio) / self.extractor.sampling_rate
        return {**inputs, "labels": labels, "references": texts, "audio_seconds": seconds}

    def _target_ids(self, text: str) -> list[int]:
        ids = self.tokenizer(text).input_ids
        start = self.backbone.model.config.decoder_start_token_id
        return ids[1:] if ids and ids[0] == start else ids  # the model prepends the start token itself

    def loss(self, model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        return model(**model_inputs(batch, self.backbone.device)).loss

    def predict(self, model: torch.nn.Module, batch: dict[str, Any]) -> Predictions:
        inputs = model_inputs(batch, self.backbone.device, labels=False)
        ids, seconds = timed(lambda: model.generate(**inputs, **self.generate_kwargs))
        texts = [t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]
        return Predictions(texts, batch["references"], seconds, batch["audio_seconds"])

    def score(self, predictions: list[Predictions]) -> tuple[dict[str, float], list[dict]]:
        hypotheses = [h for p in predictions for h in p.outputs]
        references = [r for p in predictions for r in p.references]
        wer = load_metric("wer").compute(predictions=hypotheses, references=references)
        cer = load_metric("cer").compute(predictions=hypotheses, references=references)
        compute = sum(p.seconds for p in predictions)
        speed = sum(p.audio_seconds for p in predictions) / compute if compute else 0.0
        metrics = {"wer": wer["wer"], "cer": cer["cer"], "real_time_factor": speed}
        items = [_item_record(r, h) for r, h in zip(references, hypotheses, strict=True)]
        return metrics, items


def _item_record(reference: str, hypothesis: str) -> dict:
    import jiwer

    ref, hyp = normalize_english(reference), normalize_english(hypothesis)
    words = len(ref.split())
    errors = jiwer.process_words(ref, hyp) if ref else None
    edits = errors.substitutions + errors.deletions + errors.insertions if errors else len(hyp.split())
    return {"reference": reference, "hypothesis": hypothesis, "word_errors": edits, "reference_words": words}


def _english_prompt(model: torch.nn.Module) -> dict[str, str]:
    """Multilingual Whisper checkpoints are told to transcribe English; English-only ones need nothing."""
    generation = getattr(model, "generation_config", None)
    if generation is not None and getattr(generation, "is_multilingual", False):
        return {"language": "en", "task": "transcribe"}
    return {}


class CtcSpeechRecognition(SpeechRecognition):
    """Encoder-only backbones (wav2vec2, HuBERT, WavLM) with a CTC head over the processor's characters."""

    def __init__(self, backbone: FrozenBackbone) -> None:
        self.backbone, self.generate_kwargs = backbone, {}
        self.tokenizer = backbone.processor.tokenizer
        self.extractor = backbone.processor.feature_extractor
        # a summed CTC loss grows with utterance length and an impossible alignment is infinite: tame both
        backbone.model.config.ctc_loss_reduction, backbone.model.config.ctc_zero_infinity = "mean", True

    def usable(self, rows: datasets.Dataset) -> datasets.Dataset:
        return rows

    def _target_ids(self, text: str) -> list[int]:
        return self.tokenizer(text).input_ids

    def predict(self, model: torch.nn.Module, batch: dict[str, Any]) -> Predictions:
        inputs = model_inputs(batch, self.backbone.device, labels=False)
        logits, seconds = timed(lambda: model(**inputs).logits)
        best = logits.argmax(-1).cpu()
        if "attention_mask" in inputs:  # frames past a clip's end were never trained: cut them before decoding
            lengths = self.backbone.model._get_feat_extract_output_lengths(inputs["attention_mask"].sum(-1)).tolist()
            best = [row[:length] for row, length in zip(best, lengths, strict=True)]
        texts = [t.strip() for t in self.tokenizer.batch_decode(best)]  # greedy CTC: collapse repeats, drop blanks
        return Predictions(texts, batch["references"], seconds, batch["audio_seconds"])


def _build(backbone: FrozenBackbone, labels: list[str] | None) -> SpeechRecognition:
    encoder_decoder = backbone.model.config.is_encoder_decoder
    return SpeechRecognition(backbone) if encoder_decoder else CtcSpeechRecognition(backbone)


TASKS.register("asr", TaskEntry("asr", SpeechRecognition.roles, _build,
                                "speech recognition: WER, CER, real-time factor", ("wer", "min")))  # fmt: skip
