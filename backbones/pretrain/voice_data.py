"""What the one-voice TTS recipes (tiny-fastspeech2, tiny-hifigan) share: the voice's pretrain rows, the
sentences held out for evaluation, and their on-disk caches of per-row work: computed in resumable shards,
guarded to one run's rows, and described by a `rows.json` of the rows kept and left out."""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import datasets
import numpy as np
from tqdm.auto import tqdm

from speechpeft.errors import InputError
from speechpeft.tasks.rows import LeftOut

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


def check_plan(directory: Path, ids: list[str], settings: dict, what: str) -> None:
    """Refuse to mix cached `what` (features, clips) of other rows (`ids`, by count and sha1) or other `settings`;
    record the plan on first use."""
    plan = {"rows": len(ids), "ids_sha1": hashlib.sha1("\n".join(ids).encode()).hexdigest(), **settings}
    path = directory / PLAN_FILE
    if path.exists() and json.loads(path.read_text()) == plan:
        return
    if path.exists():
        raise InputError(f"{directory} holds {what} of other rows or settings than this run's (another --corpus or "
                         "--voice?): pretrain into a new --out directory, or delete that one")  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(plan, indent=1))


def compute_shards(directory: Path, rows: int, shard_rows: int, save: Callable[[Path, int, int], None], desc: str,
                   progress: bool = True) -> list[Path]:  # fmt: skip
    """Call `save(path, start, stop)` for each shard of `shard_rows` of the `rows` rows not yet in
    `directory/shards` (`save` writes its file atomically, so a killed run resumes at the first missing shard);
    returns every shard's path, in order."""
    shards = directory / "shards"
    shards.mkdir(exist_ok=True)
    paths = [shards / f"shard-{n:05d}.npz" for n in range(math.ceil(rows / shard_rows))]
    for number, path in enumerate(tqdm(paths, desc=desc, unit="shard", disable=not progress)):
        if not path.exists():
            save(path, number * shard_rows, min((number + 1) * shard_rows, rows))
    return paths


def kept_rows(ids: list[str], texts: list[str], reasons: list[str], earlier: LeftOut | None = None) -> dict:
    """A cache's `rows.json` fields: ids and texts of the rows kept (reason ""), the rows left out counted by
    reason (with those the caller left out `earlier`), and the ids of the ones left out here."""
    counts = Counter(reason for reason in reasons if reason)
    return {
        "ids": [row for row, reason in zip(ids, reasons, strict=True) if not reason],
        "texts": [text for text, reason in zip(texts, reasons, strict=True) if not reason],
        "left_out": dict(Counter(earlier or {}) + counts),
        "left_out_ids": {r: [row for row, x in zip(ids, reasons, strict=True) if x == r] for r in sorted(counts)},
    }
