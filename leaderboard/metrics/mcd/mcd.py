"""Mel-cepstral distortion (dB) between synthesised speech and reference recordings, DTW-aligned.

An `evaluate` module; the definition is in `speechpeft.leaderboard.speech_quality`.
"""

import datasets
import evaluate
import numpy as np

from speechpeft.leaderboard.metric_info import WAVEFORMS, metric_info
from speechpeft.leaderboard.speech_quality import SAMPLE_RATE, mel_cepstral_distortion


class MelCepstralDistortion(evaluate.Metric):
    """Mean MCD over clip pairs (lower is better), with the per-clip values."""

    def _info(self) -> evaluate.MetricInfo:
        return metric_info(__doc__, "predictions, references: mono float waveforms at the same sample rate",
                           datasets.Features({"predictions": WAVEFORMS, "references": WAVEFORMS}),
                           citation="Kubichek, Mel-cepstral distance measure, 1993")  # fmt: skip

    def _compute(self, predictions, references, sample_rate: int = SAMPLE_RATE) -> dict:
        pairs = zip(predictions, references, strict=True)
        per_clip = [mel_cepstral_distortion(np.asarray(r, np.float32), np.asarray(p, np.float32), sample_rate)
                    for p, r in pairs]  # fmt: skip
        return {"mcd": float(np.mean(per_clip)), "per_clip": per_clip}
