"""Turn SpeechT5's log10 mel spectrogram back into a waveform: Griffin-Lim, or a trained HiFi-GAN.

Griffin-Lim needs no trained vocoder: the mel filters and STFT settings come from the backbone's own feature
extractor, so the inverse matches exactly the analysis the model was trained on. It starts from random phases:
each clip draws them from its own seeded generator, so a clip's waveform never depends on what ran before it.
`hifigan` runs a generator trained on that same analysis (`speechpeft backbones pretrain tiny-hifigan`); both
return peak-normalised float32 audio at 16 kHz, so either can voice a backbone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torchaudio
import transformers

PEAK = 0.7  # every vocoder's output peak amplitude (`peak_normalised`)
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
    return peak_normalised(audio)


def peak_normalised(audio: np.ndarray) -> np.ndarray:
    """`audio` scaled to a peak of `PEAK` (silence stays silence), float32: every vocoder's output level."""
    peak = np.abs(audio).max() if len(audio) else 0.0
    return (audio / peak * PEAK if peak > 0 else audio).astype(np.float32)


def load_hifigan(directory: Path) -> transformers.SpeechT5HifiGan:
    """A trained HiFi-GAN generator (a `tiny-hifigan` run's `model/`, or a backbone's `vocoder/`) in float32, for
    inference on the CPU. Weights from safetensors only; no remote code."""
    model = transformers.SpeechT5HifiGan.from_pretrained(directory, use_safetensors=True, dtype=torch.float32)
    return model.eval()


def hifigan(log_mel: torch.Tensor, vocoder: transformers.SpeechT5HifiGan) -> np.ndarray:
    """[frames, 80] log10 mel (SpeechT5FeatureExtractor's) -> float32 waveform [frames * 256] at 16 kHz, peak
    `PEAK`; HiFi-GAN (Kong et al. 2020, https://arxiv.org/abs/2010.05646). Sample i * 256 is frame i's centre."""
    if len(log_mel) == 0:
        return np.zeros(0, dtype=np.float32)
    with torch.inference_mode():
        audio = vocoder(log_mel.to(vocoder.dtype).unsqueeze(0))[0].float().numpy()
    return peak_normalised(audio)
