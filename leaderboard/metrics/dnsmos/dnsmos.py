"""DNSMOS P.835 (SIG, BAK, OVRL) and P.808 of 16 kHz speech, offline: an `evaluate` module.

The ONNX models ship inside the speechmos wheel. Returns the mean of each score and the per-clip scores.
"""

import datasets
import evaluate
import numpy as np

from speechpeft.leaderboard.metric_info import WAVEFORMS, metric_info
from speechpeft.leaderboard.speech_quality import DNSMOS_KEYS, SAMPLE_RATE, dnsmos


class DNSMOS(evaluate.Metric):
    """A reference-free MOS proxy: the leaderboard's headline TTS quality column is OVRL."""

    def _info(self) -> evaluate.MetricInfo:
        return metric_info(__doc__, "predictions: mono float waveforms at 16 kHz",
                           datasets.Features({"predictions": WAVEFORMS}),
                           citation="Reddy et al., DNSMOS P.835, ICASSP 2022")  # fmt: skip

    def _compute(self, predictions, sample_rate: int = SAMPLE_RATE) -> dict:
        per_clip = [dnsmos(np.asarray(clip, dtype=np.float32), sample_rate) for clip in predictions]
        means = {key: float(np.mean([scores[key] for scores in per_clip])) for key in DNSMOS_KEYS}
        return {**means, "per_clip": per_clip}
