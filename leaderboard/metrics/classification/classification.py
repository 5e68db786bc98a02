"""Accuracy and macro-F1 of string labels (intent, keyword, speaker): an `evaluate` module."""

import evaluate

from speechpeft.leaderboard.classification import accuracy, macro_f1
from speechpeft.leaderboard.metric_info import STRING_PAIRS, metric_info


class Classification(evaluate.Metric):
    """Accuracy, and the unweighted mean of per-label F1 over labels seen in references or predictions."""

    def _info(self) -> evaluate.MetricInfo:
        return metric_info(__doc__, "predictions: predicted labels; references: true labels", STRING_PAIRS)

    def _compute(self, predictions, references) -> dict:
        return {"accuracy": accuracy(references, predictions), "macro_f1": macro_f1(references, predictions)}
