"""Griffin-Lim: turn SpeechT5's log10 mel spectrogram back into a waveform with no trained vocoder.

The mel filters and STFT settings come from the backbone's own feature extractor, so the inverse
matches exactly the analysis the model was trained on. Griffin-Lim starts from random phases: each clip
draws them from its own seeded generator, so a clip's waveform never depends on what ran before it.
"""

from __future__ import annotations

import numpy as np
import torch
import torchaudio
import transformers

GRIFFIN_LIM_ITERATIONS = 32
PHASE_SEED = 0  # seeds the random initial phases of every clip
MIN_FRAMES = 8  # the inverse STFT pads by n_fft / 2 = 2 hops on each side


def griffin_lim(log_mel: torch.Tensor, extractor: transformers.SpeechT5FeatureExtractor,
                iterations: int = GRIFFIN_LIM_ITERATIONS, seed: int = PHASE_SEED) -> np.ndarray:  # fmt: skip
    """[frames, mel bins] log10 mel -> float32 waveform at the extractor's sampling rate (on the CPU)."""
    if len(log_mel) < MIN_FRAMES:  # an utterance that stopped at once: pad with silence so the STFT can run
        silence = torch.full((MIN_FRAMES - len(log_mel), log_mel.shape[1]), float(np.log10(extractor.mel_floor)))
        log_mel = torch.cat([log_mel.float(), silence])
    mel = torch.pow(10.0, log_mel.float())  # [frames, mels]
    filters = torch.from_numpy(np.asarray(extractor.mel_filters, dtype=np.float32))  # [freqs, mels]
    magnitude = (mel @ torch.linalg.pinv(filters)).clamp(min=0.0).T  # least-squares inverse: [freqs, frames]
    window = lambda n: torch.from_numpy(np.asarray(extractor.window, dtype=np.float32))  # noqa: E731
    transform = torchaudio.transforms.GriffinLim(
        n_fft=extractor.n_fft, win_length=extractor.sample_size, hop_length=extractor.sample_stride,
        power=1.0, n_iter=iterations, window_fn=window,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):  # torchaudio draws the phases from the global CPU generator
        torch.default_generator.manual_seed(seed)
        audio = transform(magnitude).numpy()
    peak = np.abs(audio).max()
    return (audio / peak * 0.7 if peak > 0 else audio).astype(np.float32)
