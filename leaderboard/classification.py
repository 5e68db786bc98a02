"""Accuracy and macro-F1 for spoken classification (intent, keyword, speaker)."""

from __future__ import annotations

from collections.abc import Sequence


def accuracy(references: Sequence[str], predictions: Sequence[str]) -> float:
    _check_lengths(references, predictions)
    return sum(r == p for r, p in zip(references, predictions, strict=True)) / len(references)


def macro_f1(references: Sequence[str], predictions: Sequence[str]) -> float:
    """Unweighted mean of per-label F1 over every label seen in references or predictions.

    A label that is never predicted and never correct scores 0, so rare classes weigh as much as common ones.
    """
    _check_lengths(references, predictions)
    scores = []
    for label in sorted(set(references) | set(predictions)):
        hits = sum(r == p == label for r, p in zip(references, predictions, strict=True))
        predicted, actual = list(predictions).count(label), list(references).count(label)
        scores.append(2 * hits / (predicted + actual))  # F1 = 2TP / (2TP + FP + FN)
    return sum(scores) / len(scores)


def _check_lengths(references: Sequence[str], predictions: Sequence[str]) -> None:
    if len(references) != len(predictions):
        raise ValueError(f"{len(references)} references but {len(predictions)} predictions")
    if not references:
        raise ValueError("no examples to score")
