"""The leaderboard's metrics, loaded as `evaluate` modules from the package (offline), against hand-computed values."""

import numpy as np
import pytest

from speechpeft.leaderboard.metrics import METRIC_NAMES, load_metric
from speechpeft.leaderboard.normalize import normalize_english
from speechpeft.leaderboard.speech_quality import (
    all_pass_constant,
    cepstral_distortion,
    envelope_mel_cepstra,
    speech_frames,
    world_envelope,
)
from tests.audio import spoken


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("Hello, World!", "hello world"),
        ("It\u2019s a well-known fact.", "it is a well known fact"),  # Whisper's normaliser expands contractions
        ("Don't stop", "do not stop"),
        ("'Quoted' words and rock 'n' roll", "quoted words and rock n roll"),
        ("  many   spaces\tand\nlines ", "many spaces and lines"),
        ("Turn it up to 11 / max", "turn it up to 11 max"),
        ("ÉCOLE café naïve", "ecole cafe naive"),
        # spelled-out numbers become digits, as real Whisper writes them
        ("Set a timer for twenty five minutes", "set a timer for 25 minutes"),
        ("set a timer for 25 minutes.", "set a timer for 25 minutes"),
        ("Turn the volume to seventy percent", "turn the volume to 70"),
        ("uh, the first of May", "the 1st of may"),
        # speechpeft-en-3: letters of other scripts are words too (en-2 dropped them)
        ("Say «Привет» to Ελλάδα, 日本!", "say привет to ελλαδα 日本"),
    ],
)
def test_normalizer_rules(raw, normalized):
    assert normalize_english(raw) == normalized


def test_wer_counts_each_edit_after_normalising():
    wer = load_metric("wer")
    result = wer.compute(
        references=["The cat sat on the mat.", "hello world"], predictions=["the cat sit on mat", "Hello there world"]
    )
    # sat->sit (substitution), "the" dropped (deletion), "there" added (insertion); 8 reference words
    assert result["wer"] == pytest.approx(3 / 8)
    assert (result["substitutions"], result["deletions"], result["insertions"]) == (1, 1, 1)
    assert result["reference_words"] == 8 and result["normalizer"] == "speechpeft-en-3"
    raw = wer.compute(references=["Hello world"], predictions=["hello world"], normalize=False)
    assert raw["wer"] == pytest.approx(1 / 2) and raw["normalizer"] is None


def test_cer_counts_characters_including_spaces():
    result = load_metric("cer").compute(references=["abc de"], predictions=["abd de!"])
    assert result["cer"] == pytest.approx(1 / 6)  # one substitution over six characters; "!" normalised away


def test_classification_accuracy_and_macro_f1():
    result = load_metric("classification").compute(references=["a", "a", "b", "c"], predictions=["a", "b", "b", "a"])
    # F1: a = 2*1/(2+2) = 0.5, b = 2*1/(2+1) = 2/3, c = 0 (never predicted)
    assert result["accuracy"] == pytest.approx(0.5)
    assert result["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0) / 3)


def test_metric_names_are_checked():
    with pytest.raises(ValueError, match="valid metrics: wer, cer"):
        load_metric("bleu")
    assert set(METRIC_NAMES) == {"wer", "cer", "classification", "dnsmos", "mcd"}


def test_mel_cepstra_of_an_envelope_built_from_known_coefficients():
    import pysptk

    assert all_pass_constant(16_000) == pytest.approx(0.41)  # mcepalpha's best fit to the mel scale at 16 kHz
    coefficients = np.random.default_rng(0).normal(0, 1, (4, 25)) / (1 + np.arange(25))  # decaying, like speech
    envelope = pysptk.mc2sp(coefficients, 0.41, 1024)  # [4, 513] power spectra whose mel-cepstrum is known
    np.testing.assert_allclose(envelope_mel_cepstra(envelope), coefficients[:, 1:], atol=1e-6)  # c0 left out
    np.testing.assert_allclose(envelope_mel_cepstra(envelope), pysptk.sp2mc(envelope, 24, 0.41)[:, 1:], atol=1e-12)


def test_world_envelope_is_a_power_envelope_every_5_ms(speech):
    envelope = world_envelope(speech["a"])
    assert envelope.shape == (len(speech["a"]) // 80 + 1, 513)  # 5 ms = 80 samples; CheapTrick's 1024-point FFT
    with pytest.raises(ValueError, match="0 samples"):
        world_envelope(np.zeros(0, np.float32))


def test_silent_frames_are_those_more_than_60_db_below_the_loudest():
    envelope = np.array([[0.5, 0.5], [1e-7, 0.0], [1e-5, 0.0], [0.0, 2e-6]])  # 0, -70, -50, -57 dB
    assert speech_frames(envelope).tolist() == [True, False, True, True]


def test_cepstral_distortion_by_hand():
    db_per_unit = 6.141851463713754  # 10 / ln 10 * sqrt(2): natural-log amplitude cepstra to dB
    # a time-stretched copy aligns perfectly: 0 dB
    assert cepstral_distortion(np.array([[0.0, 0.0], [3.0, 4.0]]), np.array([[0.0, 0], [0, 0], [3, 4]])) == 0.0
    # one frame, c1 and c2 differ by 3 and 4: sqrt(2 * 25) * 10 / ln 10 = 30.709 dB
    assert cepstral_distortion(np.array([[3.0, 4.0]]), np.array([[0.0, 0.0]])) == pytest.approx(30.70925731856877)
    # two frames, distances 3 and 4 along the diagonal: mean 3.5
    assert cepstral_distortion(np.array([[0.0], [10.0]]), np.array([[3.0], [14.0]])) == pytest.approx(
        3.5 * db_per_unit
    )
    # DTW pairs (0,0) (1,0) (2,1): distances 0, 1, 0 over three pairs
    assert cepstral_distortion(np.array([[0.0], [1.0], [5.0]]), np.array([[0.0], [5.0]])) == pytest.approx(
        db_per_unit / 3
    )


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    directory = tmp_path_factory.mktemp("speech")
    text = "the quick brown fox jumps over the lazy dog"
    return {name: spoken(text, directory, voice, name=name)
            for name, voice in (("a", "espeak-en-us"), ("gb", "espeak-en-gb"), ("slt", "flite-slt"))}  # fmt: skip


def test_mcd_of_real_speech_is_in_the_range_of_the_literature(speech):
    mcd = load_metric("mcd")
    same = mcd.compute(predictions=[speech["a"]], references=[speech["a"]])
    assert same["mcd"] == 0.0
    padded = np.pad(speech["a"], 8000)  # half a second of digital silence each side: dropped, so it costs nothing
    assert mcd.compute(predictions=[padded], references=[speech["a"]])["mcd"] < 0.1
    other = mcd.compute(predictions=[speech["gb"], speech["slt"]], references=[speech["a"], speech["a"]])
    # one sentence in another accent of the same engine, then in another engine: single-digit to low-teens dB
    assert all(3.0 < value < 15.0 for value in other["per_clip"]), other["per_clip"]
    assert other["per_clip"][0] < other["per_clip"][1]
    assert other["mcd"] == pytest.approx(sum(other["per_clip"]) / 2)


def test_dnsmos_prefers_clean_speech_to_noisy_speech(speech):
    clean = speech["a"]
    noisy = clean + np.random.default_rng(0).normal(0, 0.1, clean.shape).astype(np.float32)
    result = load_metric("dnsmos").compute(predictions=[clean, noisy])
    first, second = result["per_clip"]
    assert all(1.0 <= first[k] <= 5.0 for k in ("ovrl_mos", "sig_mos", "bak_mos", "p808_mos"))
    assert second["bak_mos"] < first["bak_mos"] - 0.5  # background noise is what BAK measures
    assert result["ovrl_mos"] == pytest.approx((first["ovrl_mos"] + second["ovrl_mos"]) / 2)
