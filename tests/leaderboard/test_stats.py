"""Leaderboard statistics against values computed by hand and by an independent bootstrap in numpy."""

from __future__ import annotations

import numpy as np
import pytest

from speechpeft.leaderboard.stats import across_seeds, char_edits, group_scores, interval, scores


def _numpy_percentile_bootstrap(data: list[np.ndarray], statistic, resamples: int = 4000, seed: int = 7):
    """The textbook percentile bootstrap, written out: resample utterance indices, take the 2.5/97.5 percentiles."""
    rng = np.random.default_rng(seed)
    n = len(data[0])
    draws = rng.integers(0, n, size=(resamples, n))
    values = statistic(*[d[draws] for d in data])
    return np.percentile(values, [2.5, 97.5])


def test_wer_is_errors_over_reference_words_summed_over_utterances():
    items = [{"word_errors": 1, "reference_words": 5}, {"word_errors": 0, "reference_words": 5},
             {"word_errors": 2, "reference_words": 10}]  # fmt: skip
    assert interval("asr", items, "wer")["value"] == pytest.approx(3 / 20)  # not the mean of 0.2, 0, 0.2


def test_wer_interval_matches_an_independent_bootstrap():
    rng = np.random.default_rng(0)
    words = rng.integers(3, 15, size=200)
    errors = rng.binomial(words, 0.2)
    items = [{"word_errors": int(e), "reference_words": int(w)} for e, w in zip(errors, words, strict=True)]
    got = interval("asr", items, "wer")
    low, high = _numpy_percentile_bootstrap([errors, words], lambda e, w: e.sum(-1) / w.sum(-1))
    assert got["value"] == pytest.approx(errors.sum() / words.sum())
    assert got["low"] == pytest.approx(low, abs=0.006) and got["high"] == pytest.approx(high, abs=0.006)
    assert got["low"] < got["value"] < got["high"]


def test_accuracy_interval_has_the_binomial_scale():
    items = [{"correct": i < 90} for i in range(100)]  # 90 % right: standard error sqrt(.9 * .1 / 100) = 0.03
    got = interval("intent", items, "accuracy")
    assert got["value"] == pytest.approx(0.9)
    assert got["low"] == pytest.approx(0.9 - 1.96 * 0.03, abs=0.015)
    assert got["high"] == pytest.approx(0.9 + 1.96 * 0.03, abs=0.015)


def test_a_perfect_score_has_a_zero_width_interval_and_one_utterance_has_none():
    assert interval("intent", [{"correct": True}] * 10, "accuracy") == {"value": 1.0, "low": 1.0, "high": 1.0}
    assert interval("intent", [{"correct": True}], "accuracy") == {"value": 1.0, "low": None, "high": None}


def test_character_edits_follow_the_normaliser():
    assert char_edits("Hello, world!", "hello word") == (1, 11)  # one deletion; "hello world" has 11 characters
    assert char_edits("", "anything") == (8, 0)


def test_tts_metrics_are_means_over_clips_and_cer_uses_what_the_listener_heard():
    items = [{"reference": "yes", "heard": "yes", "mcd": 8.0, "ovrl_mos": 2.0},
             {"reference": "stop", "heard": "top", "mcd": 12.0, "ovrl_mos": 3.0}]  # fmt: skip
    got = scores("tts", items, ("ovrl_mos", "mcd", "cer"))
    assert got["ovrl_mos"]["value"] == pytest.approx(2.5) and got["mcd"]["value"] == pytest.approx(10.0)
    assert got["cer"]["value"] == pytest.approx(1 / 7)  # one edit over 3 + 4 reference characters
    assert "cer" not in scores("tts", [{"reference": "yes", "mcd": 1.0, "ovrl_mos": 1.0}], ("ovrl_mos", "cer"))


def test_group_scores_score_each_voice_on_its_own_utterances():
    items = [{"group": "a", "correct": True}, {"group": "a", "correct": False}, {"group": "b", "correct": True}]
    got = group_scores("intent", items, "accuracy")
    assert got["a"]["value"] == 0.5 and got["a"]["utterances"] == 2
    assert got["b"] == {"utterances": 1, "value": 1.0, "low": None, "high": None}


def test_an_unknown_metric_is_an_error_not_a_silent_zero():
    with pytest.raises(KeyError, match="bleu"):
        interval("asr", [{"word_errors": 1, "reference_words": 2}] * 2, "bleu")


def test_seeds_give_the_mean_and_the_sample_standard_deviation():
    mean, spread = across_seeds([0.10, 0.12, 0.14])
    assert mean == pytest.approx(0.12) and spread == pytest.approx(0.02)  # sqrt(((.02)^2 * 2) / 2)
    assert across_seeds([0.3]) == (0.3, None)
