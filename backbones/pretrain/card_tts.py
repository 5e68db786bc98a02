"""Measure a pretrained tiny-speecht5 and ship it: intelligibility through the ASR backbone, DNSMOS.

    speechpeft backbones ship tiny-speecht5 --run runs/tiny-speecht5 --corpus data/pretrain-corpus

Intelligibility is the CER of tiny-whisper's transcript of the synthesised speech; quality is DNSMOS
(P.835 and P.808, from the ONNX models inside the speechmos wheel), next to the DNSMOS of the real
recordings of the same sentences by the same voice.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import jiwer
import numpy as np
import torch
from tqdm.auto import tqdm

from speechpeft.backbones.builtin import WEIGHTS_DIR
from speechpeft.backbones.loading import load_frozen
from speechpeft.backbones.pretrain.card import best_model, machine, training_summary, transcribe
from speechpeft.backbones.pretrain.card_text import speecht5_card
from speechpeft.backbones.pretrain.speecht5 import SPEAKER_EMBEDDING_DIM
from speechpeft.backbones.vocoder import griffin_lim
from speechpeft.directories import staged_replacement

SAMPLE_RATE = 16_000  # Hz
DNSMOS_KEYS = ("ovrl_mos", "sig_mos", "bak_mos", "p808_mos")


def dnsmos(audio: list[np.ndarray]) -> dict[str, float]:
    """Mean DNSMOS scores over clips (offline: the models ship inside the speechmos wheel)."""
    from speechmos import dnsmos as model

    scores = [model.run(np.clip(clip, -1.0, 1.0).astype(np.float32), SAMPLE_RATE) for clip in audio]
    return {key: round(float(np.mean([s[key] for s in scores])), 3) for key in DNSMOS_KEYS}


def synthesise(model_dir: Path, texts: list[str]) -> list[np.ndarray]:
    backbone = load_frozen(model_dir, "tts", "fp32", device="cpu")
    speaker = torch.zeros(1, SPEAKER_EMBEDDING_DIM)
    clips = []
    for text in tqdm(texts, desc="synthesising", unit="sentence"):
        ids = backbone.processor(text=text, return_tensors="pt").input_ids
        with torch.no_grad():
            mel = backbone.model.generate_speech(ids, speaker, maxlenratio=15.0)
        clips.append(griffin_lim(mel, backbone.processor.feature_extractor))
    return clips


def voice_test_clips(corpus: Path, voice: str, limit: int) -> tuple[list[str], list[np.ndarray]]:
    """Up to `limit` held-out sentences and commands recorded in `voice`: their texts and 16 kHz audio."""
    test = datasets.load_from_disk(str(corpus))["test"]
    rows = test.filter(lambda v, k: v == voice and k != "keyword", input_columns=["voice", "kind"])
    rows = rows.select(range(min(limit, len(rows))))
    return list(rows["text"]), [clip.get_all_samples().data[0].numpy() for clip in rows["audio"]]


def hear(asr_backbone, clips: list[np.ndarray]) -> list[str]:
    """The listener's transcript of each clip, one at a time (no padding shared between clips)."""
    return [transcribe(asr_backbone, [clip])[0][0] for clip in clips]


def measure_speecht5(model_dir: Path, corpus: Path, voice: str, asr: str, limit: int = 64) -> dict:
    texts, references = voice_test_clips(corpus, voice, limit)
    generated = synthesise(model_dir, texts)
    asr_backbone = load_frozen(asr, "asr", "fp32", device="cpu")
    heard, heard_reference = hear(asr_backbone, generated), hear(asr_backbone, references)
    lengths = [len(g) / len(r) for g, r in zip(generated, references, strict=True)]
    return {
        "sentences": len(texts), "voice": voice, "asr": asr,
        "cer": jiwer.cer(texts, heard), "cer_of_reference_recordings": jiwer.cer(texts, heard_reference),
        "dnsmos": dnsmos(generated), "dnsmos_of_reference_recordings": dnsmos(references),
        "length_ratio": round(float(np.mean(lengths)), 3),
        "examples": [{"text": t, "heard": h} for t, h in zip(texts[:8], heard, strict=False)],
    }  # fmt: skip


def ship_speecht5(run: Path, corpus: Path, asr: str = "speechpeft/tiny-whisper", weights_dir: Path = WEIGHTS_DIR,
                  name: str = "tiny-speecht5", sentences: int = 64) -> Path:  # fmt: skip
    """Copy the run's best model into the package, measure it, and write its model card.

    As `ship_whisper`: the copy is measured in `NAME.tmp`, so a measurement that raises (the exception
    propagates) or is interrupted leaves the backbone shipped before in place.
    """
    target = weights_dir / name
    with staged_replacement(target) as staged:
        shutil.copytree(best_model(run), staged)
        training = training_summary(run)
        measured = measure_speecht5(staged, corpus, training["options"]["voice"], asr, sentences)
        facts = {"measured": measured, "training": training,
                 "corpus": json.loads((corpus / "synth.json").read_text()), "machine": machine()}  # fmt: skip
        (staged / "speechpeft_card.json").write_text(json.dumps(facts, indent=1) + "\n")
        (staged / "README.md").write_text(speecht5_card(staged, facts))
    return target
