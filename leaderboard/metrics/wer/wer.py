"""Word error rate after speechpeft's pinned English normaliser (an `evaluate` module loaded by local path)."""

import datasets
import evaluate
import jiwer

from speechpeft.leaderboard.normalize import NORMALIZER, normalize_english


class WordErrorRate(evaluate.Metric):
    """Corpus WER = (substitutions + deletions + insertions) / reference words, with the counts."""

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
        counts = jiwer.process_words(references, predictions)
        return {
            "wer": counts.wer, "substitutions": counts.substitutions, "deletions": counts.deletions,
            "insertions": counts.insertions, "reference_words": counts.hits + counts.substitutions + counts.deletions,
            "normalizer": NORMALIZER if normalize else None,
        }  # fmt: skip
