"""Offline speech-quality scores for TTS: DNSMOS (a MOS proxy) and mel-cepstral distortion.

DNSMOS P.835 (SIG, BAK, OVRL) and P.808 come from the ONNX models inside the speechmos wheel, so
they need no download (torchmetrics' DNSMOS fetches its models at first use).

Mel-cepstral distortion (MCD) compares synthesised speech with a reference recording of the same
text: 24 mel-cepstral coefficients per 16 ms hop (the DCT of an 80-band log-mel spectrum, energy c0
left out), aligned by dynamic time warping, then MCD = 10 / ln 10 * sqrt(2 * sum_d (c_d - c'_d)^2)
in dB, averaged over the aligned frame pairs (Kubichek 1993; MFCC-style cepstra, not SPTK's mcep).
"""

from __future__ import annotations

import math

import numpy as np

SAMPLE_RATE = 16_000  # Hz
DNSMOS_KEYS = ("ovrl_mos", "sig_mos", "bak_mos", "p808_mos")
MCD_COEFFICIENTS = 24
N_FFT, HOP, MEL_BANDS = 1024, 256, 80  # 64 ms window, 16 ms hop at 16 kHz
MCD_SCALE = 10.0 / math.log(10.0) * math.sqrt(2.0)  # natural-log cepstra to dB


def dnsmos(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> dict[str, float]:
    """DNSMOS scores of one mono clip (floats in [-1, 1]); speechmos wants 16 kHz."""
    from speechmos import dnsmos as model  # imports onnxruntime and librosa: only when scoring

    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"DNSMOS needs {SAMPLE_RATE} Hz audio, got {sample_rate} Hz: resample first")
    scores = model.run(np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0), SAMPLE_RATE)
    return {key: float(scores[key]) for key in DNSMOS_KEYS}


def mel_cepstra(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """[frames, MCD_COEFFICIENTS] mel cepstra of a mono clip, c0 (energy) left out."""
    import librosa
    import scipy.fft

    mel = librosa.feature.melspectrogram(
        y=np.asarray(audio, dtype=np.float32), sr=sample_rate, n_fft=N_FFT, hop_length=HOP, n_mels=MEL_BANDS
    )
    cepstra = scipy.fft.dct(np.log(np.maximum(mel, 1e-10)), type=2, norm="ortho", axis=0)
    return cepstra[1 : MCD_COEFFICIENTS + 1].T


def dtw_path(cost: np.ndarray) -> list[tuple[int, int]]:
    """The monotonic alignment of least total cost through a [n, m] cost matrix, start to end."""
    total = np.empty_like(cost, dtype=np.float64)
    total[0] = np.cumsum(cost[0])
    for i in range(1, cost.shape[0]):
        diagonal_or_down = cost[i] + np.minimum(total[i - 1], np.concatenate([[np.inf], total[i - 1][:-1]]))
        # the horizontal move, vectorised: total[i, j] = S[j] + min_{k<=j} (diagonal_or_down[k] - S[k])
        running = np.cumsum(cost[i])
        total[i] = running + np.minimum.accumulate(diagonal_or_down - running)
    return _backtrack(total)


def _backtrack(total: np.ndarray) -> list[tuple[int, int]]:
    i, j = total.shape[0] - 1, total.shape[1] - 1
    path = [(i, j)]
    while i or j:
        moves = [(i - 1, j - 1), (i - 1, j), (i, j - 1)]
        i, j = min((move for move in moves if min(move) >= 0), key=lambda move: total[move])
        path.append((i, j))
    return path[::-1]


def cepstral_distortion(reference: np.ndarray, synthesised: np.ndarray) -> float:
    """MCD in dB between two [frames, coefficients] cepstra sequences, DTW-aligned."""
    distances = np.linalg.norm(reference[:, None, :] - synthesised[None, :, :], axis=-1)
    path = dtw_path(distances)
    return MCD_SCALE * float(np.mean([distances[i, j] for i, j in path]))


def mel_cepstral_distortion(reference: np.ndarray, synthesised: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """MCD in dB between a reference recording and synthesised speech of the same text."""
    return cepstral_distortion(mel_cepstra(reference, sample_rate), mel_cepstra(synthesised, sample_rate))
