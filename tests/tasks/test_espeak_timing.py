"""espeak-ng phoneme timings: checked against the `espeak-ng` program and against clips the corpus renderer writes."""

import hashlib
import subprocess
import wave

import numpy as np
import pytest
import soundfile

from speechpeft.errors import InputError
from speechpeft.tasks.corpus import espeak_timing, render
from speechpeft.tasks.corpus.espeak_timing import (
    EspeakTimingError,
    check_clip_length,
    frame_durations,
    phoneme_text,
    phoneme_timings,
    phoneme_tokens,
)
from speechpeft.tasks.corpus.plan import Utterance
from speechpeft.tasks.corpus.voices import VOICES, Voice, espeak_settings, voice_by_id

CAT = "the cat sat on the mat"
ODD_TEXT = "It costs $3.50 on 12/05/2024, at 7:30pm -- 100% sure; isn't it?"


@pytest.fixture(scope="module")
def cat() -> espeak_timing.Timings:
    return phoneme_timings(CAT, "espeak-en-us", rate=0.92)  # 161 words per minute


def cli_audio(tmp_path, voice: str, rate: float, pitch: float, text: str) -> tuple[int, str]:
    """Length and SHA-1 of the PCM that `espeak-ng -w` writes, as the corpus renderer calls it."""
    speed, pitch_value = espeak_settings(rate, pitch)
    wav = tmp_path / "cli.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch_value), "-w", str(wav), text],
                   check=True)  # fmt: skip
    with wave.open(str(wav)) as audio:
        assert audio.getframerate() == 22_050
        return audio.getnframes(), hashlib.sha1(audio.readframes(audio.getnframes())).hexdigest()


def test_probe_sentence_phonemes_words_and_samples(cat):
    words = [" ".join(m for m, w in zip(cat.phonemes, cat.words, strict=True) if w == i) for i in range(6)]
    assert words == ["D @2", "k a t", "s a t", "O2 n D @2", "m a t", "_: _"]  # espeak joins "on the"
    assert cat.starts[:5] == (286, 1374, 3778, 4865, 9076)
    assert (cat.samples, cat.sample_rate) == (38_302, 22_050)
    assert cat.end_seconds[-1] == pytest.approx(38_302 / 22_050)
    assert cat.starts[-1] == cat.samples  # the final `_` marks the end: no duration


@pytest.mark.parametrize(
    ("voice", "rate", "pitch", "text"),
    [
        ("en-us", 0.92, 1.0, CAT),
        ("en-gb+m5", 0.9, 0.81, CAT),  # found as a language, not a voice file: the program's fallback
        ("en-gb-x-gbcwmd+m3", 1.137, 1.19, "turn on the kitchen lights"),
        ("en-gb", 1.0, 1.0, ODD_TEXT),
    ],
)
def test_audio_is_bit_identical_to_the_espeak_ng_program(tmp_path, voice, rate, pitch, text):
    timings = phoneme_timings(text, f"espeak-{voice}", rate, pitch)
    assert (timings.samples, timings.audio_sha1) == cli_audio(tmp_path, voice, rate, pitch, text)


def test_resynthesis_matches_a_clip_the_corpus_renderer_wrote(tmp_path):
    voice = voice_by_id("espeak-en-gb-x-gbcwmd+m3")
    # rate 0.9 and pitch 0.81 land on .5 in words per minute and pitch: float32 columns must round back first
    row = Utterance("0000042", ODD_TEXT, "sentence", "", "[]", "", voice.id, voice.engine, voice.group, "adapt",
                    0.9, 0.81)  # fmt: skip
    clip_samples = len(soundfile.read(render.render_clip(row, tmp_path))[0])
    [timings] = espeak_timing.corpus_timings(
        [{"text": row.text, "voice": row.voice, "rate": np.float32(row.rate), "pitch": np.float32(row.pitch)}],
        progress=False,
    )
    check_clip_length(timings, clip_samples, row.id)
    with pytest.raises(EspeakTimingError, match=r"row 0000042: .* 16000 Hz"):
        check_clip_length(timings, clip_samples + 1, row.id)


def test_frame_durations_known_values(cat):
    # boundary k = ceil(start_k * 16000 / 22050 / 256): @2 starts at 1374 -> 3.89 -> 4, k 3778 -> 10.7 -> 11, ...
    frames = 1 + cat.resampled_length(16_000) // 256  # SpeechT5FeatureExtractor's count (centred frames)
    assert frame_durations(cat, frames, hop_length=256)[:5] == [4, 7, 3, 12, 4]


@pytest.mark.parametrize("hop", [160, 200, 256, 320])
@pytest.mark.parametrize("slack", [-1, 0, 1])
def test_frame_durations_sum_to_the_mel_length(hop, slack):
    timings = phoneme_timings(ODD_TEXT, "espeak-en-us+f3", rate=1.13, pitch=0.8)
    n_frames = 1 + timings.resampled_length(16_000) // hop + slack
    durations = frame_durations(timings, n_frames, hop_length=hop)
    assert sum(durations) == n_frames and min(durations) >= 0 and len(durations) == len(timings.phonemes)


def test_frame_durations_reject_a_mel_of_another_length(cat):
    frames = 1 + cat.resampled_length(16_000) // 256
    with pytest.raises(ValueError, match="do not fit"):
        frame_durations(cat, frames + 5, hop_length=256)


def test_unknown_voices_give_clear_errors(monkeypatch):
    with pytest.raises(ValueError, match="unknown voice 'espeak-xx'; voices: espeak-en-us"):
        phoneme_timings("hello", "espeak-xx")
    with pytest.raises(InputError, match="only espeak-ng voices"):
        phoneme_timings("hello", "flite-slt")
    monkeypatch.setattr(espeak_timing, "voice_by_id", lambda _: Voice("espeak-ng", "xx-nope", "adapt"))
    with pytest.raises(EspeakTimingError, match="voice 'xx-nope': not found"):
        phoneme_timings("hello", "espeak-xx-nope")


def test_digits_and_punctuation_are_timed(tmp_path):
    timings = phoneme_timings(ODD_TEXT, "espeak-en-us")
    assert len(timings.phonemes) > 60 and {"_:", "_"} <= set(timings.phonemes)
    assert timings.samples == cli_audio(tmp_path, "en-us", 1.0, 1.0, ODD_TEXT)[0]
    assert len(phoneme_text(timings).split(" ")) == max(timings.words) + 1


def test_inventory_is_one_distinct_character_per_mnemonic(cat):
    tokens = phoneme_tokens()
    assert len(tokens) == 165 and len(set(tokens.values())) == len(tokens)
    assert all(len(t) == 1 and not t.isspace() for t in tokens.values())
    assert {m: tokens[m] for m in ("D", "@2", "k", "_:", "O2")} == {
        "D": "D",
        "@2": "ā",
        "k": "k",
        "_:": "Ã",
        "O2": "Ď",
    }
    assert phoneme_text(cat) == "Dā kat sat ĎnDā mat Ã_"


def test_inventory_holds_every_phoneme_of_the_installed_english_tables():
    english = espeak_timing.engine_phonemes("en")
    assert {"D", "@2", "aI", "_:", "_|", "t[", "@5", "IR"} <= set(english)  # also seen in the corpus's voices
    assert set(english) <= set(phoneme_tokens())


def test_extend_inventory_appends_and_keeps_existing_rows(tmp_path, monkeypatch):
    table = tmp_path / "phonemes.tsv"
    table.write_text("mnemonic\ttoken\nD\tD\n@2\tā\n", encoding="utf-8")
    monkeypatch.setattr(espeak_timing, "INVENTORY", table)
    espeak_timing.phoneme_tokens.cache_clear()
    try:
        added = espeak_timing.extend_inventory()
        tokens = phoneme_tokens()
        assert len(added) == 163 and "@2" not in added and espeak_timing.extend_inventory() == []
        assert list(tokens.items())[:2] == [("D", "D"), ("@2", "ā")] and len(set(tokens.values())) == 165
    finally:
        espeak_timing.phoneme_tokens.cache_clear()


def test_inventory_covers_every_espeak_voice_of_the_corpus():
    for voice in (v for v in VOICES if v.engine == "espeak-ng"):
        text = phoneme_text(phoneme_timings("Judge Vixley's quartz sphinx hears a fierce, queer bog-pony!", voice.id))
        assert text and "  " not in text


def test_a_phoneme_missing_from_the_inventory_is_named(cat):
    odd = espeak_timing.Timings(("k", "Q!"), (0, 10), (0, 0), 20, 22_050, "")
    with pytest.raises(EspeakTimingError, match=r"\['Q!'\] are not in espeak_phonemes.tsv"):
        phoneme_text(odd)
