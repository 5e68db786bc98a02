"""Mel-cepstral distortion (dB) between synthesised speech and reference recordings, DTW-aligned.

An `evaluate` module; the definition is in `speechpeft.leaderboard.speech_quality`.
"""

import datasets
import evaluate
import numpy as np

from speechpeft.leaderboard.speech_quality import SAMPLE_RATE, mel_cepstral_distortion


class MelCepstralDistortion(evaluate.Metric):
    """Mean MCD over clip pairs (lower is better), with the per-clip values."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=__doc__,
            citation="Kubichek, Mel-cepstral distance measure for objective speech quality assessment, 1993",
            inputs_description="predictions, references: lists of mono float waveforms at the same sample rate",
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Sequence(datasets.Value("float32")),
                }
            ),
        )

    def _compute(self, predictions, references, sample_rate: int = SAMPLE_RATE) -> dict:
        per_clip = [
            mel_cepstral_distortion(np.asarray(r, dtype=np.float32), np.asarray(p, dtype=np.float32), sample_rate)
            for p, r in zip(predictions, references, strict=True)
        ]
        return {"mcd": float(np.mean(per_clip)), "per_clip": per_clip}
