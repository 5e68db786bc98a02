"""What the leaderboard's `evaluate` modules share: their info block and the normalised text pair."""

from __future__ import annotations

import datasets
import evaluate

from speechpeft.leaderboard.normalize import NORMALIZER, normalizer

STRING_PAIRS = datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")})
WAVEFORMS = datasets.Sequence(datasets.Value("float32"))


def metric_info(description: str, inputs: str, features: datasets.Features, citation: str = "") -> evaluate.MetricInfo:
    return evaluate.MetricInfo(description=description, citation=citation, inputs_description=inputs,
                               features=features)  # fmt: skip


def normalized(predictions: list[str], references: list[str], normalize: bool | str) -> tuple[list, list, str | None]:
    """Both sides through a normaliser: the pinned one for True, the one named for a name (see
    `leaderboard.normalize.NormalizerName`), none for False; and the normaliser's name to record.

    Raises InputError for an unknown name."""
    if normalize is False:
        return predictions, references, None
    name = NORMALIZER if normalize is True else normalize
    apply = normalizer(name)
    return [apply(p) for p in predictions], [apply(r) for r in references], name
