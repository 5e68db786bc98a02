"""Text-to-speech on a FastSpeech2Conformer backbone (`speechpeft/tiny-fastspeech2`): phoneme input, exact durations.

FastSpeech 2 (https://arxiv.org/abs/2006.04558) is non-autoregressive: to learn it needs each input phoneme's
duration in mel frames, and its pitch and energy. For clips the synthetic corpus rendered with espeak-ng, they
come exact from the engine itself (`speechpeft.backbones.pretrain.phoneme_features`): the row's `voice`, `rate`
and `pitch` columns (`SYNTHESIS_COLUMNS`, written by `speechpeft data synth`) re-time its text. Rows that cannot
be re-timed (another engine, a real recording, no such columns, a resynthesis of another length) are left out of
training and counted by reason (`trainable`); every row is spoken and scored. Pitch and energy labels are
normalised with the backbone's own statistics, recorded in its config.json under "speechpeft" by the pretraining
recipe. Synthesis is free-running (the model's own durations, pitch and energy), one utterance at a time, and
shares the SpeechT5 task's vocoder and scoring.
"""

from __future__ import annotations

import functools
from typing import Any

import datasets
import numpy as np
import torch
from transformers.models.fastspeech2_conformer.modeling_fastspeech2_conformer import (
    FastSpeech2ConformerDurationPredictor,
)

from speechpeft.backbones import FrozenBackbone
from speechpeft.backbones.pretrain.fastspeech2 import LabelledUtterance, pad_batch, token_labels
from speechpeft.backbones.pretrain.phoneme_features import PhonemeLabels, extract_labels
from speechpeft.errors import InputError
from speechpeft.tasks.base import decode_audio
from speechpeft.tasks.corpus.espeak_timing import EspeakTimingError, phoneme_text, phoneme_timings
from speechpeft.tasks.corpus.voices import VOICES
from speechpeft.tasks.rows import LeftOut, Rule, normalises_to_nothing, sift
from speechpeft.tasks.tts import SYNTHESIS_COLUMNS, SpeechSynthesis
from speechpeft.text_input import TextInputError, split_text

ESPEAK_VOICES = frozenset(v.id for v in VOICES if v.engine == "espeak-ng")
NOT_ESPEAK = "not_an_espeak_ng_clip"
MAX_FRAMES_PER_TOKEN = 15  # a predicted duration above this is capped (and counted): 240 ms at the 16 ms hop
TIMING_JOBS = 2  # libespeak-ng processes at once
PHONEMISED_TEXTS = 4096  # phonemisations kept in memory (`_phonemise`)
MAX_PIECE_CHARACTERS = 300  # longer text is spoken in pieces (sentences, then words): attention is quadratic


def _timed(row: dict) -> tuple | None:
    """What identifies a clip's timing: (voice, text, rate, pitch); None for a row without them."""
    if any(row.get(c) is None for c in SYNTHESIS_COLUMNS):
        return None
    return row["voice"], row["text"], float(row["rate"]), float(row["pitch"])


class FastSpeech2Synthesis(SpeechSynthesis):
    """The TTS task for a `fastspeech2_conformer` backbone; scoring (DNSMOS, MCD, CER) is `SpeechSynthesis`'s."""

    context = SYNTHESIS_COLUMNS
    capped_meaning = f"had a predicted phoneme duration above {MAX_FRAMES_PER_TOKEN} mel frames: capped there"

    def __init__(self, backbone: FrozenBackbone, listener: str | None = None) -> None:
        super().__init__(backbone, listener)
        record = getattr(backbone.model.config, "speechpeft", None) or {}
        if "pitch" not in record or "phonemizer" not in record:
            raise InputError(f"{backbone.source} has no phonemizer and pitch/energy statistics in its config.json "
                             "(\"speechpeft\" key): only FastSpeech2 backbones pretrained by `speechpeft backbones "
                             "pretrain tiny-fastspeech2` can be adapted")  # fmt: skip
        self.stats, self.voice = {k: record[k] for k in ("pitch", "energy")}, record["phonemizer"]["voice"]
        self.labels: dict[tuple, PhonemeLabels] = {}

    def usable(self, rows: datasets.Dataset) -> tuple[datasets.Dataset, LeftOut]:
        """Rows with a CER reference: speech is synthesised from the text alone, so any row can be scored."""
        return sift(rows, [normalises_to_nothing(self.normalizer)])

    def trainable(self, rows: datasets.Dataset) -> tuple[datasets.Dataset, LeftOut]:
        """The usable rows libespeak-ng re-times exactly (their labels kept for `collate`); the others are left
        out and counted: `not_an_espeak_ng_clip`, `no_phoneme_timings`, `timing_length_mismatch`.

        Raises InputError when the rows lack the `voice`, `rate` and `pitch` columns altogether."""
        missing = [c for c in SYNTHESIS_COLUMNS if c not in rows.column_names]
        if missing:
            raise InputError(f"{self.backbone.source} learns from clips of `speechpeft data synth` (exact espeak-ng "
                             f"phoneme durations) and the rows lack {', '.join(missing)}: use a synthetic corpus, "
                             "or speechpeft/tiny-speecht5 for other recordings")  # fmt: skip
        rows, left_out = sift(rows, [Rule(NOT_ESPEAK, ("voice",), lambda voice: voice not in ESPEAK_VOICES)])
        labels = extract_labels(rows, self.extractor, TIMING_JOBS)
        kept = [i for i, label in enumerate(labels) if not isinstance(label, str)]
        for i in kept:
            self.labels[_timed(rows[i])] = labels[i]
        for reason in (label for label in labels if isinstance(label, str)):
            left_out[reason] = left_out.get(reason, 0) + 1
        return (rows.select(kept) if len(kept) < len(rows) else rows), left_out

    def collate(self, rows: list[dict]) -> dict[str, Any]:
        """Phoneme ids [B, T] and attention mask; when every row was re-timed (`trainable`), also the labels of
        `pad_batch` (durations [B, T], pitch and energy [B, T, 1], log10 mel [B, frames, 80], -100 padded)."""
        audio = decode_audio(rows)
        if all(_timed(row) in self.labels for row in rows):
            batch = pad_batch([self._labelled(row, clip) for row, clip in zip(rows, audio, strict=True)])
            batch["spectrogram_labels"] = batch["spectrogram_labels"].to(self.backbone.input_dtype)
        else:  # rows to speak and score only: their phonemes as the row's espeak voice says them, if it is one
            ids = [self.tokenizer(self._phonemes_of(row)).input_ids for row in rows]
            batch = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt")
        return {**batch, "references": [row["text"] for row in rows], "reference_audio": audio}

    def _labelled(self, row: dict, audio: np.ndarray) -> LabelledUtterance:
        mel = self.extractor(audio_target=audio, sampling_rate=self.extractor.sampling_rate)["input_values"][0]
        return token_labels(self.labels[_timed(row)], np.asarray(mel, dtype=np.float32), self.tokenizer, self.stats)

    def _phonemes_of(self, row: dict) -> str:
        if row.get("voice") in ESPEAK_VOICES and row.get("rate") is not None and row.get("pitch") is not None:
            return self.phonemes(row["text"], row["voice"], float(row["rate"]), float(row["pitch"]))
        return self.phonemes(row["text"])

    def loss(self, model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        keys = ("input_ids", "attention_mask", "spectrogram_labels", "duration_labels", "pitch_labels",
                "energy_labels")  # fmt: skip
        return model(**{k: batch[k].to(self.backbone.device) for k in keys}).loss

    def speak(self, model: torch.nn.Module, ids: torch.Tensor) -> tuple[np.ndarray, bool]:
        """[tokens] phoneme ids -> 16 kHz waveform [samples], and whether a predicted duration was capped at
        MAX_FRAMES_PER_TOKEN frames (before the length regulator: a diverged model cannot allocate millions of
        frames). The model runs in eval mode (its own durations, pitch and energy), restored to its mode after."""
        capped: list[bool] = []

        def cap(_module, _inputs, frames: torch.Tensor) -> torch.Tensor:  # eval mode: whole frames per token
            capped.append(bool((frames > MAX_FRAMES_PER_TOKEN).any() or (frames < 0).any()))
            return frames.clamp(0, MAX_FRAMES_PER_TOKEN)

        was_training = model.training
        hook = _duration_predictor(model).register_forward_hook(cap)
        model.eval()
        try:
            with torch.no_grad():
                mel = model(input_ids=ids[None].to(self.backbone.device)).spectrogram[0]  # [frames, 80]
        finally:
            hook.remove()
            model.train(was_training)
        return self.vocode(mel), any(capped)

    def text_ids(self, text: str, what: str = "text", name: str | None = None) -> list[torch.Tensor]:
        """`text` as phoneme ids [tokens] per piece: phonemised by espeak-ng with the backbone's voice (it reads
        digits, symbols and abbreviations itself), in pieces of at most `MAX_PIECE_CHARACTERS`.

        Raises TextInputError (naming `what` and the backbone `name`) for text with no letter or digit."""
        if not any(character.isalnum() for character in text):
            raise TextInputError(f"{what} has nothing {name or self.backbone.source} can speak: only punctuation or "
                                 "symbols (read as pauses); send words")  # fmt: skip
        pieces = split_text(text, lambda piece: len(piece) <= MAX_PIECE_CHARACTERS)
        return [self.tokenizer(self.phonemes(piece), return_tensors="pt").input_ids[0] for piece in pieces]

    def phonemes(self, text: str, voice: str | None = None, rate: float = 1.0, pitch: float = 1.0) -> str:
        """`text` as the model's input: espeak-ng phonemes of `voice` (default: the backbone's) at `rate` and `pitch`,
        one character each, words separated by spaces. Raises InputError when the engine cannot phonemise it."""
        return _phonemise(text, voice or self.voice, rate, pitch)


@functools.lru_cache(maxsize=PHONEMISED_TEXTS)
def _phonemise(text: str, voice: str, rate: float, pitch: float) -> str:
    """`phoneme_text` of libespeak-ng's reading (one engine process each), kept for the validation rows every
    evaluation speaks again and for texts a server hears often."""
    try:
        return phoneme_text(phoneme_timings(text, voice, rate, pitch))
    except EspeakTimingError as error:
        raise InputError(f"espeak-ng cannot phonemise {text!r} with {voice}: {error}; check that libespeak-ng is "
                         "installed (`make setup`) and the text is English") from error  # fmt: skip


def _duration_predictor(model: torch.nn.Module) -> torch.nn.Module:
    """The FastSpeech2Conformer duration predictor inside `model` (a bare model, or wrapped by PEFT or the bank)."""
    return next(m for m in model.modules() if isinstance(m, FastSpeech2ConformerDurationPredictor))
