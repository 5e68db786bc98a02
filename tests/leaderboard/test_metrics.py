"""The leaderboard's metrics, loaded as `evaluate` modules from the package (offline), against hand-computed values."""

import itertools
import math

import numpy as np
import pytest

from speechpeft.leaderboard.metrics import METRIC_NAMES, load_metric
from speechpeft.leaderboard.normalize import normalize_english
from speechpeft.leaderboard.speech_quality import cepstral_distortion, dtw_path
from tests.audio import spoken


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("Hello, World!", "hello world"),
        ("It\u2019s a well-known fact.", "it's a well known fact"),
        ("'Quoted' words and rock 'n' roll", "quoted words and rock n roll"),
        ("  many   spaces\tand\nlines ", "many spaces and lines"),
        ("Turn it up to 11 / max", "turn it up to 11 max"),
        ("ÉCOLE café naïve", "ecole cafe naive"),
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
    assert result["reference_words"] == 8 and result["normalizer"] == "speechpeft-en-1"
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


def _brute_force_dtw(cost):
    total = np.full((cost.shape[0] + 1, cost.shape[1] + 1), np.inf)
    total[0, 0] = 0
    for i in range(1, total.shape[0]):
        for j in range(1, total.shape[1]):
            total[i, j] = cost[i - 1, j - 1] + min(total[i - 1, j], total[i, j - 1], total[i - 1, j - 1])
    return total[-1, -1]


@pytest.mark.parametrize("shape", [(7, 9), (1, 5), (5, 1), (12, 4), (30, 30)])
def test_dtw_path_is_monotonic_and_of_least_cost(shape):
    cost = np.random.default_rng(sum(shape)).random(shape)
    path = dtw_path(cost)
    assert path[0] == (0, 0) and path[-1] == (shape[0] - 1, shape[1] - 1)
    assert all(0 <= b[0] - a[0] <= 1 and 0 <= b[1] - a[1] <= 1 and a != b for a, b in itertools.pairwise(path))
    assert sum(cost[i, j] for i, j in path) == pytest.approx(_brute_force_dtw(cost))


def test_cepstral_distortion_by_hand():
    # a time-stretched copy aligns perfectly: 0 dB
    assert cepstral_distortion(np.array([[0.0, 0.0], [3.0, 4.0]]), np.array([[0.0, 0], [0, 0], [3, 4]])) == 0.0
    # one frame, distance 1: 10 / ln 10 * sqrt(2) dB
    assert cepstral_distortion(np.array([[1.0, 0.0]]), np.array([[0.0, 0.0]])) == pytest.approx(
        10 / math.log(10) * math.sqrt(2)
    )
    # two frames, distances 3 and 4 along the diagonal: mean 3.5
    assert cepstral_distortion(np.array([[0.0], [10.0]]), np.array([[3.0], [14.0]])) == pytest.approx(
        3.5 * 10 / math.log(10) * math.sqrt(2)
    )


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    directory = tmp_path_factory.mktemp("speech")
    return {
        "a": spoken("the quick brown fox jumps over the lazy dog", directory, name="a"),
        "b": spoken("please turn off the lights in the kitchen", directory, "espeak-en-gb", name="b"),
    }


def test_mcd_of_real_speech(speech):
    mcd = load_metric("mcd")
    same = mcd.compute(predictions=[speech["a"]], references=[speech["a"]])
    assert same["mcd"] == 0.0
    other = mcd.compute(predictions=[speech["b"], speech["a"]], references=[speech["a"], speech["a"]])
    assert other["per_clip"][1] == 0.0 and other["per_clip"][0] > 1.0
    assert other["mcd"] == pytest.approx(other["per_clip"][0] / 2)


def test_dnsmos_prefers_clean_speech_to_noisy_speech(speech):
    clean = speech["a"]
    noisy = clean + np.random.default_rng(0).normal(0, 0.1, clean.shape).astype(np.float32)
    result = load_metric("dnsmos").compute(predictions=[clean, noisy])
    first, second = result["per_clip"]
    assert all(1.0 <= first[k] <= 5.0 for k in ("ovrl_mos", "sig_mos", "bak_mos", "p808_mos"))
    assert second["bak_mos"] < first["bak_mos"] - 0.5  # background noise is what BAK measures
    assert result["ovrl_mos"] == pytest.approx((first["ovrl_mos"] + second["ovrl_mos"]) / 2)
