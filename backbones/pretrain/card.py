"""Measure a pretrained tiny-whisper on the corpus's test split, ship it into the package, write its card.

    speechpeft backbones ship tiny-whisper --run runs/tiny-whisper --corpus data/pretrain-corpus

Every number in the card comes from this measurement or from the run's own curves and options.
"""

from __future__ import annotations

import itertools
import json
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import datasets
import jiwer
import numpy as np
import torch
from tqdm.auto import tqdm

from speechpeft.backbones.builtin import WEIGHTS_DIR
from speechpeft.backbones.loading import FrozenBackbone, load_frozen
from speechpeft.backbones.pretrain.card_text import whisper_card
from speechpeft.directories import recover_directory, staged_replacement

BATCH = 32
SESSION_GAP_S = 600  # a longer pause between two curve entries is a stopped-and-resumed run, not training


@dataclass(frozen=True)
class GroupScore:
    utterances: int
    wer: float
    cer: float


def transcribe(backbone: FrozenBackbone, audio: list[np.ndarray]) -> tuple[list[str], float]:
    """Greedy transcripts of 16 kHz clips, and the compute seconds they took."""
    extractor, tokenizer = backbone.processor.feature_extractor, backbone.processor.tokenizer
    started = time.perf_counter()
    features = extractor(audio, sampling_rate=extractor.sampling_rate, return_tensors="pt").input_features
    with torch.no_grad():
        ids = backbone.model.generate(input_features=features)
    texts = [text.strip() for text in tokenizer.batch_decode(ids, skip_special_tokens=True)]
    return texts, time.perf_counter() - started


def transcribe_split(model_dir: Path, rows: datasets.Dataset) -> tuple[list[str], float]:
    """Hypotheses for every row, and RTFx = audio seconds / compute seconds (higher is faster; RTF is its inverse)."""
    backbone = load_frozen(model_dir, "asr", "fp32", device="cpu")
    hypotheses, compute = [], 0.0
    for start in tqdm(range(0, len(rows), BATCH), desc="transcribing", unit="batch"):
        audio = [clip.get_all_samples().data[0].numpy() for clip in rows[start : start + BATCH]["audio"]]
        texts, seconds = transcribe(backbone, audio)
        hypotheses += texts
        compute += seconds
    return hypotheses, sum(rows["duration"]) / compute


def measure_whisper(model_dir: Path, corpus: Path) -> dict:
    """WER and CER on held-out texts, per voice group (pretrain voices vs adaptation voices) and per kind."""
    window = json.loads((model_dir / "config.json").read_text())["max_source_positions"] * 2 / 100  # seconds
    test = datasets.load_from_disk(str(corpus))["test"]
    fits = test.filter(lambda duration: duration <= window, input_columns="duration")  # no audio decoding
    hypotheses, rtfx = transcribe_split(model_dir, fits)
    rows = fits.select_columns(["voice_group", "kind", "text", "voice"]).to_list()
    scores = {}
    for group in ("pretrain", "adapt"):
        for kind in ("all", "sentence", "command", "keyword"):
            picked = [i for i, r in enumerate(rows) if r["voice_group"] == group and kind in ("all", r["kind"])]
            if picked:
                refs, hyps = [rows[i]["text"] for i in picked], [hypotheses[i] for i in picked]
                scores[f"{group}/{kind}"] = GroupScore(
                    len(picked), jiwer.wer(refs, hyps), jiwer.cer(refs, hyps)
                ).__dict__
    examples = [{"voice": r["voice"], "reference": r["text"], "hypothesis": h[:200]}
                for r, h in zip(rows[:8], hypotheses, strict=False)]  # fmt: skip
    return {"scores": scores, "rtfx": round(rtfx, 1), "window_seconds": window,
            "left_out_longer_than_window": len(test) - len(fits), "examples": examples}  # fmt: skip


def training_summary(run: Path) -> dict:
    """Steps, training wall time (pauses between sessions left out) and the best evaluation, from the run."""
    curves = [json.loads(line) for line in (run / "curves.jsonl").read_text().splitlines()]
    recover_directory(run / "checkpoint")
    times = [c["time"] for c in curves]
    seconds = sum(b - a for a, b in itertools.pairwise(times) if b - a < SESSION_GAP_S)
    state = json.loads((run / "checkpoint" / "state.json").read_text())
    summary = {"steps": state["step"], "train_hours": round(seconds / 3600, 2), "best": state["best"],
               "options": state["options"]}  # fmt: skip
    corpus_card = Path(state["options"]["corpus"]) / "synth.json"
    if corpus_card.exists():
        summary["corpus"] = json.loads(corpus_card.read_text())
    init_from = state["options"].get("init_from")
    if init_from and (Path(init_from).parent / "curves.jsonl").exists():
        summary["continues"] = training_summary(Path(init_from).parent)  # the stage this run started from
    return summary


def ship_whisper(run: Path, corpus: Path, weights_dir: Path = WEIGHTS_DIR, name: str = "tiny-whisper") -> Path:
    """Copy the run's best model into the package, measure it, and write its model card.

    The copy is measured in `NAME.tmp` and replaces the shipped backbone only once its card is written: when the
    measurement raises (or is interrupted) the backbone shipped before stays, and the exception propagates.
    """
    target = weights_dir / name
    with staged_replacement(target) as staged:
        shutil.copytree(best_model(run), staged)
        facts = {"measured": measure_whisper(staged, corpus), "training": training_summary(run),
                 "corpus": json.loads((corpus / "synth.json").read_text()), "corpus_path": str(corpus),
                 "machine": machine()}  # fmt: skip
        (staged / "speechpeft_card.json").write_text(json.dumps(facts, indent=1) + "\n")
        (staged / "README.md").write_text(whisper_card(staged, facts))
    return target


def best_model(run: Path) -> Path:
    """The run's exported model directory (put back first if an export was interrupted mid-swap)."""
    recover_directory(run / "model")
    return run / "model"


def machine() -> str:
    return f"{platform.machine()}, {torch.get_num_threads()} threads, {time.strftime('%Y-%m-%d')}"
