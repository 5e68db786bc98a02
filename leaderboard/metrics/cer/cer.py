"""Character error rate after speechpeft's pinned English normaliser (an `evaluate` module)."""

import datasets
import evaluate
import jiwer

from speechpeft.leaderboard.normalize import NORMALIZER, normalize_english


class CharacterErrorRate(evaluate.Metric):
    """Corpus CER = character edits / reference characters (spaces count as characters)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=__doc__,
            citation="",
            inputs_description="predictions: list of transcripts; references: list of reference transcripts",
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references, normalize: bool = True) -> dict:
        if normalize:
            predictions = [normalize_english(p) for p in predictions]
            references = [normalize_english(r) for r in references]
        return {"cer": jiwer.cer(references, predictions), "normalizer": NORMALIZER if normalize else None}
