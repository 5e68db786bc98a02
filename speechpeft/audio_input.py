"""Audio as every entry point takes it: decoded by FFmpeg (torchcodec), checked, mono at the backbone's rate.

Handled: any container and codec FFmpeg reads, any sample rate (resampled by FFmpeg's swresample), any channel
count (averaged, as `speechpeft eval` reads datasets), 8-32-bit integer and float samples, silence, and clipped
recordings (accepted; their full-scale samples are counted). Refused with an `AudioInputError` that names the fix:
an empty file, one FFmpeg cannot read or that holds no audio stream, one that decodes to far less than its header
announces (truncated), no samples, NaN or infinite samples, and more than `MAX_AUDIO_SECONDS`.

Long clips are transcribed in pieces: `split_clips` cuts a clip longer than the backbone's window (Whisper's own;
`CHUNK_SECONDS` for backbones without one) at the quietest 10 ms near each window's end, leaves out its silent
pieces, and `join_pieces` joins the pieces' transcripts.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from speechpeft.errors import InputError, MissingInputError

logger = logging.getLogger(__name__)

MAX_AUDIO_SECONDS = 2 * 60 * 60  # 2 h: the longest clip taken (460 MB as 16 kHz float32); longer is refused
STEREO = 2  # channels decoded at full length; a file of more channels may be proportionally shorter
CHUNK_SECONDS = 30.0  # pieces of a long clip for backbones without a fixed window (Whisper's window otherwise)
CUT_SEARCH = 0.2  # a long clip is cut at the quietest frame in the last fifth of each window
CUT_FRAME_SECONDS = 0.01  # 10 ms frames, for finding that quietest point
SILENCE_LEVEL = 1e-4  # -80 dBFS: a piece of a long clip with no sample this loud is silence, not transcribed
FULL_SCALE = 0.999  # a sample at least this loud (either sign) counts as clipped
TRUNCATED_SHARE, TRUNCATED_SECONDS = 0.9, 1.0  # decoded less than 90% of the header's duration, and 1 s short
FORMATS_HINT = "send WAV, FLAC, MP3, OGG or another format FFmpeg reads"


class AudioInputError(InputError):
    """Audio that cannot be used (not audio, empty, truncated, NaN/inf samples, too long); the message says which."""


@dataclass(frozen=True)
class DecodedAudio:
    samples: np.ndarray  # [samples] float32, mono, at `sample_rate`
    sample_rate: int  # Hz, as the backbone needs it
    source_rate: int | None  # Hz, of the file
    source_channels: int | None  # of the file, before the downmix
    clipped: int  # samples at full scale in any channel (see FULL_SCALE)


def decode_audio(
    source: bytes | str | os.PathLike, sample_rate: int, *, max_seconds: float = MAX_AUDIO_SECONDS
) -> DecodedAudio:
    """Decode a file (its bytes or its path) to mono float32 at `sample_rate` Hz, the backbone's rate.

    Channels are averaged, as `speechpeft eval` reads datasets. At most `max_seconds` are decoded whatever the header
    says (of more than two channels proportionally less: memory stays that of stereo). Raises AudioInputError for
    what the module docstring lists, MissingInputError for a path that is not there.
    """
    what = "the file" if isinstance(source, bytes) else f"audio file {str(source)!r}"
    decoder = _open(source, sample_rate, what)
    metadata = decoder.metadata
    channels = metadata.num_channels or 1
    limit = max_seconds * min(1.0, STEREO / channels)
    announced = metadata.duration_seconds_from_header
    if announced is not None and announced > limit:
        raise _too_long(what, announced, max_seconds, channels)
    decoded = _decode(decoder, (metadata.begin_stream_seconds or 0.0) + limit + 1.0, what, announced)
    seconds = decoded.data.shape[-1] / sample_rate
    _check_decoded(decoded.sample_rate, sample_rate, seconds, announced, what)
    if seconds > limit:  # the header said less, or nothing: decoding stopped past the limit
        raise _too_long(what, seconds, max_seconds, channels, at_least=True)
    samples = check_clip(decoded.data.mean(0).numpy(), sample_rate, what, max_seconds=max_seconds)
    clipped = int((decoded.data.abs() >= FULL_SCALE).any(0).sum())
    if clipped:
        logger.info("%s: %d samples (%.2f%%) at full scale: the recording clips", what, clipped,
                    100 * clipped / len(samples))  # fmt: skip
    return DecodedAudio(samples, sample_rate, metadata.sample_rate, metadata.num_channels, clipped)


def _check_decoded(rate: int, wanted: int, seconds: float, announced: float | None, what: str) -> None:
    """AudioInputError unless FFmpeg resampled to the backbone's rate and decoded about what the header announced."""
    if rate != wanted:
        raise AudioInputError(f"{what} decoded at {rate} Hz, not the {wanted} Hz the backbone needs: convert it "
                              f"first (ffmpeg -i IN -ar {wanted} OUT.wav)")  # fmt: skip
    if announced and seconds < announced * TRUNCATED_SHARE and announced - seconds > TRUNCATED_SECONDS:
        raise AudioInputError(f"{what} decoded to {seconds:.2f} s of the {announced:.2f} s its header announces: it "
                              "looks truncated (or its header is wrong); send it whole, or re-encode it")  # fmt: skip


def _open(source: bytes | str | os.PathLike, sample_rate: int, what: str) -> Any:
    from torchcodec.decoders import AudioDecoder

    if isinstance(source, bytes) and not source:
        raise AudioInputError(f"{what} is empty (0 bytes): {FORMATS_HINT}")
    if not isinstance(source, bytes) and not Path(source).is_file():
        raise MissingInputError(f"{what} does not exist or is not a file")
    try:
        return AudioDecoder(source if isinstance(source, bytes) else str(source), sample_rate=sample_rate)
    except ValueError as error:  # torchcodec: no audio stream to pick
        raise AudioInputError(f"{what} holds no audio stream: {FORMATS_HINT}") from error
    except RuntimeError as error:
        raise AudioInputError(f"could not decode {what} as audio ({_reason(error)}): {FORMATS_HINT}") from error


def _decode(decoder: Any, stop_seconds: float, what: str, announced: float | None) -> Any:
    """torchcodec's AudioSamples of the stream up to `stop_seconds`; AudioInputError when FFmpeg fails."""
    try:
        return decoder.get_samples_played_in_range(stop_seconds=stop_seconds)
    except RuntimeError as error:
        if announced == 0 or "No audio frames" in str(error):
            raise AudioInputError(f"{what} holds no audio samples") from error
        raise AudioInputError(f"could not decode {what} as audio ({_reason(error)}): it is truncated or corrupt; "
                              f"{FORMATS_HINT}") from error  # fmt: skip


def _reason(error: Exception) -> str:
    """FFmpeg's own words from a torchcodec error: its last line, after the C++ location."""
    text = str(error).strip()
    return text.splitlines()[-1].split(": ", 1)[-1] if text else type(error).__name__


def _too_long(
    what: str, seconds: float, max_seconds: float, channels: int = 1, at_least: bool = False
) -> AudioInputError:
    length = f"{'at least ' if at_least else ''}{seconds / 60:.1f} min"
    if channels > STEREO:
        return AudioInputError(f"{what} is {length} of {channels} channels; speechpeft decodes at most "
                               f"{max_seconds * STEREO / channels / 60:.1f} min of {channels} channels "
                               f"({max_seconds / 60:g} min of mono or stereo): mix it down first (ffmpeg -i IN -ac 1 "
                               "OUT.flac) or cut it")  # fmt: skip
    return AudioInputError(f"{what} is {length} long; speechpeft takes at most {max_seconds / 60:g} min "
                           "(MAX_AUDIO_SECONDS): cut it into shorter files")  # fmt: skip


def check_clip(
    samples: np.ndarray, sample_rate: int, what: str = "audio", *, max_seconds: float = MAX_AUDIO_SECONDS
) -> np.ndarray:
    """A 1-D float clip as float32, or AudioInputError: no samples, NaN or infinite samples, over `max_seconds`.

    Silence and clipping pass: silence is valid audio, and a clipped recording is still speech.
    """
    if not len(samples):
        raise AudioInputError(f"{what} holds no samples: send a clip of at least one sample")
    if len(samples) > max_seconds * sample_rate:
        raise _too_long(what, len(samples) / sample_rate, max_seconds)
    finite = np.isfinite(samples)
    if not finite.all():
        nan, first = int(np.isnan(samples).sum()), int(np.argmin(finite))
        raise AudioInputError(f"{what} holds {nan} NaN and {len(samples) - nan - int(finite.sum())} infinite "
                              f"samples (the first at {first / sample_rate:.3f} s): it is corrupt; fix or drop "
                              "it")  # fmt: skip
    return np.ascontiguousarray(samples, dtype=np.float32)


def dataset_clip(decoder: Any, what: str = "a dataset clip") -> np.ndarray:
    """All samples of an opened torchcodec AudioDecoder (a `datasets` Audio value), channels averaged, checked by
    `check_clip` without a length limit (tasks leave out rows too long for them); AudioInputError when FFmpeg fails
    midway (a truncated or corrupt file)."""
    try:
        samples = decoder.get_all_samples()
    except RuntimeError as error:
        raise AudioInputError(f"could not decode {what} as audio ({_reason(error)}): it is truncated or corrupt; fix "
                              "or remove it") from error  # fmt: skip
    return check_clip(samples.data.mean(0).numpy(), samples.sample_rate, what, max_seconds=math.inf)


def open_error(source: bytes | str) -> str | None:
    """Why FFmpeg cannot open `source` (a file's bytes or path) as audio, in its own words; None when it can."""
    from torchcodec.decoders import AudioDecoder

    try:
        AudioDecoder(source)
    except ValueError:
        return "no audio stream"
    except RuntimeError as error:
        return _reason(error)
    return None


def piece_samples(extractor: Any, sample_rate: int) -> int:
    """The longest piece, in samples, a backbone's feature extractor takes whole: Whisper's fixed window, else
    CHUNK_SECONDS. InputError when the extractor expects audio at another rate than the clips have."""
    from speechpeft.tasks.rows import window_samples

    if extractor.sampling_rate != sample_rate:
        raise InputError(f"the backbone takes audio at {extractor.sampling_rate} Hz, but clips come at {sample_rate} "
                         "Hz: serve it from a bank at its rate")  # fmt: skip
    return window_samples(extractor) or round(CHUNK_SECONDS * sample_rate)


def split_clips(
    clips: Sequence[np.ndarray], windows: Sequence[int], sample_rate: int
) -> tuple[list[np.ndarray], list[int]]:
    """Each clip in pieces of at most its `windows[i]` samples (`split_clip`), and each piece's clip index.

    Of a clip cut in several pieces, the silent ones (every sample under SILENCE_LEVEL) are left out: Whisper makes
    words up for silence, and an hour of it would be 120 windows of them.
    """
    pieces, owners = [], []
    for index, (clip, window) in enumerate(zip(clips, windows, strict=True)):
        cut = split_clip(clip, window, sample_rate)
        if len(cut) > 1:
            cut = [piece for piece in cut if np.abs(piece).max() >= SILENCE_LEVEL]
        pieces += cut
        owners += [index] * len(cut)
    return pieces, owners


def split_clip(clip: np.ndarray, window: int, sample_rate: int) -> list[np.ndarray]:
    """`clip` in consecutive pieces of at most `window` samples; a clip that fits is one piece, itself.

    Each cut falls in the middle of the quietest 10 ms frame (the last of equals) of the last CUT_SEARCH of the
    window, where a pause between words is likeliest, so that fewer words are cut in two.
    """
    frame = max(1, round(CUT_FRAME_SECONDS * sample_rate))
    pieces, start = [], 0
    while len(clip) - start > window:
        cut = start + _cut_point(clip[start : start + window], frame)
        pieces.append(clip[start:cut])
        start = cut
    return [*pieces, clip[start:]]


def _cut_point(head: np.ndarray, frame: int) -> int:
    """Where the piece starting `head` (one window of samples) ends: the middle of the quietest whole frame of the
    window's last CUT_SEARCH, or the window's end when no frame fits there."""
    first = len(head) - int(len(head) * CUT_SEARCH)
    count = (len(head) - first) // frame
    if count == 0:
        return len(head)
    energy = np.square(head[first : first + count * frame].reshape(count, frame), dtype=np.float64).sum(axis=1)
    latest = count - 1 - int(np.argmin(energy[::-1]))  # of equally quiet frames the last: longer, fewer pieces
    return first + latest * frame + frame // 2


def join_pieces(texts: Sequence[str], owners: Sequence[int], count: int) -> list[str]:
    """The transcripts of `count` clips from their pieces' (`split_clips`), one space between non-empty ones."""
    parts: list[list[str]] = [[] for _ in range(count)]
    for text, owner in zip(texts, owners, strict=True):
        if text:
            parts[owner].append(text)
    return [" ".join(part) for part in parts]


def fits_window(clip: np.ndarray, window: int, sample_rate: int, what: str, operation: str) -> None:
    """AudioInputError when `clip` is longer than `window` samples: `operation` takes it whole or not at all."""
    if len(clip) > window:
        raise AudioInputError(f"{what} is {len(clip) / sample_rate:.1f} s long; {operation} takes at most "
                              f"{window / sample_rate:g} s with this backbone (its window): cut the clip")  # fmt: skip
