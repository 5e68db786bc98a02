"""Phonemes and their exact durations for espeak-ng clips of the synthetic corpus, from the engine itself.

The corpus renders espeak-ng voices with `espeak-ng -w` (`voices.Voice.command`), then sox resamples to
16 kHz without trimming (`render.render_clip`). Resynthesising a row's text, voice, rate and pitch
through libespeak-ng (`espeak_engine`) gives bit-identical audio *and* the sample at which every
phoneme starts, so a duration-based TTS model (FastSpeech 2, https://arxiv.org/abs/2006.04558) gets
its duration targets with no aligner. The library carries state from one synthesis to the next, so
each utterance runs in a fresh interpreter; `check_clip_length` catches any drift (e.g. a different
espeak-ng version than the one that rendered the corpus).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from itertools import groupby, pairwise
from operator import itemgetter
from pathlib import Path

from tqdm.auto import tqdm

from speechpeft.errors import InputError, UserError
from speechpeft.tasks.corpus.plan import FACTOR_DECIMALS
from speechpeft.tasks.corpus.render import ENGINE_TIMEOUT_S, SAMPLE_RATE
from speechpeft.tasks.corpus.voices import espeak_settings, voice_by_id

ENGINE_SCRIPT = Path(__file__).with_name("espeak_engine.py")
INVENTORY = Path(__file__).with_name("espeak_phonemes.tsv")
WORD_SEPARATOR = " "
FRAME_SLACK = 1  # frames a mel may differ from centred framing (1 + samples // hop) before it is rejected


class EspeakTimingError(UserError, RuntimeError):
    """libespeak-ng could not time an utterance, or its timing does not fit the audio it is meant for."""


@dataclass(frozen=True)
class Timings:
    """What libespeak-ng said, phoneme by phoneme, for one utterance.

    `starts[i]` is the sample (at `sample_rate`, the engine's 22,050 Hz) where phoneme i begins; it ends
    where the next begins, the last one at `samples`, the audio's length. `words[i]` numbers the engine's
    words (it may join two, as in "on the": `O2 n D @2`); pauses such as the final `_:` count as words.
    """

    phonemes: tuple[str, ...]  # espeak mnemonics: "D", "@2", "aI", "_:"
    starts: tuple[int, ...]  # samples
    words: tuple[int, ...]
    samples: int
    sample_rate: int  # Hz
    audio_sha1: str  # of the engine's 16-bit PCM: equals that of the data `espeak-ng -w` writes

    def __post_init__(self) -> None:
        edges = [*self.starts, self.samples]
        if any(b < a for a, b in pairwise(edges)) or (self.starts and self.starts[0] < 0):
            raise EspeakTimingError(f"libespeak-ng reported phonemes out of order: {list(self.starts)}")

    @property
    def ends(self) -> tuple[int, ...]:
        return (*self.starts[1:], self.samples)

    @property
    def start_seconds(self) -> tuple[float, ...]:
        return tuple(s / self.sample_rate for s in self.starts)

    @property
    def end_seconds(self) -> tuple[float, ...]:
        return tuple(e / self.sample_rate for e in self.ends)

    def resampled_length(self, sample_rate: int = SAMPLE_RATE) -> int:
        """The audio's length after sox's `rate` effect to `sample_rate`: it rounds to the nearest sample."""
        return (2 * self.samples * sample_rate + self.sample_rate) // (2 * self.sample_rate)


def phoneme_timings(text: str, voice: str, rate: float = 1.0, pitch: float = 1.0) -> Timings:
    """Time `text` as the corpus rendered it: `voice` a corpus voice id ("espeak-en-us+f3"), `rate` and `pitch`
    the row's multipliers (rounded as the plan rounds them, so the dataset's float32 columns work).

    Raises InputError for an unknown or non-espeak voice, EspeakTimingError if the engine fails."""
    engine_voice = voice_by_id(voice)
    if engine_voice.engine != "espeak-ng":
        raise InputError(f"voice {voice!r} is spoken by {engine_voice.engine}: only espeak-ng voices have timings")
    speed, pitch_value = espeak_settings(round(float(rate), FACTOR_DECIMALS), round(float(pitch), FACTOR_DECIMALS))
    request = {"voice": engine_voice.name, "speed": speed, "pitch": pitch_value, "text": text}
    reply = _run_engine(request, f"{voice}: {text!r}")
    mnemonics, starts, positions = zip(*reply["phonemes"], strict=True) if reply["phonemes"] else ((), (), ())
    return Timings(tuple(mnemonics), tuple(starts), _word_numbers(positions), reply["samples"],
                   reply["sample_rate"], reply["audio_sha1"])  # fmt: skip


def _run_engine(request: dict, what: str) -> dict:
    """One fresh interpreter, isolated from the environment and site-packages (the engine is stdlib only)."""
    argv = [sys.executable, "-I", "-S", str(ENGINE_SCRIPT)]
    try:
        done = subprocess.run(argv, input=json.dumps(request), capture_output=True, text=True,
                              timeout=ENGINE_TIMEOUT_S)  # fmt: skip
        reply = json.loads(done.stdout)
    except subprocess.TimeoutExpired as error:
        raise EspeakTimingError(f"libespeak-ng took over {ENGINE_TIMEOUT_S} s on {what}") from error
    except json.JSONDecodeError as error:
        crash = f"libespeak-ng crashed (exit {done.returncode}) on {what}: {done.stderr[-500:]}"
        raise EspeakTimingError(crash) from error
    if "error" in reply:
        raise EspeakTimingError(f"{reply['error']} ({what}); `espeak-ng --voices=en` lists the installed voices")
    return reply


def _word_numbers(text_positions: tuple[int, ...]) -> tuple[int, ...]:
    """Number the phonemes' words: a new word wherever the text position changes."""
    numbers = [0] * len(text_positions)
    for i in range(1, len(text_positions)):
        numbers[i] = numbers[i - 1] + (text_positions[i] != text_positions[i - 1])
    return tuple(numbers)


def corpus_timings(rows: Iterable[Mapping], jobs: int = 2, progress: bool = True) -> list[Timings]:
    """`phoneme_timings` of every row (keys text, voice, rate, pitch), in order, `jobs` engines at a time."""
    rows = list(rows)
    with ThreadPoolExecutor(max_workers=jobs) as pool:  # each call is a subprocess: threads use every core
        timed = pool.map(lambda r: phoneme_timings(r["text"], r["voice"], r["rate"], r["pitch"]), rows)
        return list(tqdm(timed, total=len(rows), unit="utt", desc="espeak timings", disable=not progress))


def check_clip_length(timings: Timings, clip_samples: int, row_id: str, sample_rate: int = SAMPLE_RATE) -> None:
    """Raise EspeakTimingError naming the row unless the resynthesis, resampled, is exactly as long as the clip."""
    expected = timings.resampled_length(sample_rate)
    if expected != clip_samples:
        raise EspeakTimingError(
            f"row {row_id}: libespeak-ng's resynthesis is {expected} samples at {sample_rate} Hz, the clip "
            f"{clip_samples}: this espeak-ng is not the one that rendered the corpus (or the row's text, voice, "
            "rate or pitch changed); re-render the corpus on this machine or leave the row out"
        )


def frame_durations(timings: Timings, n_frames: int, hop_length: int, sample_rate: int = SAMPLE_RATE) -> list[int]:
    """Frames per phoneme of a mel with `n_frames` centred frames (frame i centred on sample i·hop at
    `sample_rate`, as `SpeechT5FeatureExtractor` and torchaudio's `MelSpectrogram` frame a clip): a frame goes to
    the phoneme its centre falls in, so the counts sum to `n_frames` exactly. The engine's lead-in before its
    first phoneme (~12 ms) counts to that phoneme; a phoneme shorter than a hop may get 0 frames.

    Raises ValueError if `n_frames` does not fit the audio's length (a mel of another clip or framing)."""
    centred = 1 + timings.resampled_length(sample_rate) // hop_length
    if abs(n_frames - centred) > FRAME_SLACK or not timings.phonemes:
        raise ValueError(f"{n_frames} mel frames do not fit {timings.samples} samples at {timings.sample_rate} Hz "
                         f"({centred} centred frames of {hop_length} samples at {sample_rate} Hz)")  # fmt: skip
    per_frame = timings.sample_rate * hop_length  # engine samples per frame, times sample_rate
    inner = [min(n_frames, -(-start * sample_rate // per_frame)) for start in timings.starts[1:]]
    edges = [0, *inner, n_frames]
    return [b - a for a, b in pairwise(edges)]


@cache
def phoneme_tokens() -> dict[str, str]:
    """espeak mnemonic -> its one-character token, from `espeak_phonemes.tsv`: a header, then one
    "mnemonic<TAB>token" row per phoneme, append-only (`extend_inventory`), so a token's row number is a stable id.
    A space separates words in tokenised text, so no token is one."""
    _, *rows = INVENTORY.read_text(encoding="utf-8").splitlines()
    return dict(row.split("\t") for row in rows)


def engine_phonemes(language: str = "en") -> list[str]:
    """Every printable mnemonic in the installed espeak-ng's phoneme tables for `language` and its accents
    ("en", "en-us", "en-wm", ...), with the tables they inherit from, base tables first: all a voice can say.

    Reads `phontab` (espeak-ng's compiled tables): u8 table count, 3 bytes; per table u8 phoneme count,
    u8 1 + parent index, 2 bytes, a 32-byte name, then 16 bytes per phoneme, the first 4 its mnemonic."""
    data = (_data_directory() / "phontab").read_bytes()
    tables, offset = [], 4
    for _ in range(data[0]):
        count, parent, name = data[offset], data[offset + 1] - 1, data[offset + 4 : offset + 36].split(b"\0")[0]
        starts = range(offset + 36, offset + 36 + 16 * count, 16)
        mnemonics = [data[o : o + 4].rstrip(b"\0").decode("latin-1") for o in starts]
        tables.append((name.decode(), parent, mnemonics))
        offset += 36 + 16 * count
    found: dict[str, None] = {}
    for index, (name, _, _) in enumerate(tables):
        if name == language or name.startswith(f"{language}-"):
            for table in reversed(_ancestry(tables, index)):
                found.update(dict.fromkeys(m for m in tables[table][2] if m.isprintable() and m))
    return list(found)


def _ancestry(tables: list[tuple[str, int, list[str]]], index: int) -> list[int]:
    chain = []
    while index >= 0 and index not in chain:
        chain.append(index)
        index = tables[index][1]
    return chain


def _data_directory() -> Path:
    """Where espeak-ng keeps its data, as the program reports it ("... Data at: /usr/lib/.../espeak-ng-data")."""
    version = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True).stdout
    return Path(version.split("Data at:")[1].strip())


def extend_inventory(language: str = "en") -> list[str]:
    """Append a token for each of the engine's phonemes the inventory lacks (after an espeak-ng upgrade).

    Single printable ASCII mnemonics stand for themselves; the others take the next unused Latin-1 or
    Latin Extended-A letter. Returns the mnemonics added."""
    tokens = phoneme_tokens()
    new = [m for m in engine_phonemes(language) if m not in tokens]
    free = (chr(c) for c in [*range(0xC0, 0x100), *range(0x100, 0x180)] if c not in (0xD7, 0xF7))
    free = (c for c in free if c not in tokens.values() and c not in new)
    rows = [f"{m}\t{m if len(m) == 1 and m.isascii() else next(free)}\n" for m in new]
    with INVENTORY.open("a", encoding="utf-8") as table:
        table.writelines(rows)
    phoneme_tokens.cache_clear()
    return new


def phoneme_text(timings: Timings) -> str:
    """The utterance as tokenizer input: one character per phoneme, the engine's words separated by spaces.

    Raises EspeakTimingError for a phoneme missing from the inventory."""
    tokens, missing = phoneme_tokens(), sorted(set(timings.phonemes) - set(phoneme_tokens()))
    if missing:
        raise EspeakTimingError(f"espeak phonemes {missing} are not in {INVENTORY.name}: run `extend_inventory()`")
    pairs = zip(timings.phonemes, timings.words, strict=True)
    return WORD_SEPARATOR.join("".join(tokens[m] for m, _ in word) for _, word in groupby(pairs, key=itemgetter(1)))
