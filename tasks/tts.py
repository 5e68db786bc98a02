"""Text-to-speech with SpeechT5: mel targets, Griffin-Lim audio, and the leaderboard's quality columns.

The headline MOS proxy is DNSMOS OVRL (offline, from the speechmos wheel); next to it: DNSMOS SIG,
BAK and P.808, intelligibility (CER of the ASR backbone's transcript of the synthesised speech) and
mel-cepstral distortion against the reference recording. The speaker embedding is all zeros: an
adapter learns its voice from its training data rather than from an x-vector that needs a download.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import datasets
import numpy as np
import torch

from speechpeft.backbones import FrozenBackbone
from speechpeft.backbones.vocoder import griffin_lim
from speechpeft.leaderboard.metrics import load_metric
from speechpeft.tasks.base import TASKS, Predictions, TaskEntry, decode_audio, timed

logger = logging.getLogger(__name__)
IGNORE_VALUE = -100.0  # mel frames the loss skips (padding)
MAX_LENGTH_RATIO = 15.0  # mel frames per input token at most, when generating
LISTENER = "speechpeft/tiny-whisper"  # the ASR backbone that measures intelligibility
LISTENER_BATCH = 16  # clips transcribed at once (each is padded to the listener's window)


class SpeechSynthesis:
    name, kind, roles = "tts", "tts", ("audio", "text")

    def __init__(self, backbone: FrozenBackbone, listener: str = LISTENER) -> None:
        self.backbone, self.listener = backbone, listener
        self.tokenizer = backbone.processor.tokenizer
        self.extractor = backbone.processor.feature_extractor
        self.reduction = backbone.model.config.reduction_factor
        self.speaker_dim = backbone.model.config.speaker_embedding_dim

    def usable(self, rows: datasets.Dataset) -> datasets.Dataset:
        longest = self.backbone.model.config.max_text_positions - 2  # room for the end token
        return rows.filter(lambda text: len(self.tokenizer(text).input_ids) <= longest, input_columns="text")

    def collate(self, rows: list[dict]) -> dict[str, Any]:
        texts, audio = [row["text"] for row in rows], decode_audio(rows)
        inputs = self.tokenizer(texts, padding=True, return_tensors="pt")
        targets = [self.extractor(audio_target=a, sampling_rate=self.extractor.sampling_rate)["input_values"][0]
                   for a in audio]  # fmt: skip
        frames = max(len(t) for t in targets)
        frames += -frames % self.reduction  # the decoder predicts `reduction` frames per step
        labels = torch.full((len(targets), frames, targets[0].shape[1]), IGNORE_VALUE)
        for row, target in enumerate(targets):
            labels[row, : len(target)] = torch.from_numpy(np.asarray(target))
        return {"input_ids": inputs.input_ids, "attention_mask": inputs.attention_mask,
                "labels": labels.to(self.backbone.input_dtype), "speaker_embeddings": self._speakers(len(texts)),
                "references": texts, "reference_audio": audio}  # fmt: skip

    def _speakers(self, count: int) -> torch.Tensor:
        return torch.zeros(count, self.speaker_dim, dtype=self.backbone.input_dtype)

    def loss(self, model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        keys = ("input_ids", "attention_mask", "labels", "speaker_embeddings")
        return model(**{k: batch[k].to(self.backbone.device) for k in keys}).loss

    def predict(self, model: torch.nn.Module, batch: dict[str, Any]) -> Predictions:
        device = self.backbone.device

        def speak() -> list[np.ndarray]:
            mels, lengths = model.generate_speech(
                batch["input_ids"].to(device), self._speakers(len(batch["references"])).to(device),
                attention_mask=batch["attention_mask"].to(device), maxlenratio=MAX_LENGTH_RATIO,
                return_output_lengths=True,
            )  # fmt: skip
            mels = mels if mels.dim() == 3 else mels.unsqueeze(0)
            return [
                griffin_lim(mel[:length].float().cpu(), self.extractor)
                for mel, length in zip(mels, lengths, strict=True)
            ]

        audio, seconds = timed(speak)
        extras = [{"reference_audio": ref} for ref in batch["reference_audio"]]
        return Predictions(audio, batch["references"], seconds, extras=extras)

    def score(self, predictions: list[Predictions]) -> tuple[dict[str, float], list[dict]]:
        audio = [a for p in predictions for a in p.outputs]
        texts = [t for p in predictions for t in p.references]
        references = [e["reference_audio"] for p in predictions for e in p.extras]
        quality = load_metric("dnsmos").compute(predictions=audio)
        distortion = load_metric("mcd").compute(predictions=audio, references=references)
        heard = self._transcribe(audio)
        metrics = {key: quality[key] for key in ("ovrl_mos", "sig_mos", "bak_mos", "p808_mos")}
        metrics["mcd"] = distortion["mcd"]
        rate = self.extractor.sampling_rate
        scored = zip(texts, audio, distortion["per_clip"], quality["per_clip"], strict=True)
        items = [
            {"reference": t, "seconds": round(len(a) / rate, 3), "mcd": m, **{k: round(v, 3) for k, v in q.items()}}
            for t, a, m, q in scored
        ]
        if heard is not None:
            metrics["cer"] = load_metric("cer").compute(predictions=heard, references=texts)["cer"]
            for item, hypothesis in zip(items, heard, strict=True):
                item["heard"] = hypothesis
        return metrics, items

    def _transcribe(self, audio: list[np.ndarray]) -> list[str] | None:
        """What the listener ASR backbone hears, or None (and a warning) when it is not available."""
        listener = self._listener()
        if listener is None:
            return None
        extractor, tokenizer = listener.processor.feature_extractor, listener.processor.tokenizer
        heard = []
        for start in range(0, len(audio), LISTENER_BATCH):
            chunk = audio[start : start + LISTENER_BATCH]
            features = extractor(chunk, sampling_rate=extractor.sampling_rate, return_tensors="pt").input_features
            with torch.no_grad():
                ids = listener.model.generate(input_features=features)
            heard += [text.strip() for text in tokenizer.batch_decode(ids, skip_special_tokens=True)]
        return heard

    @functools.cache  # noqa: B019  (one listener per task object, loaded on first use)
    def _listener(self) -> FrozenBackbone | None:
        from speechpeft.backbones import load_frozen
        from speechpeft.backbones.builtin import BuiltinNotShippedError

        try:
            return load_frozen(self.listener, "asr", "fp32", device="cpu")
        except BuiltinNotShippedError as error:
            logger.warning("no intelligibility (CER) column: %s", error)
            return None


TASKS.register(
    "tts",
    TaskEntry("tts", SpeechSynthesis.roles, lambda backbone, labels: SpeechSynthesis(backbone),
              "text-to-speech: DNSMOS (OVRL headline), CER through ASR, MCD", ("mcd", "min")),
)  # fmt: skip
