"""Text-to-speech with SpeechT5: mel targets, Griffin-Lim audio, and the leaderboard's quality columns.

The headline MOS proxy is DNSMOS OVRL (offline, from the speechmos wheel); next to it: DNSMOS SIG,
BAK and P.808, intelligibility (CER of a listener ASR model's transcript of the synthesised speech, by default
OpenAI's whisper-tiny.en) and mel-cepstral distortion against the reference recording. The speaker embedding
is all zeros: an adapter learns its voice from its training data rather than from an x-vector that needs a
download.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch

from speechpeft.backbones import FrozenBackbone
from speechpeft.backbones.vocoder import griffin_lim, hifigan, load_hifigan
from speechpeft.errors import InputError, MissingInputError
from speechpeft.leaderboard.metrics import load_metric
from speechpeft.leaderboard.normalize import NORMALIZER, warn_vanished
from speechpeft.tasks.asr import PROMPT_TOKENS, english_prompt
from speechpeft.tasks.base import TASKS, Predictions, TaskEntry, decode_audio, seeded, timed
from speechpeft.tasks.rows import LeftOut, Rule, audio_longer_than, normalises_to_nothing, sift, text_longer_than
from speechpeft.tasks.runaway import token_cap
from speechpeft.text_input import spell, split_text

logger = logging.getLogger(__name__)
IGNORE_VALUE = -100.0  # mel frames the loss skips (padding)
MAX_LENGTH_RATIO = 15.0  # mel frames per input token at most, when generating
DROPOUT_SEED = 0  # the speech-decoder prenet's dropout masks, drawn afresh for every utterance
# The ASR model that measures intelligibility: real Whisper trained on 680,000 h, so a high CER is the TTS's
# fault, not the listener's. English-only, so it needs no language prompt.
LISTENER = "openai/whisper-tiny.en"
LISTENER_VARIABLE = "SPEECHPEFT_TTS_LISTENER"  # names another listener (the test suite: speechpeft/tiny-whisper)
LISTENER_BATCH = 16  # clips transcribed at once (each is padded to the listener's window)
VOCODER_DIR = "vocoder"  # a trained HiFi-GAN inside a TTS backbone's directory (`backbones pretrain tiny-hifigan`)
SYNTHESIS_COLUMNS = ("voice", "rate", "pitch")  # how `speechpeft data synth` rendered a clip (FastSpeech2 re-times it)


def default_listener() -> str:
    """The listener a TTS task uses unless told another: $SPEECHPEFT_TTS_LISTENER, else LISTENER."""
    return os.environ.get(LISTENER_VARIABLE) or LISTENER


class Listener:
    """A Whisper-family ASR backbone (fp32, CPU, greedy) that transcribes synthesised speech for the CER column."""

    def __init__(self, name: str) -> None:
        self.name = name

    @functools.cached_property
    def backbone(self) -> FrozenBackbone | None:
        """Loaded on first use; None (and a warning) when its weights are not installed here."""
        from speechpeft.backbones import BackboneNotFoundError, load_frozen

        try:
            backbone = load_frozen(self.name, "asr", "fp32", device="cpu")
        except (MissingInputError, BackboneNotFoundError) as error:
            logger.warning("no intelligibility (CER) column: %s", error)
            return None
        if backbone.spec.family != "whisper":
            raise InputError(f"listener {self.name!r} is a {backbone.spec.family} model: name a Whisper checkpoint "
                             f"in ${LISTENER_VARIABLE}, or unset it for {LISTENER}")  # fmt: skip
        return backbone

    @functools.cached_property
    def fingerprint(self) -> str | None:
        """sha256 of the listener's safetensors weights (`backbones.fingerprint`), None when it is not installed."""
        from speechpeft.backbones.fingerprint import local_weights_dir, weights_fingerprint

        weights = local_weights_dir(self.backbone.source) if self.backbone else None
        return weights_fingerprint(weights) if weights else None

    def provenance(self) -> dict[str, str | None]:
        """What produced a CER: the listener's id, where it was loaded from (for a converted or built-in id, the local
        directory), its weights' fingerprint, and the text normaliser; None for what an absent listener lacks."""
        source = self.backbone.source if self.backbone else None
        return {"listener": self.name, "listener_source": source, "listener_fingerprint": self.fingerprint,
                "normalizer": NORMALIZER}  # fmt: skip

    def hear(self, audio: list[np.ndarray]) -> list[str] | None:
        """Each 16 kHz clip's transcript, or None when the listener is not installed (see `token_ids`)."""
        if self.backbone is None:
            return None
        tokenizer = self.backbone.processor.tokenizer
        ids = [ids for start in range(0, len(audio), LISTENER_BATCH)
               for ids in self.token_ids(audio[start : start + LISTENER_BATCH])]  # fmt: skip
        return [text.strip() for text in tokenizer.batch_decode(ids, skip_special_tokens=True)]

    def token_ids(self, clips: list[np.ndarray]) -> list[list[int]]:
        """The text token ids of each clip's greedy transcript (no prompt, end or padding tokens).

        They do not depend on the clips batched together: every clip is padded to the listener's window, and each
        is cut at its own `token_cap` (a looping decoder stops there, not at 448 tokens), within the decoder's
        positions.
        """
        extractor, tokenizer = self.backbone.processor.feature_extractor, self.backbone.processor.tokenizer
        positions = self.backbone.model.config.max_target_positions - PROMPT_TOKENS
        caps = [min(token_cap(len(clip) / extractor.sampling_rate), positions) for clip in clips]
        features = extractor(clips, sampling_rate=extractor.sampling_rate, return_tensors="pt",
                             return_attention_mask=True)  # fmt: skip
        with torch.no_grad():  # max_length=None: the cap alone bounds decoding (and transformers does not warn)
            generated = self.backbone.model.generate(**features, max_new_tokens=max(caps), max_length=None,
                                                     **english_prompt(self.backbone.model))  # fmt: skip
        special = set(tokenizer.all_special_ids)
        text_ids = [[t for t in row.tolist() if t not in special] for row in generated]
        return [ids[:cap] for ids, cap in zip(text_ids, caps, strict=True)]


class SpeechSynthesis:
    """The TTS task on a SpeechT5 backbone; its scoring is shared by every TTS family (`tts_fastspeech2`)."""

    name, kind, roles, context = "tts", "tts", ("audio", "text"), ()
    normalizer: str = NORMALIZER  # the text normaliser the listener's CER is computed after (`leaderboard.normalize`)
    capped_meaning = f"never stopped: cut at their cap of {MAX_LENGTH_RATIO} mel frames per input token"

    def __init__(self, backbone: FrozenBackbone, listener: str | None = None) -> None:
        self.backbone, self.listener = backbone, Listener(listener or default_listener())
        self.tokenizer = backbone.processor.tokenizer
        self.extractor = backbone.processor.feature_extractor
        self.reduction = getattr(backbone.model.config, "reduction_factor", 1)
        self.speaker_dim = getattr(backbone.model.config, "speaker_embedding_dim", None)
        shipped = Path(str(backbone.source)) / VOCODER_DIR
        self.vocoder_dir = shipped if (shipped / "config.json").is_file() else None
        self.vocoder = load_hifigan(self.vocoder_dir) if self.vocoder_dir else None

    def vocode(self, mel: torch.Tensor) -> np.ndarray:
        """[frames, 80] log10 mel -> float32 waveform [samples] at 16 kHz, peak 0.7: the backbone's own HiFi-GAN
        (its `vocoder/` directory) when it ships one, else Griffin-Lim (`backbones.vocoder`)."""
        mel = mel.float().cpu()
        return hifigan(mel, self.vocoder) if self.vocoder is not None else griffin_lim(mel, self.extractor)

    def usable(self, rows: datasets.Dataset) -> tuple[datasets.Dataset, LeftOut]:
        """Leave out (and count) texts with no words after the normaliser (no CER reference) or longer than the
        text positions, and reference clips of more mel frames than the speech decoder has positions for."""
        config = self.backbone.model.config
        longest = config.max_text_positions - 2  # room for the end token
        text_too_long = text_longer_than(longest, lambda text: self.tokenizer(text).input_ids)
        return sift(rows, [normalises_to_nothing(self.normalizer), text_too_long, self._reference_too_long()])

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
        """Speak each text of the batch alone (`speak`), so that no utterance depends on the batch it is in.

        Batched, SpeechT5's decoder rounds differently from a lone utterance in the last bits, and over hundreds of
        autoregressive steps (through the prenet's dropout) that moves where an utterance stops; FastSpeech 2's
        decoder has no padding mask in eval mode, so a batched utterance would attend to its neighbours' padding.
        """
        texts = [ids[mask.bool()] for ids, mask in zip(batch["input_ids"], batch["attention_mask"], strict=True)]
        spoken, seconds = timed(lambda: [self.speak(model, ids) for ids in texts])
        extras = [{"reference_audio": reference, "capped": capped}
                  for reference, (_, capped) in zip(batch["reference_audio"], spoken, strict=True)]  # fmt: skip
        return Predictions([audio for audio, _ in spoken], batch["references"], seconds, extras=extras)

    def speak(self, model: torch.nn.Module, ids: torch.Tensor) -> tuple[np.ndarray, bool]:
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
        return self.vocode(mel), len(mel) >= steps * self.reduction

    def speak_text(self, model: torch.nn.Module, text: str, what: str = "text", name: str | None = None) -> np.ndarray:
        """`text` spoken whole, float32 [samples] at 16 kHz: each piece of `text_ids` spoken alone (`speak`), joined;
        `what` and the backbone's `name` word the errors about the text."""
        pieces = [self.speak(model, ids)[0] for ids in self.text_ids(text, what, name)]
        return np.concatenate(pieces).astype(np.float32)

    def text_ids(self, text: str, what: str = "text", name: str | None = None) -> list[torch.Tensor]:
        """`text` as token ids [tokens] per piece: in the characters the tokenizer spells (`text_input.spell`;
        TextInputError for one it cannot), in pieces the text positions hold."""
        text = spell(text, self.tokenizer, name or str(self.backbone.source), what)
        limit = self.backbone.model.config.max_text_positions - 2
        pieces = split_text(text, lambda piece: len(self.tokenizer(piece).input_ids) <= limit)
        return [self.tokenizer(piece, return_tensors="pt").input_ids[0] for piece in pieces]

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
        heard = self.listener.hear(audio)
        metrics = {key: quality[key] for key in ("ovrl_mos", "sig_mos", "bak_mos", "p808_mos")}
        metrics["mcd"], metrics["capped_utterances"] = distortion["mcd"], sum(capped)
        if any(capped):
            logger.warning("%d of %d utterances %s", sum(capped), len(capped), self.capped_meaning)
        rate = self.extractor.sampling_rate
        scored = zip(texts, audio, distortion["per_clip"], quality["per_clip"], capped, strict=True)
        items = [
            {"reference": t, "seconds": round(len(a) / rate, 3), "capped": c, "mcd": m,
             **{k: round(v, 3) for k, v in q.items()}}
            for t, a, m, q, c in scored
        ]  # fmt: skip
        if heard is not None:
            cer = load_metric("cer").compute(predictions=heard, references=texts, normalize=self.normalizer)
            metrics["cer"] = cer["cer"]
            if vanished := warn_vanished(texts + heard, self.normalizer):
                metrics["vanished_letters"] = vanished
            for item, hypothesis in zip(items, heard, strict=True):
                item["heard"] = hypothesis
        return metrics, items

    def provenance(self) -> dict[str, str | None]:
        """What produced the CER column (`Listener.provenance`) and the speech (`vocoder`: "griffin-lim", or the
        HiFi-GAN's directory), for a result to record next to its metrics."""
        vocoder = str(self.vocoder_dir) if self.vocoder_dir else "griffin-lim"
        return {**self.listener.provenance(), "normalizer": self.normalizer, "vocoder": vocoder}


def build(backbone: FrozenBackbone, labels: list[str] | None = None) -> SpeechSynthesis:
    """The TTS task of the backbone's family: SpeechT5 (characters in) or FastSpeech2Conformer (phonemes in)."""
    if backbone.spec.family == "fastspeech2_conformer":
        from speechpeft.tasks.tts_fastspeech2 import FastSpeech2Synthesis

        return FastSpeech2Synthesis(backbone)
    return SpeechSynthesis(backbone)


TASKS.register(
    "tts",
    TaskEntry("tts", SpeechSynthesis.roles, build, "text-to-speech: DNSMOS (OVRL headline), CER through ASR, MCD",
              ("mcd", "min"), context=SYNTHESIS_COLUMNS),
)  # fmt: skip
