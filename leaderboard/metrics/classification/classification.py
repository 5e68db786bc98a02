"""Accuracy and macro-F1 of string labels (intent, keyword, speaker): an `evaluate` module."""

import datasets
import evaluate

from speechpeft.leaderboard.classification import accuracy, macro_f1


class Classification(evaluate.Metric):
    """Accuracy, and the unweighted mean of per-label F1 over labels seen in references or predictions."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=__doc__,
            citation="",
            inputs_description="predictions: list of predicted labels; references: list of true labels",
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references) -> dict:
        return {"accuracy": accuracy(references, predictions), "macro_f1": macro_f1(references, predictions)}
