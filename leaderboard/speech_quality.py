"""Offline speech-quality scores for TTS: DNSMOS (a MOS proxy) and mel-cepstral distortion.

DNSMOS P.835 (SIG, BAK, OVRL) and P.808 come from the ONNX models inside the speechmos wheel, so
they need no download (torchmetrics' DNSMOS fetches its models at first use).

Mel-cepstral distortion (MCD; Kubichek 1993) compares synthesised speech with a reference recording
of the same text, computed as TTS papers and toolkits do (ESPnet's evaluate_mcd, pymcd), so values
compare with the literature (real systems: about 4-10 dB):
WORLD spectral envelope (DIO + StoneMask + CheapTrick, 5 ms frames; pyworld, Morise et al. 2016) ->
SPTK mel-cepstrum of order 24 with all-pass constant `pysptk.util.mcepalpha(rate)` (0.41 at 16 kHz),
c0 (energy) left out -> silent frames dropped -> DTW alignment (librosa) ->
MCD = 10 / ln 10 * sqrt(2 * sum_{d=1..24} (c_d - c'_d)^2) dB, averaged over the aligned frame pairs.
"""

from __future__ import annotations

import functools
import math

import numpy as np

SAMPLE_RATE = 16_000  # Hz
DNSMOS_KEYS = ("ovrl_mos", "sig_mos", "bak_mos", "p808_mos")
FRAME_PERIOD_MS = 5.0  # WORLD analysis hop
MCD_ORDER = 24  # mel-cepstral coefficients c1..c24 are compared; c0 (log energy) is left out
SILENCE_DB = 60.0  # frames this far below a clip's loudest frame are silence (librosa.effects.split's top_db)
MCD_SCALE = 10.0 / math.log(10.0) * math.sqrt(2.0)  # natural-log amplitude cepstra to dB: 6.1419


def dnsmos(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> dict[str, float]:
    """DNSMOS scores of one mono clip (floats in [-1, 1]); speechmos wants 16 kHz."""
    from speechmos import dnsmos as model  # imports onnxruntime and librosa: only when scoring

    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"DNSMOS needs {SAMPLE_RATE} Hz audio, got {sample_rate} Hz: resample first")
    scores = model.run(np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0), SAMPLE_RATE)
    return {key: float(scores[key]) for key in DNSMOS_KEYS}


def world_envelope(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """[frames, fft_size // 2 + 1] WORLD spectral envelope (power) of a mono clip, a frame every 5 ms.

    F0 by DIO refined by StoneMask, then CheapTrick at its default fft_size (1024 at 16 kHz); see pyworld
    and Morise, Yokomori & Ozawa, "WORLD", IEICE Trans. 2016. Raises ValueError for an empty clip.
    """
    import pyworld

    samples = np.asarray(audio, dtype=np.float64)
    if samples.size == 0:
        raise ValueError("MCD needs a non-empty clip, got 0 samples")
    f0, times = pyworld.dio(samples, sample_rate, frame_period=FRAME_PERIOD_MS)
    f0 = pyworld.stonemask(samples, f0, times, sample_rate)
    return pyworld.cheaptrick(samples, f0, times, sample_rate)


def envelope_mel_cepstra(envelope: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """[frames, MCD_ORDER] mel-cepstrum c1..c24 of a [frames, bins] power envelope, c0 left out.

    The same numbers as `pysptk.sp2mc(envelope, MCD_ORDER, all_pass_constant(sample_rate))[:, 1:]`: SPTK's
    convention, natural log of the amplitude, log |H(w)| = sum_m c_m cos(m w~) on the warped axis w~.
    """
    cepstra = np.fft.irfft(np.log(envelope), axis=-1)  # sp2mc's steps before its per-frame freqt
    cepstra[:, 0] /= 2.0
    return cepstra @ _frequency_warping(cepstra.shape[-1], all_pass_constant(sample_rate))[:, 1:]


@functools.lru_cache
def all_pass_constant(sample_rate: int) -> float:
    """The frequency-warping constant alpha that best fits the mel scale at this rate: 0.41 at 16 kHz (pysptk)."""
    import pysptk

    return float(pysptk.util.mcepalpha(sample_rate))


@functools.lru_cache
def _frequency_warping(taps: int, alpha: float) -> np.ndarray:
    """[taps, MCD_ORDER + 1] matrix of SPTK's freqt, which is linear in the cepstrum.

    pysptk.sp2mc runs freqt frame by frame, about 0.5 ms a frame and most of the MCD's time; one matrix
    product for all frames gives the same numbers.
    """
    import pysptk

    return pysptk.freqt(np.eye(taps), MCD_ORDER, alpha)


def speech_frames(envelope: np.ndarray) -> np.ndarray:
    """[frames] bool: the frames of a power envelope within SILENCE_DB of the clip's loudest frame."""
    power_db = 10.0 * np.log10(envelope.sum(axis=-1))
    return power_db > power_db.max() - SILENCE_DB


def mel_cepstra(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """[speech frames, MCD_ORDER] mel-cepstra (c1..c24) of a mono clip, silent frames dropped.

    Silence is dropped because an engine's digital silence has no envelope to compare (WORLD fills it
    with its noise floor), and pairs of silent frames would pull the mean toward 0 dB by however much
    padding both clips happen to have. Audible noise in pauses (a vocoder's hiss, 60 dB or less below
    the loudest frame) is kept, so it still costs.
    """
    envelope = world_envelope(audio, sample_rate)
    return envelope_mel_cepstra(envelope[speech_frames(envelope)], sample_rate)


def cepstral_distortion(reference: np.ndarray, synthesised: np.ndarray) -> float:
    """MCD in dB between two [frames, coefficients] mel-cepstra sequences (natural-log amplitude, c0 left out).

    Aligned by DTW (librosa.sequence.dtw: Euclidean cost, steps (1, 1), (1, 0), (0, 1)), then
    10 / ln 10 * sqrt(2) times the Euclidean distance, averaged over the aligned frame pairs.
    """
    import librosa

    _, path = librosa.sequence.dtw(reference.T, synthesised.T, metric="euclidean")
    distances = np.linalg.norm(reference[path[:, 0]] - synthesised[path[:, 1]], axis=-1)
    return MCD_SCALE * float(np.mean(distances))


def mel_cepstral_distortion(reference: np.ndarray, synthesised: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """MCD in dB between a reference recording and synthesised speech of the same text (mono, [-1, 1]).

    Lower is better; 0 for identical clips, about 5-13 dB between two synthetic voices of one sentence.
    """
    return cepstral_distortion(mel_cepstra(reference, sample_rate), mel_cepstra(synthesised, sample_rate))
