"""Acoustic inputs for any family: log-mel windows (Whisper) or padded waveforms (wav2vec2, HuBERT, WavLM)."""

from __future__ import annotations

import numpy as np
import torch


def acoustic_inputs(extractor, audio: list[np.ndarray], dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Run the backbone's feature extractor over a batch of 16 kHz clips.

    Whisper's extractor pads every clip to its fixed window (what the encoder requires); waveform
    extractors pad to the longest clip and return an attention mask.
    """
    fixed_window = getattr(extractor, "nb_max_frames", None) is not None
    padding = {} if fixed_window else {"padding": True, "return_attention_mask": True}
    inputs = extractor(audio, sampling_rate=extractor.sampling_rate, return_tensors="pt", **padding)
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs.items()}
