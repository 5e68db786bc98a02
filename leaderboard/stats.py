"""Leaderboard metrics from per-utterance records, with 95 % bootstrap intervals over utterances.

Each metric is defined on the records a task writes (`predictions.jsonl`), the same way the task computes it
on the whole split: WER and CER are edits over reference words / characters summed over utterances (after
the pinned normaliser), accuracy the share of correct labels, MCD and the DNSMOS scores means over clips. So
one definition scores a voice's subset and each bootstrap resample. Intervals are percentile bootstrap
intervals (Efron & Tibshirani 1993, ch. 13) from `scipy.stats.bootstrap`, resampling utterances with
replacement, 2,000 resamples, seeded.
"""

from __future__ import annotations

from collections.abc import Callable

import jiwer
import numpy as np
from scipy.stats import bootstrap

from speechpeft.leaderboard.normalize import normalize_english

RESAMPLES = 2000
CONFIDENCE = 0.95
MEAN_METRICS = ("mcd", "ovrl_mos", "sig_mos", "bak_mos", "p808_mos")


def _ratio(errors, totals, axis=-1):
    return np.sum(errors, axis=axis) / np.sum(totals, axis=axis)


def _mean(values, axis=-1):
    return np.mean(values, axis=axis)


def char_edits(reference: str, hypothesis: str) -> tuple[int, int]:
    """(character edits, reference characters) after the normaliser, as jiwer's corpus CER counts them."""
    ref, hyp = normalize_english(reference), normalize_english(hypothesis)
    if not ref:
        return len(hyp), 0
    out = jiwer.process_characters(ref, hyp)
    return out.substitutions + out.deletions + out.insertions, len(ref)


def columns(task: str, items: list[dict], metric: str) -> tuple[tuple[np.ndarray, ...], Callable]:
    """The per-utterance arrays `metric` is a statistic of, and that statistic (vectorised over the last axis).
    Raises KeyError for a metric the task's records cannot give."""
    if metric == "wer":
        return (_array(items, "word_errors"), _array(items, "reference_words")), _ratio
    if metric == "cer":
        said = "heard" if task == "tts" else "hypothesis"
        edits = np.array([char_edits(i["reference"], i.get(said, "")) for i in items], dtype=float).reshape(-1, 2)
        return (edits[:, 0], edits[:, 1]), _ratio
    if metric == "accuracy":
        return (np.array([float(i["correct"]) for i in items]),), _mean
    if metric in MEAN_METRICS:
        return (_array(items, metric),), _mean
    raise KeyError(f"no per-utterance definition of {metric!r} for task {task!r}")


def _array(items: list[dict], key: str) -> np.ndarray:
    return np.array([float(i[key]) for i in items])


def interval(task: str, items: list[dict], metric: str, seed: int = 0) -> dict[str, float | None]:
    """`{"value", "low", "high"}`: the metric on `items` and its 95 % percentile bootstrap interval (None bounds
    for fewer than two utterances). Raises KeyError for an unknown metric."""
    data, statistic = columns(task, items, metric)
    value = float(statistic(*data))
    if len(items) < 2:
        return {"value": value, "low": None, "high": None}
    result = bootstrap(data, statistic, paired=len(data) > 1, vectorized=True, n_resamples=RESAMPLES,
                       confidence_level=CONFIDENCE, method="percentile", rng=np.random.default_rng(seed))  # fmt: skip
    low, high = result.confidence_interval
    return {"value": value, "low": float(low), "high": float(high)}


def scores(task: str, items: list[dict], metrics: tuple[str, ...], seed: int = 0) -> dict[str, dict]:
    """`interval` of each metric the records can give (TTS's CER needs the listener's `heard`)."""
    available = [m for m in metrics if m != "cer" or task != "tts" or all("heard" in i for i in items)]
    return {m: interval(task, items, m, seed) for m in available} if items else {}


def group_scores(task: str, items: list[dict], metric: str, seed: int = 0) -> dict[str, dict]:
    """The headline `metric` per group (voice), with its interval and utterance count; {} without groups."""
    groups = sorted({i["group"] for i in items if i.get("group") is not None})
    out = {}
    for group in groups:
        mine = [i for i in items if i.get("group") == group]
        out[group] = {"utterances": len(mine), **interval(task, mine, metric, seed)}
    return out


def across_seeds(values: list[float]) -> tuple[float, float | None]:
    """(mean, sample standard deviation) of one metric over seeds; the spread is None for a single seed."""
    mean = float(np.mean(values))
    return mean, float(np.std(values, ddof=1)) if len(values) > 1 else None
