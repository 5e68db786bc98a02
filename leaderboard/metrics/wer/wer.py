"""Word error rate after a text normaliser (an `evaluate` module loaded by local path): speechpeft's pinned English
one, another by name (`normalize="whisper-basic"`, `leaderboard.normalize.NormalizerName`) or none
(`normalize=False`)."""

import evaluate
import jiwer

from speechpeft.leaderboard.metric_info import STRING_PAIRS, metric_info, normalized


class WordErrorRate(evaluate.Metric):
    """Corpus WER = (substitutions + deletions + insertions) / reference words, with the counts."""

    def _info(self) -> evaluate.MetricInfo:
        return metric_info(__doc__, "predictions: transcripts; references: reference transcripts", STRING_PAIRS)

    def _compute(self, predictions, references, normalize: bool | str = True) -> dict:
        predictions, references, normalizer = normalized(predictions, references, normalize)
        counts = jiwer.process_words(references, predictions)
        return {
            "wer": counts.wer, "substitutions": counts.substitutions, "deletions": counts.deletions,
            "insertions": counts.insertions, "reference_words": counts.hits + counts.substitutions + counts.deletions,
            "normalizer": normalizer,
        }  # fmt: skip
