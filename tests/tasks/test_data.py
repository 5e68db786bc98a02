"""Datasets as users bring them: a Hub-format folder of audio files (Common Voice-style columns, 22.05 kHz
WAV from espeak-ng) is found, mapped to the task's roles, resampled to 16 kHz, trained on and scored."""

import csv
import json
import subprocess

import datasets
import pytest

from speechpeft.cli import main
from speechpeft.tasks import data

SENTENCES = ["turn on the lights", "what time is it", "play some music", "set an alarm for seven",
             "how hot is it today", "call my sister", "stop the music", "open the door please"]  # fmt: skip


@pytest.fixture(scope="module")
def hub_folder(tmp_path_factory):
    """audiofolder layout, as in a Hub dataset repo: split folders with audio files and a metadata.csv."""
    root = tmp_path_factory.mktemp("hub-format")
    for split, texts in (("train", SENTENCES[:6]), ("test", SENTENCES[6:])):
        (root / split).mkdir()
        with (root / split / "metadata.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["file_name", "sentence", "client_id"])
            for i, text in enumerate(texts):
                subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(root / split / f"{i}.wav"), text], check=True)
                writer.writerow([f"{i}.wav", text, f"speaker{i % 2}"])
    return root


def test_hub_format_folder_maps_columns_and_resamples(hub_folder):
    dataset = data.load_speech_dataset(hub_folder)
    assert set(dataset) == {"train", "test"}
    rows, left_out = data.task_rows(dataset["train"], ("audio", "text"))
    assert rows.column_names == ["audio", "text"] and rows[0]["text"] == SENTENCES[0] and left_out == {}
    native = rows[0]["audio"].get_all_samples()
    assert native.sample_rate == 22_050  # espeak-ng's own rate
    resampled = data.at_sample_rate(rows, 16_000)[0]["audio"].get_all_samples()
    assert resampled.sample_rate == 16_000
    assert resampled.data.shape[-1] == pytest.approx(native.data.shape[-1] * 16_000 / 22_050, abs=2)
    speakers, _ = data.task_rows(dataset["train"], ("audio", "speaker"))
    assert data.label_names(speakers, "speaker") == ["speaker0", "speaker1"]


def test_missing_column_names_the_candidates():
    rows = datasets.Dataset.from_dict({"audio": ["a.wav"], "words": ["hello"]})
    with pytest.raises(data.DatasetColumnError, match="no text column: looked for text, sentence, transcription"):
        data.task_rows(rows, ("audio", "text"))


@pytest.mark.slow
def test_train_and_eval_on_a_hub_format_folder(hub_folder, tiny_backbone_dirs, tmp_path):
    adapter = tmp_path / "asr-lora"
    assert main(["train", "--task", "asr", "--out", str(adapter), "--backbone", str(tiny_backbone_dirs["whisper"]),
                 "--dataset", str(hub_folder), "--split", "train", "--validation-split", "test", "--steps", "2",
                 "--eval-every", "2", "--batch-size", "3", "--quiet"]) == 0  # fmt: skip
    assert main(["eval", "--adapter", str(adapter), "--split", "test"]) == 0
    summary = json.loads((adapter / "eval" / "test" / "summary.json").read_text())
    assert summary["utterances"] == 2 and summary["normalizer"] == "speechpeft-en-3"
    assert {"wer", "cer", "rtfx"} <= set(summary["metrics"])
    records = (adapter / "eval" / "test" / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(r)["reference"] for r in records] == SENTENCES[6:]


def test_a_context_column_a_role_also_reads_is_kept_under_both_names():
    from speechpeft.tasks.data import select_columns

    rows = datasets.Dataset.from_dict({"text": ["a", "b"], "voice": ["v1", "v2"], "engine": ["e", "f"],
                                       "rate": [1.0, 0.9], "other": [0, 1]})  # fmt: skip
    grouped = select_columns(rows, ("text", "speaker"), ("voice", "rate", "pitch"), sources={"speaker": "engine"})
    assert sorted(grouped.column_names) == ["rate", "speaker", "text", "voice"] and grouped["speaker"] == ["e", "f"]
    by_voice = select_columns(rows, ("text", "speaker"), ("voice", "rate"))  # `speaker` reads `voice` by default
    assert by_voice["speaker"] == by_voice["voice"] == ["v1", "v2"]
    assert select_columns(rows, ("text", "speaker")).column_names == ["text", "speaker"]  # no context: renamed
