"""Speech recognition with a sequence-to-sequence backbone (Whisper; SpeechT5 speech-to-text).

Targets are the processor's token ids of the transcript; decoding is the model's `generate` (greedy
unless the backbone's generation config says otherwise); metrics are WER and CER after the pinned
normaliser, and RTFx, the inverse real-time factor: audio seconds / compute seconds (higher is faster; the
Open ASR Leaderboard's speed column; RTF is its inverse).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import datasets
import numpy as np
import torch

from speechpeft.adapters import routing
from speechpeft.backbones import FrozenBackbone
from speechpeft.backbones.window import encoder_window, windowed_extractor
from speechpeft.leaderboard.metrics import load_metric
from speechpeft.leaderboard.normalize import NORMALIZER, normalizer, warn_vanished
from speechpeft.tasks.base import TASKS, Predictions, TaskEntry, decode_audio, model_inputs, timed
from speechpeft.tasks.features import acoustic_inputs, predict_in_exact_groups, window_inputs
from speechpeft.tasks.rows import LeftOut, fixed_window, normalises_to_nothing, sift, text_longer_than
from speechpeft.tasks.runaway import ran_away, token_cap

IGNORE_INDEX = -100  # label positions the loss skips (padding)
PROMPT_TOKENS = 4  # the longest Whisper decoder prompt: start of transcript, language, task, no timestamps
logger = logging.getLogger(__name__)
# transformers 5 warns on every Whisper generate call: its own code passes the suppress lists back in, and
# `max_new_tokens` (our runaway cap) is read as clashing with the checkpoint's max_length. Neither is actionable.
_GENERATE_NOISE = ("generation-related arguments", "seem to have been set. `max_new_tokens` will take precedence")


class _DropGenerateNoise(logging.Filter):
    """Drops exactly the two transformers messages in `_GENERATE_NOISE`; every other warning passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not any(noise in record.getMessage() for noise in _GENERATE_NOISE)


logging.getLogger("transformers.generation.utils").addFilter(_DropGenerateNoise())


class SpeechRecognition:
    name, kind, roles = "asr", "asr", ("audio", "text")
    normalizer: str = NORMALIZER  # the text normaliser WER and CER are computed after (`leaderboard.normalize`)

    def __init__(self, backbone: FrozenBackbone) -> None:
        self.backbone = backbone
        self.tokenizer = backbone.processor.tokenizer
        self.extractor = backbone.processor.feature_extractor
        self.generate_kwargs = english_prompt(backbone.model)
        self.num_beams: int | None = None  # beam search width; None: the model's generation config (greedy)
        if self.generate_kwargs:  # multilingual Whisper: train on the prompt that generation uses
            self.tokenizer.set_prefix_tokens(**self.generate_kwargs)

    def usable(self, rows: datasets.Dataset) -> tuple[datasets.Dataset, LeftOut]:
        """Leave out (and count) transcripts with no words after the normaliser or longer than the decoder's
        positions, and clips longer than a fixed-window extractor's window (Whisper would cut them)."""
        config = self.backbone.model.config
        longest = getattr(config, "max_target_positions", None) or config.max_text_positions
        rules = [normalises_to_nothing(self.normalizer), text_longer_than(longest, self._target_ids)]
        return sift(rows, rules + fixed_window(self.extractor))

    def collate(self, rows: list[dict]) -> dict[str, Any]:
        texts = [row["text"] for row in rows]
        ids = [self._target_ids(text) for text in texts]
        labels = torch.full((len(ids), max(map(len, ids))), IGNORE_INDEX)
        for row, seq in enumerate(ids):
            labels[row, : len(seq)] = torch.tensor(seq)
        return {**self.audio_batch(decode_audio(rows)), "labels": labels, "references": texts}

    def audio_batch(self, audio: list[np.ndarray]) -> dict[str, Any]:
        """What `predict` needs of clips with no transcript (mono float32 at the extractor's rate)."""
        inputs = window_inputs(self.backbone, self.extractor, audio)
        seconds = sum(len(a) for a in audio) / self.extractor.sampling_rate
        return {**inputs, "references": [""] * len(audio), "audio_seconds": seconds, "audio": audio}

    def _target_ids(self, text: str) -> list[int]:
        ids = self.tokenizer(text).input_ids
        start = self.backbone.model.config.decoder_start_token_id
        return ids[1:] if ids and ids[0] == start else ids  # the model prepends the start token itself

    def loss(self, model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        return model(**model_inputs(batch, self.backbone.device)).loss

    def predict(self, model: torch.nn.Module, batch: dict[str, Any]) -> Predictions:
        """Transcripts, each as if its clip were alone in the batch (see `predict_in_exact_groups`).

        With a short Whisper window (`load_frozen(window_seconds=...)`) each clip that fits it is decoded there,
        capped by its length, and decoded again at the full window when it hits its cap or repeats itself
        (`tasks.runaway`); longer clips get the full window. `extras` say which window each transcript came from.
        """
        caps = [self._token_cap(len(clip) / self.extractor.sampling_rate) for clip in batch["audio"]]
        if self.backbone.window_seconds is None:
            ids, seconds = predict_in_exact_groups(
                self.backbone, self.extractor, batch,
                lambda inputs: self._generate(model, inputs, max_new_tokens=max(caps)),
            )  # fmt: skip
            ids = [self._text_ids(seq)[:cap] for seq, cap in zip(ids, caps, strict=True)]
            windows = [getattr(self.extractor, "chunk_length", None)] * len(ids)  # None: SpeechT5's extractor
        else:
            ids, windows, seconds = self._predict_windowed(model, batch["audio"], caps)
        texts = [t.strip() for t in self.tokenizer.batch_decode(ids, skip_special_tokens=True)]
        extras = [{"window_seconds": w} for w in windows]
        return Predictions(texts, batch["references"], seconds, batch["audio_seconds"], extras)

    def _predict_windowed(
        self, model: torch.nn.Module, audio: list, caps: list[int]
    ) -> tuple[list[list[int]], list[float], float]:
        """Text ids per clip (at most its cap), the window (seconds) each was decoded at, and the compute seconds."""
        short = windowed_extractor(self.extractor, self.backbone.window_seconds)
        ids: list[list[int] | None] = [None] * len(audio)
        windows, seconds = [float(self.extractor.chunk_length)] * len(audio), 0.0
        fits = [i for i, clip in enumerate(audio) if len(clip) <= short.n_samples]
        if fits:
            with routing.rows(fits):
                decoded, seconds = self._decode(model, short, [audio[i] for i in fits], [caps[i] for i in fits])
            for i, sequence in zip(fits, decoded, strict=True):
                if not ran_away(sequence, caps[i]):
                    ids[i], windows[i] = sequence, short.chunk_length
        rest = [i for i, sequence in enumerate(ids) if sequence is None]
        if rest:  # too long for the short window, or ran away there
            with routing.rows(rest):
                decoded, elapsed = self._decode(
                    model, self.extractor, [audio[i] for i in rest], [caps[i] for i in rest]
                )
            seconds += elapsed
            for i, sequence in zip(rest, decoded, strict=True):
                ids[i] = sequence
        return ids, windows, seconds

    def _token_cap(self, seconds: float) -> int:
        """`token_cap`, within what the decoder's positions leave after the longest Whisper prompt."""
        config = self.backbone.model.config  # Whisper: max_target_positions; SpeechT5: max_text_positions
        positions = getattr(config, "max_target_positions", None) or config.max_text_positions
        return min(token_cap(seconds), positions - PROMPT_TOKENS)

    def _decode(
        self, model: torch.nn.Module, extractor, clips: list, caps: list[int]
    ) -> tuple[list[list[int]], float]:
        """Greedy text ids of `clips` padded to `extractor`'s window, with the encoder at that window, each cut at
        its cap (greedy decoding is prefix-stable, so a clip's ids do not depend on the caps of its batch)."""
        inputs = acoustic_inputs(extractor, clips, self.backbone.input_dtype)
        inputs = model_inputs(inputs, self.backbone.device, labels=False)
        with encoder_window(self.backbone.model, inputs["input_features"].shape[-1]):
            decoded, seconds = timed(lambda: self._generate(model, inputs, max_new_tokens=max(caps)))
        return [self._text_ids(sequence)[:cap] for sequence, cap in zip(decoded, caps, strict=True)], seconds

    def _generate(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor], **limits: int) -> list[torch.Tensor]:
        features = inputs.get("input_features")
        if features is not None and "attention_mask" not in inputs:  # Whisper's encoder reads its whole window
            inputs["attention_mask"] = features.new_ones(features.shape[::2], dtype=torch.long)
        beams = {"num_beams": self.num_beams} if self.num_beams is not None else {}
        return list(model.generate(**inputs, **self.generate_kwargs, **beams, **limits).cpu())

    def _text_ids(self, sequence: torch.Tensor) -> list[int]:
        """A generated sequence's token ids without the decoder prompt, end token and padding."""
        special = set(self.tokenizer.all_special_ids)
        return [token for token in sequence.tolist() if token not in special]

    def score(self, predictions: list[Predictions]) -> tuple[dict[str, float], list[dict]]:
        hypotheses = [h for p in predictions for h in p.outputs]
        references = [r for p in predictions for r in p.references]
        pairs = {"predictions": hypotheses, "references": references, "normalize": self.normalizer}
        wer, cer = load_metric("wer").compute(**pairs), load_metric("cer").compute(**pairs)
        compute = sum(p.seconds for p in predictions)
        speed = sum(p.audio_seconds for p in predictions) / compute if compute else 0.0
        metrics = {"wer": wer["wer"], "cer": cer["cer"], "rtfx": speed}
        if vanished := warn_vanished(references + hypotheses, self.normalizer):
            metrics["vanished_letters"] = vanished
        windows = [e.get("window_seconds") for p in predictions for e in p.extras] or [None] * len(hypotheses)
        if self.backbone.window_seconds is not None:  # decoded at the full window: too long, or ran away
            metrics["full_window_utterances"] = sum(w != self.backbone.window_seconds for w in windows)
        normalize = normalizer(self.normalizer)
        items = [
            {**_item_record(r, h, normalize), **({"window_seconds": w} if w is not None else {})}
            for r, h, w in zip(references, hypotheses, windows, strict=True)
        ]
        return metrics, items


def _item_record(reference: str, hypothesis: str, normalize: Callable[[str], str]) -> dict:
    import jiwer

    ref, hyp = normalize(reference), normalize(hypothesis)
    words = len(ref.split())
    errors = jiwer.process_words(ref, hyp) if ref else None
    edits = errors.substitutions + errors.deletions + errors.insertions if errors else len(hyp.split())
    return {"reference": reference, "hypothesis": hypothesis, "word_errors": edits, "reference_words": words}


def english_prompt(model: torch.nn.Module) -> dict[str, str]:
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
        self.in_vocabulary_case = _vocabulary_case(self.tokenizer)
        self.unknown_characters: set[str] = set()  # already warned about
        # a summed CTC loss grows with utterance length and an impossible alignment is infinite: tame both
        backbone.model.config.ctc_loss_reduction, backbone.model.config.ctc_zero_infinity = "mean", True

    def usable(self, rows: datasets.Dataset) -> tuple[datasets.Dataset, LeftOut]:
        """Leave out (and count) transcripts with no words after the normaliser; clips of any length fit."""
        return sift(rows, [normalises_to_nothing(self.normalizer)])

    def _target_ids(self, text: str) -> list[int]:
        """Character ids of `text` in the vocabulary's case (wav2vec2-base-960h spells "A".."Z")."""
        text = self.in_vocabulary_case(text)
        ids = self.tokenizer(text).input_ids
        if self.tokenizer.unk_token_id in ids:
            self._warn_unknown(text)
        return ids

    def _warn_unknown(self, text: str) -> None:
        vocabulary = self.tokenizer.get_vocab()
        new = {c for c in text if c != " " and c not in vocabulary} - self.unknown_characters
        if new:
            self.unknown_characters |= new
            logger.warning("characters %s are not in the CTC vocabulary: targets spell them %s (e.g. in %r)",
                           " ".join(sorted(new)), self.tokenizer.unk_token, text)  # fmt: skip

    def predict(self, model: torch.nn.Module, batch: dict[str, Any]) -> Predictions:
        """Greedy CTC transcripts, each as if its clip were alone in the batch (see `predict_in_exact_groups`)."""

        def best_paths(inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
            return list(model(**inputs).logits.argmax(-1).cpu())  # one [frames] path per clip

        paths, seconds = predict_in_exact_groups(self.backbone, self.extractor, batch, best_paths)
        # frames past a clip's own end (padding in its group) were never trained: cut them before decoding
        lengths = torch.tensor([len(clip) for clip in batch["audio"]])
        frames = self.backbone.model._get_feat_extract_output_lengths(lengths).tolist()
        cut = [path[:n] for path, n in zip(paths, frames, strict=True)]
        texts = [t.strip() for t in self.tokenizer.batch_decode(cut)]  # collapse repeats, drop blanks
        return Predictions(texts, batch["references"], seconds, batch["audio_seconds"])


def _vocabulary_case(tokenizer) -> Callable[[str], str]:
    """`str.upper` for a vocabulary whose letters are all upper case, `str.lower` for all lower case, else as is."""
    letters = [token for token in tokenizer.get_vocab() if len(token) == 1 and token.isalpha()]
    if letters and all(letter.isupper() for letter in letters):
        return str.upper
    if letters and all(letter.islower() for letter in letters):
        return str.lower
    return str


def _build(backbone: FrozenBackbone, labels: list[str] | None) -> SpeechRecognition:
    encoder_decoder = backbone.model.config.is_encoder_decoder
    return SpeechRecognition(backbone) if encoder_decoder else CtcSpeechRecognition(backbone)


TASKS.register("asr", TaskEntry("asr", SpeechRecognition.roles, _build,
                                "speech recognition: WER, CER, RTFx", ("wer", "min")))  # fmt: skip
