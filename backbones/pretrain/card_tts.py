"""Measure a built-in TTS backbone and write its card: intelligibility through a listener ASR model, and DNSMOS.

    speechpeft backbones ship tiny-speecht5 --run runs/tiny-speecht5 --corpus data/pretrain-corpus
    speechpeft backbones ship tiny-fastspeech2 --run runs/tiny-fastspeech2 --vocoder-run runs/tiny-hifigan \
        --corpus data/tts-corpus-en-us
    speechpeft backbones remeasure tiny-speecht5 --corpus data/pretrain-corpus

Intelligibility is the CER (after the pinned normaliser) of the listener's transcript of the synthesised
speech, next to its CER on the real engine recordings of the same sentences by the same voice. The listener is
the TTS task's (`speechpeft.tasks.tts.LISTENER`, OpenAI's whisper-tiny.en): it reads the recordings well, so
the gap between the two numbers is the TTS model's. Quality is DNSMOS (P.835 and P.808, from the ONNX models
inside the speechmos wheel) of both. `remeasure` measures the shipped weights again (with another listener, or
on a rebuilt corpus) and keeps the card's training facts: it needs no run directory.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import numpy as np
from tqdm.auto import tqdm

from speechpeft.backbones.builtin import WEIGHTS_DIR
from speechpeft.backbones.loading import FrozenBackbone, load_frozen
from speechpeft.backbones.pretrain import card
from speechpeft.backbones.pretrain.card_text import fastspeech2_card, speecht5_card
from speechpeft.directories import staged_replacement
from speechpeft.errors import MissingInputError
from speechpeft.leaderboard.metrics import load_metric
from speechpeft.tasks.tts import LISTENER, VOCODER_DIR, Listener

SAMPLE_RATE = 16_000  # Hz
DNSMOS_KEYS = ("ovrl_mos", "sig_mos", "bak_mos", "p808_mos")
SENTENCES = 64  # held-out sentences and commands measured, at most


def dnsmos(audio: list[np.ndarray]) -> dict[str, float]:
    """Mean DNSMOS scores (1-5) over 16 kHz clips (offline: the models ship inside the speechmos wheel)."""
    from speechmos import dnsmos as model

    scores = [model.run(np.clip(clip, -1.0, 1.0).astype(np.float32), SAMPLE_RATE) for clip in audio]
    return {key: round(float(np.mean([s[key] for s in scores])), 3) for key in DNSMOS_KEYS}


def synthesise(model_dir: Path | str, texts: list[str]) -> list[np.ndarray]:
    """16 kHz speech for each text (fp32, CPU), as the TTS task speaks it (`speak_text`): SpeechT5 from the
    prenet-dropout seed, FastSpeech 2 free-running; through the backbone's vocoder (its HiFi-GAN, or Griffin-Lim)."""
    from speechpeft.tasks.tts import build

    backbone = load_frozen(model_dir, "tts", "fp32", device="cpu")
    task = build(backbone)
    return [task.speak_text(backbone.model, text) for text in tqdm(texts, desc="synthesising", unit="sentence")]


def voice_test_clips(corpus: Path, voice: str, limit: int) -> tuple[list[str], list[np.ndarray]]:
    """Up to `limit` held-out sentences and commands recorded in `voice`: their texts and 16 kHz audio."""
    test = datasets.load_from_disk(str(corpus))["test"]
    rows = test.filter(lambda v, k: v == voice and k != "keyword", input_columns=["voice", "kind"])
    rows = rows.select(range(min(limit, len(rows))))
    return list(rows["text"]), [clip.get_all_samples().data[0].numpy() for clip in rows["audio"]]


def hear(asr_backbone: FrozenBackbone, clips: list[np.ndarray]) -> list[str]:
    """A loaded ASR backbone's transcript of each clip, one at a time (scripts/tts_vocoder_ceiling.py)."""
    return [card.transcribe(asr_backbone, [clip])[0][0] for clip in clips]


def measure_tts(model_dir: Path, corpus: Path, voice: str, asr: str = LISTENER, limit: int = SENTENCES,
                     command: str = "") -> dict:  # fmt: skip
    """CER (0-1, pinned normaliser) of `asr`'s transcripts and DNSMOS of the model's speech and of `voice`'s
    recordings of the same held-out texts; `command` is recorded as what produced the numbers."""
    texts, references = voice_test_clips(corpus, voice, limit)
    generated = synthesise(model_dir, texts)
    listener = Listener(asr)
    if listener.backbone is None:
        raise MissingInputError(f"the listener {asr!r} is not installed: pass another with --asr")
    heard, heard_reference = listener.hear(generated), listener.hear(references)
    cer = load_metric("cer")
    lengths = [len(g) / len(r) for g, r in zip(generated, references, strict=True)]
    return {
        "sentences": len(texts), "voice": voice, "asr": asr, "asr_fingerprint": listener.fingerprint,
        "normalizer": listener.provenance()["normalizer"],
        "cer": cer.compute(predictions=heard, references=texts)["cer"],
        "cer_of_reference_recordings": cer.compute(predictions=heard_reference, references=texts)["cer"],
        "dnsmos": dnsmos(generated), "dnsmos_of_reference_recordings": dnsmos(references),
        "length_ratio": round(float(np.mean(lengths)), 3),
        "examples": [{"text": t, "heard": h} for t, h in zip(texts[:8], heard, strict=False)],
        "corpus_path": str(corpus), "command": command, "machine": card.machine(),
    }  # fmt: skip


def ship_tts(
    run: Path, corpus: Path, asr: str = LISTENER, weights_dir: Path = WEIGHTS_DIR, name: str = "tiny-speecht5",
    sentences: int = SENTENCES, vocoder_run: Path | None = None,
) -> Path:  # fmt: skip
    """Copy the run's best model (and the best HiFi-GAN of `vocoder_run` as its `vocoder/`) into the package,
    measure it, and write its model card.

    As `ship_whisper`: the copy is measured in `NAME.tmp`, so a measurement that raises (the exception
    propagates) or is interrupted leaves the backbone shipped before in place.
    """
    target = weights_dir / name
    command = f"speechpeft backbones ship {name} --run {run} --corpus {corpus} --asr {asr}"
    command += f" --vocoder-run {vocoder_run}" if vocoder_run else ""
    with staged_replacement(target) as staged:
        shutil.copytree(card.best_model(run), staged)
        if vocoder_run:
            shutil.copytree(card.best_model(vocoder_run), staged / VOCODER_DIR)
        training = card.training_summary(run)
        measured = measure_tts(staged, corpus, training["options"]["voice"], asr, sentences, command)
        facts = {"measured": measured, "training": training,
                 "corpus": json.loads((corpus / "synth.json").read_text()), "machine": card.machine(),
                 **({"vocoder": card.training_summary(vocoder_run)} if vocoder_run else {})}  # fmt: skip
        _write_card(staged, facts)
    return target


def remeasure_tts(corpus: Path, asr: str = LISTENER, weights_dir: Path = WEIGHTS_DIR, name: str = "tiny-speecht5",
                  sentences: int = SENTENCES) -> Path:  # fmt: skip
    """Measure the shipped weights again and rewrite their card; the training facts (and the weights) stay.

    The measurement runs on a staged copy, as in `ship_tts`. Raises MissingInputError when no such backbone with a
    card is shipped in `weights_dir`.
    """
    target = weights_dir / name
    facts = card.shipped_facts(target)
    command = f"speechpeft backbones remeasure {name} --corpus {corpus} --asr {asr}"
    with staged_replacement(target) as staged:
        shutil.copytree(target, staged)
        voice = facts["training"]["options"]["voice"]
        measured = measure_tts(staged, corpus, voice, asr, sentences, command)
        corpus_facts = json.loads((corpus / "synth.json").read_text())
        _write_card(staged, {**facts, "measured": measured, "corpus": corpus_facts})
    return target


def _write_card(directory: Path, facts: dict) -> None:
    (directory / card.CARD_FACTS).write_text(json.dumps(facts, indent=1) + "\n")
    family = json.loads((directory / "config.json").read_text())["model_type"]
    writer = fastspeech2_card if family == "fastspeech2_conformer" else speecht5_card
    (directory / "README.md").write_text(writer(directory, facts))
