"""Short encoder windows for Whisper: the same weights, a fraction of the encoder's compute.

Whisper pads every clip to its fixed window (30 s for OpenAI's checkpoints) and its encoder attends over all
of it, so a 2 s clip costs as much as a 30 s one. A shorter window keeps the first `seconds * 50` rows of the
encoder's positional table (the audio frames come first, padding after), as whisper.cpp's `audio_ctx` option
does; the rest of the model is untouched.

`length_adaptive_encoder` makes the encoder accept any window up to its full one: for each forward it reads
the input's length and uses that many positions, then restores the config, so everything else sees the
checkpoint's own size. `generate` is the exception: it reads the window from the config before the encoder
runs, so decoding at a short window runs inside `encoder_window`. Which window a clip gets is decided where
features are extracted (`windowed_extractor`; `tasks.features.window_inputs` for training batches,
`SpeechRecognition.predict` per clip).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

import torch

from speechpeft.errors import InputError

FRAMES_PER_SECOND = 100  # Whisper's log-mel hop: 10 ms
POSITIONS_PER_SECOND = 50  # after the encoder's stride-2 convolution


def whisper_encoder(model: torch.nn.Module) -> torch.nn.Module | None:
    """The Whisper encoder inside a `WhisperForConditionalGeneration` or `WhisperForAudioClassification`."""
    inner = getattr(model, "model", model)
    encoder = getattr(inner, "encoder", None)
    return encoder if encoder is not None and hasattr(encoder, "embed_positions") else None


def check_window(seconds: float, model: torch.nn.Module) -> None:
    """Raise InputError unless `seconds` is a window `model` can take: a Whisper encoder, at most its full
    window, a whole number of encoder positions (a multiple of 0.02 s)."""
    encoder = whisper_encoder(model)
    if encoder is None:
        raise InputError(f"--window-seconds applies to Whisper backbones only, not {type(model).__name__}")
    full = encoder.embed_positions.num_embeddings / POSITIONS_PER_SECOND
    positions = seconds * POSITIONS_PER_SECOND
    if not 0 < seconds <= full or abs(positions - round(positions)) > 1e-6:
        raise InputError(
            f"--window-seconds {seconds}: choose a multiple of 0.02 s between 0.02 and the backbone's full {full:g} s"
        )


def length_adaptive_encoder(model: torch.nn.Module) -> None:
    """Let the Whisper encoder inside `model` run on any mel length up to its full window (see module doc).

    Each forward uses `frames // 2` positions of the input and puts back the value it found after, also when
    the forward raises. An input longer than the full window is left to transformers' own length error.
    """
    encoder = whisper_encoder(model)
    if encoder is None or getattr(encoder, "_speechpeft_adaptive", False):
        return
    full = encoder.embed_positions.num_embeddings
    found: list[int] = []  # the value before each running forward (a stack: forwards do not nest, but may)

    def shorten(module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        found.append(module.embed_positions.num_embeddings)
        features = kwargs.get("input_features", args[0] if args else None)
        if features is not None and features.shape[-1] // 2 < full:
            _set_positions(module, features.shape[-1] // 2)

    def restore(module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        _set_positions(module, found.pop() if found else full)

    encoder.register_forward_pre_hook(shorten, with_kwargs=True)
    encoder.register_forward_hook(restore, with_kwargs=True, always_call=True)
    encoder._speechpeft_adaptive = True


@contextlib.contextmanager
def encoder_window(model: torch.nn.Module, frames: int) -> Iterator[None]:
    """The Whisper encoder of `model` (and its config) at `frames // 2` positions for the whole block, restored
    after, also on error. Needed around `generate`: it reads the window from the config before the encoder runs
    and pads the input up to it (with zeros, not the extractor's silence)."""
    encoder = whisper_encoder(model)
    before = encoder.embed_positions.num_embeddings
    _set_positions(encoder, frames // 2)
    try:
        yield
    finally:
        _set_positions(encoder, before)


def _set_positions(encoder: torch.nn.Module, positions: int) -> None:
    encoder.embed_positions.num_embeddings = positions  # the encoder adds rows arange(num_embeddings)
    encoder.config.max_source_positions = encoder.max_source_positions = positions  # its length check


def windowed_extractor(extractor: Any, seconds: float) -> Any:
    """A copy of a `WhisperFeatureExtractor` that pads or cuts clips to `seconds` instead of its own window."""
    short = copy.copy(extractor)
    short.chunk_length = seconds
    short.n_samples = round(seconds * extractor.sampling_rate)
    short.nb_max_frames = short.n_samples // extractor.hop_length
    return short
