"""Speak planned utterances to 16 kHz mono FLAC clips, in parallel, resumable clip by clip.

Each clip is written under a temporary name and renamed when complete, so an interrupted
build leaves only whole clips behind and the next run synthesises just the missing ones.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from tqdm.auto import tqdm

from speechpeft.errors import UserError
from speechpeft.tasks.corpus.plan import Utterance
from speechpeft.tasks.corpus.voices import voice_by_id

SAMPLE_RATE = 16_000  # Hz, what every backbone family here expects
PEAK_DBFS = -3.0  # every clip is normalised to this peak level, whatever the engine's loudness
ENGINE_TIMEOUT_S = 60


class SynthesisError(UserError, RuntimeError):
    """A speech engine or sox failed on one utterance."""


def clip_path(clips: Path, utterance: Utterance) -> Path:
    return clips / f"{utterance.id}.flac"


def render_clip(utterance: Utterance, clips: Path) -> Path:
    """Run the voice's engine, then sox: resample to 16 kHz mono 16-bit, adjust tempo, normalise."""
    out = clip_path(clips, utterance)
    voice = voice_by_id(utterance.voice)
    with tempfile.TemporaryDirectory(prefix="speechpeft-synth-") as tmp:
        raw = Path(tmp) / "raw.wav"
        argv, stdin = voice.command(utterance.text, raw, utterance.rate, utterance.pitch)
        _run(argv, stdin, utterance)
        partial = clips / f"{utterance.id}.partial.flac"
        tempo = [] if voice.native_rate else ["tempo", "-s", f"{utterance.rate:.3f}"]
        # -D: no dither, so a clip is a pure function of its utterance; gain last, so the peak is exact
        effects = [*tempo, "rate", "-v", str(SAMPLE_RATE), "gain", "-n", str(PEAK_DBFS)]
        _run(["sox", "-D", str(raw), "-c", "1", "-b", "16", str(partial), *effects], None, utterance)
    partial.replace(out)
    return out


def _run(argv: list[str], stdin: str | None, utterance: Utterance) -> None:
    try:
        result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=ENGINE_TIMEOUT_S)
    except FileNotFoundError as error:
        raise SynthesisError(f"{argv[0]} is not installed: run `make setup` (apt-get install {argv[0]})") from error
    except subprocess.TimeoutExpired as error:
        raise SynthesisError(f"{argv[0]} took over {ENGINE_TIMEOUT_S} s on utterance {utterance.id}") from error
    if result.returncode != 0:
        raise SynthesisError(
            f"{argv[0]} failed (exit {result.returncode}) on utterance {utterance.id} "
            f"({utterance.voice}: {utterance.text!r}): {result.stderr.strip()[-500:]}"
        )


def render_all(
    utterances: list[Utterance],
    clips: Path,
    jobs: int,
    progress: bool = True,
    render: Callable[[Utterance, Path], Path] = render_clip,
) -> int:
    """Render every utterance whose clip is missing; return how many were rendered now."""
    clips.mkdir(parents=True, exist_ok=True)
    for stale in clips.glob("*.partial.flac"):
        stale.unlink()
    todo = [u for u in utterances if not clip_path(clips, u).exists()]
    done = len(utterances) - len(todo)
    bar = tqdm(total=len(utterances), initial=done, unit="clip", desc="synthesising", disable=not progress)
    with bar, ThreadPoolExecutor(max_workers=jobs) as pool:  # engines are subprocesses: threads use every core
        futures = [pool.submit(render, u, clips) for u in todo]
        try:
            for future in as_completed(futures):
                future.result()
                bar.update()
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return len(todo)
