"""Voices of Debian's speech engines, and how to make each one speak a line of text to a WAV file.

Voices are split into two groups that never mix: *pretrain* voices (what the built-in
backbones learn from) and *adapt* voices (never heard in pretraining: what adapters are for).
The adapt group holds whole engines the backbones never hear (flite, festival) and one held-out
espeak-ng accent, so the gap an adapter closes is both a new synthesiser and a new accent.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

VoiceGroup = Literal["pretrain", "adapt"]
ESPEAK_DEFAULT_WPM = 175  # words per minute at rate 1.0
ESPEAK_DEFAULT_PITCH = 50  # 0..99


@dataclass(frozen=True)
class Voice:
    engine: Literal["espeak-ng", "flite", "festival"]
    name: str  # the engine's own voice id: "en-us+f3", "slt", "kal_diphone"
    group: VoiceGroup

    @property
    def id(self) -> str:
        """Stable id used in data and adapter names, e.g. `espeak-en-us+f3`, `flite-awb`."""
        return f"{self.engine.split('-')[0]}-{self.name}"

    def command(self, text: str, wav: Path, rate: float, pitch: float) -> tuple[list[str], str | None]:
        """The argv that writes `text` to `wav`, and what to feed its stdin (None: nothing)."""
        if self.engine == "espeak-ng":
            speed, pitch_value = espeak_settings(rate, pitch)
            return ["espeak-ng", "-v", self.name, "-s", str(speed), "-p", str(pitch_value), "-w", str(wav), text], None
        if self.engine == "flite":
            stretch = f"{1 / rate:.3f}"
            return [
                "flite",
                "-voice",
                self.name,
                "--setf",
                f"duration_stretch={stretch}",
                "-t",
                text,
                "-o",
                str(wav),
            ], None
        return ["text2wave", "-eval", f"(voice_{self.name})", "-o", str(wav)], text

    @property
    def native_rate(self) -> bool:
        """Whether the engine changes the speaking rate itself; festival's voices are sped up by sox `tempo`."""
        return self.engine != "festival"

    @property
    def native_pitch(self) -> bool:
        return self.engine == "espeak-ng"


def espeak_settings(rate: float, pitch: float) -> tuple[int, int]:
    """espeak-ng's speed (words per minute) and pitch (0..99) for the corpus's rate and pitch multipliers."""
    return round(ESPEAK_DEFAULT_WPM * rate), round(ESPEAK_DEFAULT_PITCH * pitch)


PRETRAIN_VOICES = tuple(
    Voice("espeak-ng", name, "pretrain")
    for name in (
        "en-us", "en-gb", "en-gb-scotland", "en-us+f3", "en-gb-x-rp+m3",
        "en-029+f2", "en-us-nyc+m2", "en-gb-x-gbclan+f4", "en-gb+m5", "en-us+f5",
    )
)  # fmt: skip
ADAPT_VOICES = (
    Voice("espeak-ng", "en-gb-x-gbcwmd+m3", "adapt"),  # West Midlands: an accent the backbones never hear
    Voice("espeak-ng", "en-gb-x-gbcwmd+f3", "adapt"),
    Voice("flite", "awb", "adapt"),
    Voice("flite", "rms", "adapt"),
    Voice("flite", "slt", "adapt"),
    Voice("flite", "kal16", "adapt"),
    Voice("festival", "kal_diphone", "adapt"),
    Voice("festival", "cmu_us_slt_arctic_hts", "adapt"),
)
VOICES = PRETRAIN_VOICES + ADAPT_VOICES
ENGINE_PROGRAMS = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "text2wave"}
APT_PACKAGES = "espeak-ng flite festival festvox-kallpc16k festvox-us-slt-hts sox"


def voice_by_id(voice_id: str) -> Voice:
    for voice in VOICES:
        if voice.id == voice_id:
            return voice
    raise ValueError(f"unknown voice {voice_id!r}; voices: {', '.join(v.id for v in VOICES)}")


def missing_programs(voices: tuple[Voice, ...] = VOICES) -> list[str]:
    """Programs the voices need that are not on PATH (sox converts every engine's output)."""
    needed = {ENGINE_PROGRAMS[v.engine] for v in voices} | {"sox"}
    return sorted(p for p in needed if shutil.which(p) is None)
