"""Acoustic inputs for any family: log-mel windows (Whisper) or padded waveforms (wav2vec2, HuBERT, WavLM).

Predictions must not depend on which clips share a batch: `predict_in_exact_groups` runs a model over the
clips of a batch in groups whose padding cannot change any clip's outputs (all at once where padding is
exact, else clips of equal length together).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from speechpeft.adapters import routing
from speechpeft.backbones import FrozenBackbone
from speechpeft.backbones.window import windowed_extractor
from speechpeft.tasks.base import model_inputs, timed
from speechpeft.tasks.rows import window_samples


def acoustic_inputs(extractor, audio: list[np.ndarray], dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Run the backbone's feature extractor over a batch of 16 kHz clips.

    Whisper's extractor pads every clip to its fixed window (what the encoder requires); waveform
    extractors pad to the longest clip and return an attention mask only where their config says so
    (checkpoints whose CNN front-end uses group norm, e.g. wav2vec2-base, were trained without one).
    """
    padding = {} if window_samples(extractor) is not None else {"padding": True}
    inputs = extractor(audio, sampling_rate=extractor.sampling_rate, return_tensors="pt", **padding)
    return {k: v.to(dtype) if v.is_floating_point() else v for k, v in inputs.items()}


def window_inputs(backbone: FrozenBackbone, extractor, audio: list[np.ndarray]) -> dict[str, torch.Tensor]:
    """`acoustic_inputs` at the backbone's short window (`load_frozen(window_seconds=...)`) when every clip of
    the batch fits it, else at the extractor's own window: nothing is cut, a long clip costs a full window."""
    seconds = backbone.window_seconds
    if seconds is not None and max(map(len, audio)) <= seconds * extractor.sampling_rate:
        extractor = windowed_extractor(extractor, seconds)
    return acoustic_inputs(extractor, audio, backbone.input_dtype)


def padding_is_exact(extractor, config) -> bool:
    """Whether zero-padding a clip in a batch leaves its outputs unchanged (up to float rounding).

    True for a fixed window (every clip is padded to it anyway) and for a waveform model that is given an
    attention mask and normalises its CNN features per frame (`feat_extract_norm == "layer"`). Group norm
    normalises over time, padded samples included, and without a mask the padding is attended to.
    """
    if window_samples(extractor) is not None:
        return True
    return (
        bool(getattr(extractor, "return_attention_mask", False))
        and getattr(config, "feat_extract_norm", "") != "group"
    )


def exact_groups(extractor, config, lengths: list[int]) -> list[list[int]]:
    """Indices of the clips (`lengths` in samples) to run together: all, where padding is exact, else by length."""
    if padding_is_exact(extractor, config):
        return [list(range(len(lengths)))]
    groups: dict[int, list[int]] = {}
    for index, length in enumerate(lengths):
        groups.setdefault(length, []).append(index)
    return list(groups.values())


def predict_in_exact_groups(
    backbone: FrozenBackbone, extractor, batch: dict[str, Any], run: Callable[[dict[str, torch.Tensor]], list[Any]]
) -> tuple[list[Any], float]:
    """`run(inputs)` (one output per clip of the group) over `batch["audio"]` in exact groups, and the compute seconds.

    The outputs come back in the batch's order; one group of the whole batch uses the batch's own tensors.
    """
    audio = batch["audio"]
    groups = exact_groups(extractor, backbone.model.config, [len(clip) for clip in audio])
    outputs: list[Any] = [None] * len(audio)
    seconds = 0.0
    for group in groups:
        clips = [audio[i] for i in group]
        tensors = batch if len(groups) == 1 else acoustic_inputs(extractor, clips, backbone.input_dtype)
        inputs = model_inputs(tensors, backbone.device, labels=False)
        with routing.rows(group):  # the bank's per-sample adapters follow the sub-batch
            results, elapsed = timed(lambda inputs=inputs: run(inputs))
        seconds += elapsed
        for index, result in zip(group, results, strict=True):
            outputs[index] = result
    return outputs, seconds
