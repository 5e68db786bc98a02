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
from speechpeft.tasks.base import TASKS, Predictions, TaskEntry, decode_audio, seeded, timed
from speechpeft.tasks.rows import LeftOut, Rule, audio_longer_than, normalises_to_nothing, sift, text_longer_than

logger = logging.getLogger(__name__)
IGNORE_VALUE = -100.0  # mel frames the loss skips (padding)
MAX_LENGTH_RATIO = 15.0  # mel frames per input token at most, when generating
DROPOUT_SEED = 0  # the speech-decoder prenet's dropout masks, drawn afresh for every utterance
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

    def usable(self, rows: datasets.Dataset) -> tuple[datasets.Dataset, LeftOut]:
        """Leave out (and count) texts with no words after the normaliser (no CER reference) or longer than the
        text positions, and reference clips of more mel frames than the speech decoder has positions for."""
        config = self.backbone.model.config
        longest = config.max_text_positions - 2  # room for the end token
        text_too_long = text_longer_than(longest, lambda text: self.tokenizer(text).input_ids)
        return sift(rows, [normalises_to_nothing(), text_too_long, self._reference_too_long()])

    def _reference_too_long(self) -> Rule:
        """The decoder reads every `reduction`-th mel frame (1 frame + 1 per hop of samples); past its
        `max_speech_positions` positions the model fails, so the longest usable clip is one sample short of
        `max_speech_positions * reduction` hops."""
        frames = self.backbone.model.config.max_speech_positions * self.reduction
        return audio_longer_than(frames * self.extractor.sample_stride - 1, self.extractor.sampling_rate)

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
        """Speak each text of the batch alone, so that no utterance depends on the batch it is in.

        Batched, the decoder's float rounding differs from a lone utterance's in the last bits, and over hundreds
        of autoregressive steps (through the prenet's dropout) that moves where an utterance stops.
        """
        texts = [ids[mask.bool()] for ids, mask in zip(batch["input_ids"], batch["attention_mask"], strict=True)]
        spoken, seconds = timed(lambda: [self._speak(model, ids) for ids in texts])
        extras = [{"reference_audio": reference, "capped": capped}
                  for reference, (_, capped) in zip(batch["reference_audio"], spoken, strict=True)]  # fmt: skip
        return Predictions([audio for audio, _ in spoken], batch["references"], seconds, extras=extras)

    def _speak(self, model: torch.nn.Module, ids: torch.Tensor) -> tuple[np.ndarray, bool]:
        """[tokens] ids -> waveform, and whether the decoder ran to its length cap (predicted no end before it).

        The prenet keeps its dropout at inference: every utterance draws its masks from the same seed.
        """
        device, steps = self.backbone.device, self._max_steps(len(ids))
        with seeded(device, DROPOUT_SEED):
            mel = model.generate_speech(  # [frames, mel bins]; `maxlenratio` gives exactly `steps` steps at most
                ids[None].to(device),
                self._speakers(1).to(device),
                maxlenratio=(steps + 0.5) * self.reduction / len(ids),
            )
        return griffin_lim(mel.float().cpu(), self.extractor), len(mel) >= steps * self.reduction

    def _max_steps(self, tokens: int) -> int:
        """Decoder steps (of `reduction` frames) a text of `tokens` may take: MAX_LENGTH_RATIO frames per token,
        within the decoder's positions."""
        limit = self.backbone.model.config.max_speech_positions - 1
        return min(int(tokens * MAX_LENGTH_RATIO) // self.reduction, limit)

    def score(self, predictions: list[Predictions]) -> tuple[dict[str, float], list[dict]]:
        audio = [a for p in predictions for a in p.outputs]
        texts = [t for p in predictions for t in p.references]
        references = [e["reference_audio"] for p in predictions for e in p.extras]
        capped = [e.get("capped", False) for p in predictions for e in p.extras]
        quality = load_metric("dnsmos").compute(predictions=audio)
        distortion = load_metric("mcd").compute(predictions=audio, references=references)
        heard = self._transcribe(audio)
        metrics = {key: quality[key] for key in ("ovrl_mos", "sig_mos", "bak_mos", "p808_mos")}
        metrics["mcd"], metrics["capped_utterances"] = distortion["mcd"], sum(capped)
        if any(capped):
            logger.warning("%d of %d utterances never stopped: cut at their cap of %s mel frames per input token",
                           sum(capped), len(capped), MAX_LENGTH_RATIO)  # fmt: skip
        rate = self.extractor.sampling_rate
        scored = zip(texts, audio, distortion["per_clip"], quality["per_clip"], capped, strict=True)
        items = [
            {"reference": t, "seconds": round(len(a) / rate, 3), "capped": c, "mcd": m,
             **{k: round(v, 3) for k, v in q.items()}}
            for t, a, m, q, c in scored
        ]  # fmt: skip
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
            features = extractor(chunk, sampling_rate=extractor.sampling_rate, return_tensors="pt",
                                 return_attention_mask=True)  # fmt: skip
            with torch.no_grad():
                ids = listener.model.generate(**features)
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
