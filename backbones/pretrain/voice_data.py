"""What the one-voice TTS recipes (tiny-fastspeech2, tiny-hifigan) share: the voice's pretrain rows, the
sentences held out for evaluation, and the guard that keeps one run's cached features to its own rows."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np

from speechpeft.errors import InputError

PLAN_FILE = "plan.json"


def voice_pretrain_rows(corpus_dir: Path, voice: str) -> datasets.Dataset:
    """The corpus's pretrain rows spoken by `voice`.

    Raises InputError when the corpus has no pretrain split or no row of that voice (naming the voices it has)."""
    corpus = datasets.load_from_disk(str(corpus_dir))
    if "pretrain" not in corpus:
        raise InputError(f"{corpus_dir} has no pretrain split (splits: {', '.join(corpus)}): build one with "
                         "`speechpeft data synth --splits pretrain=0.92 test=0.08` (`make tts-corpus`)")  # fmt: skip
    rows = corpus["pretrain"].filter(lambda v: v == voice, input_columns=["voice"])
    if len(rows) == 0:
        voices = sorted(set(corpus["pretrain"]["voice"]))
        raise InputError(f"no pretrain utterances by voice {voice!r} in {corpus_dir}: it has {', '.join(voices)}; "
                         "pass one of them as --voice, or synthesise that voice with --voices")  # fmt: skip
    return rows


def hold_out(texts: list[str], count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, held-out rows): `count` distinct texts drawn by `seed`, one row each held out; every
    row with a held-out text leaves training (the corpus draws texts with replacement).

    Raises InputError when `count` would leave no sentence to train on."""
    distinct = sorted(set(texts))
    if len(distinct) <= count:
        raise InputError(f"only {len(distinct)} distinct sentences: --eval-utterances {count} leaves none to train; "
                         "lower --eval-utterances or synthesise a larger corpus")  # fmt: skip
    chosen = set(np.random.default_rng(seed).permutation(distinct)[:count].tolist())
    first = {text: i for i, text in reversed(list(enumerate(texts)))}
    held = np.array(sorted(first[t] for t in chosen))
    train_rows = np.array([i for i, text in enumerate(texts) if text not in chosen])
    return train_rows, held


def check_plan(directory: Path, plan: dict, what: str) -> None:
    """Refuse to mix cached `what` (features, clips) of different rows or settings; record the plan on first use."""
    path = directory / PLAN_FILE
    if path.exists() and json.loads(path.read_text()) == plan:
        return
    if path.exists():
        raise InputError(f"{directory} holds {what} of other rows or settings than this run's (another --corpus or "
                         "--voice?): pretrain into a new --out directory, or delete that one")  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plan, indent=1))
