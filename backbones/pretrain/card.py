"""Measure a pretrained tiny-whisper on the corpus's test split, ship it into the package, write its card.

    speechpeft backbones ship tiny-whisper --run runs/tiny-whisper --corpus data/pretrain-corpus
    speechpeft backbones remeasure tiny-whisper --corpus data/pretrain-corpus-20h

Every number in the card comes from this measurement or from the run's own curves and options. Besides the
test split's voices it measures human speech: the spoken channel names alsa-utils installs. `remeasure`
measures the shipped weights again and keeps the card's training facts: it needs no run directory.
"""

from __future__ import annotations

import itertools
import json
import os
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
from speechpeft.backbones.imported_card import cpu_model
from speechpeft.backbones.loading import FrozenBackbone, load_frozen
from speechpeft.backbones.pretrain.card_text import whisper_card
from speechpeft.directories import recover_directory, staged_replacement
from speechpeft.errors import MissingInputError

BATCH = 32
SESSION_GAP_S = 600  # a longer pause between two curve entries is a stopped-and-resumed run, not training
CARD_FACTS = "speechpeft_card.json"  # every measured and training fact a card is written from
# Human speech on every machine `make setup` prepared: alsa-utils' speaker-test voice saying "Front Left" etc.
HUMAN_RECORDINGS = Path("/usr/share/sounds/alsa")


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
    """WER and CER (0-1, greedy, fp32) on held-out texts: per voice group (pretrain vs adaptation voices) and kind,
    per group and engine, and on human recordings."""
    window = json.loads((model_dir / "config.json").read_text())["max_source_positions"] * 2 / 100  # seconds
    load = os.getloadavg()[0]  # RTFx is only as good as the CPU was free: more than its threads means shared
    test = datasets.load_from_disk(str(corpus))["test"]
    fits = test.filter(lambda duration: duration <= window, input_columns="duration")  # no audio decoding
    hypotheses, rtfx = transcribe_split(model_dir, fits)
    rows = fits.select_columns(["voice_group", "kind", "text", "voice", "engine"]).to_list()
    scores = _scores(rows, hypotheses, [(g, k) for g in ("pretrain", "adapt") for k in KINDS], "kind")
    engines = sorted({r["engine"] for r in rows})
    by_engine = _scores(rows, hypotheses, [(g, e) for g in ("pretrain", "adapt") for e in engines], "engine")
    examples = [{"voice": r["voice"], "reference": r["text"], "hypothesis": h[:200]}
                for r, h in zip(rows[:8], hypotheses, strict=False)]  # fmt: skip
    return {"scores": scores, "engines": by_engine, "human": measure_human_speech(model_dir), "rtfx": round(rtfx, 1),
            "load_average": round(load, 1), "window_seconds": window,
            "left_out_longer_than_window": len(test) - len(fits), "examples": examples}  # fmt: skip


KINDS = ("all", "sentence", "command", "keyword")


def _scores(rows: list[dict], hypotheses: list[str], groups: list[tuple[str, str]], column: str) -> dict:
    """`{"group/value": GroupScore}` for each (voice group, value of `column`) with rows; value "all" takes all."""
    scores = {}
    for group, value in groups:
        picked = [i for i, r in enumerate(rows) if r["voice_group"] == group and value in ("all", r[column])]
        if picked:
            refs, hyps = [rows[i]["text"] for i in picked], [hypotheses[i] for i in picked]
            scores[f"{group}/{value}"] = GroupScore(len(picked), jiwer.wer(refs, hyps), jiwer.cer(refs, hyps)).__dict__
    return scores


def measure_human_speech(model_dir: Path, directory: Path = HUMAN_RECORDINGS) -> dict | None:
    """WER and CER on the recordings in `directory` named after what they say (`Front_Left.wav`: "front left"),
    after the pinned normaliser; None when there are none (alsa-utils not installed)."""
    from torchcodec.decoders import AudioDecoder

    from speechpeft.leaderboard.normalize import normalize_english

    files = sorted(directory.glob("*_*.wav"))
    if not files:
        return None
    texts = [path.stem.replace("_", " ").lower() for path in files]
    audio = [AudioDecoder(str(path), sample_rate=16_000).get_all_samples().data.mean(0).numpy() for path in files]
    heard, _ = transcribe(load_frozen(model_dir, "asr", "fp32", device="cpu"), audio)
    heard = [normalize_english(text) for text in heard]
    examples = [{"reference": t, "hypothesis": h} for t, h in zip(texts, heard, strict=True)]
    score = GroupScore(len(files), jiwer.wer(texts, heard), jiwer.cer(texts, heard))
    return {**score.__dict__, "source": str(directory), "examples": examples}


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
        _write_whisper_card(staged, facts, f"speechpeft backbones ship {name} --run {run} --corpus {corpus}")
    return target


def remeasure_whisper(corpus: Path, weights_dir: Path = WEIGHTS_DIR, name: str = "tiny-whisper") -> Path:
    """Measure the shipped weights again and rewrite their card; the training facts (and the weights) stay.

    As `ship_whisper`, the measurement runs on a staged copy. Raises MissingInputError when no tiny-whisper with a
    card is shipped in `weights_dir`.
    """
    target = weights_dir / name
    facts = shipped_facts(target)
    with staged_replacement(target) as staged:
        shutil.copytree(target, staged)
        facts = {**facts, "measured": measure_whisper(staged, corpus), "corpus_path": str(corpus),
                 "corpus": json.loads((corpus / "synth.json").read_text())}  # fmt: skip
        _write_whisper_card(staged, facts, f"speechpeft backbones remeasure {name} --corpus {corpus}")
    return target


def _write_whisper_card(directory: Path, facts: dict, command: str) -> None:
    facts["measured"].update(command=command, machine=machine())
    (directory / CARD_FACTS).write_text(json.dumps(facts, indent=1) + "\n")
    (directory / "README.md").write_text(whisper_card(directory, facts))


def shipped_facts(target: Path) -> dict:
    """The card facts of a shipped built-in backbone; MissingInputError when it has none."""
    recover_directory(target)
    path = target / CARD_FACTS
    if not path.is_file():
        raise MissingInputError(f"{target} holds no shipped backbone with a card ({CARD_FACTS}): ship one first "
                                f"with `speechpeft backbones ship {target.name} --run RUN --corpus DIR`")  # fmt: skip
    return json.loads(path.read_text())


def best_model(run: Path) -> Path:
    """The run's exported model directory (put back first if an export was interrupted mid-swap)."""
    recover_directory(run / "model")
    return run / "model"


def machine() -> str:
    """Where and when a measurement ran: architecture, CPU model, threads, date."""
    return f"{platform.machine()}, {cpu_model()}, {torch.get_num_threads()} threads, {time.strftime('%Y-%m-%d')}"
