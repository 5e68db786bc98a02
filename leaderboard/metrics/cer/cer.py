"""Character error rate after a text normaliser (an `evaluate` module): speechpeft's pinned English one, another by
name (`normalize="whisper-basic"`, `leaderboard.normalize.NormalizerName`) or none (`normalize=False`)."""

import evaluate
import jiwer

from speechpeft.leaderboard.metric_info import STRING_PAIRS, metric_info, normalized


class CharacterErrorRate(evaluate.Metric):
    """Corpus CER = character edits / reference characters (spaces count as characters)."""

    def _info(self) -> evaluate.MetricInfo:
        return metric_info(__doc__, "predictions: transcripts; references: reference transcripts", STRING_PAIRS)

    def _compute(self, predictions, references, normalize: bool | str = True) -> dict:
        predictions, references, normalizer = normalized(predictions, references, normalize)
        return {"cer": jiwer.cer(references, predictions), "normalizer": normalizer}
