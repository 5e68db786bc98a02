"""What the leaderboard's `evaluate` modules share: their info block and the normalised text pair."""

from __future__ import annotations

import datasets
import evaluate

from speechpeft.leaderboard.normalize import NORMALIZER, normalize_english

STRING_PAIRS = datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")})
WAVEFORMS = datasets.Sequence(datasets.Value("float32"))


def metric_info(description: str, inputs: str, features: datasets.Features, citation: str = "") -> evaluate.MetricInfo:
    return evaluate.MetricInfo(description=description, citation=citation, inputs_description=inputs,
                               features=features)  # fmt: skip


def normalized(predictions: list[str], references: list[str], normalize: bool) -> tuple[list, list, str | None]:
    """Both sides through the pinned normaliser (or untouched), and the normaliser version to record."""
    if not normalize:
        return predictions, references, None
    return [normalize_english(p) for p in predictions], [normalize_english(r) for r in references], NORMALIZER
