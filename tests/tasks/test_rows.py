"""Nothing is dropped or cut silently: every row a task leaves out is counted by reason, printed, and written
into the adapter record (`speechpeft train`) and the eval summary (`speechpeft eval`)."""

import json

import datasets
import numpy as np
import pytest
import soundfile

from speechpeft.adapter_dir import read_record
from speechpeft.backbones import load_frozen
from speechpeft.cli import main
from speechpeft.tasks import data
from speechpeft.tasks.catalog import TASKS
from speechpeft.tasks.rows import audio_seconds
from tests.tiny_backbones import TEXTS

RATE = 16_000
LONG = 9.0  # seconds: past the tiny Whisper's 8 s window
LONG_TEXT = " ".join(TEXTS * 4)  # far more than the tiny Whisper decoder's 32 positions


def clips(directory, seconds: list[float]) -> list[str]:
    """FLAC files of quiet noise, one per length, at 22.05 kHz (so the rows are resampled, as real data is)."""
    directory.mkdir(parents=True, exist_ok=True)
    rng, paths = np.random.default_rng(0), []
    for i, length in enumerate(seconds):
        paths.append(str(directory / f"{i}.flac"))
        soundfile.write(paths[-1], (0.1 * rng.standard_normal(round(length * 22_050))).astype(np.float32), 22_050)
    return paths


def rows_of(directory, seconds: list[float], **columns: list) -> datasets.Dataset:
    table = {"audio": clips(directory, seconds), **columns}
    return datasets.Dataset.from_dict(table).cast_column("audio", datasets.Audio(sampling_rate=RATE))


def test_task_rows_count_empty_and_punctuation_only_labels():
    table = {"audio": ["a.flac"] * 6, "text": ["turn it on", "", "  ", "?!", None, "no"],
             "intent": ["lights", "music", "", "alarm", "...", None]}  # fmt: skip
    rows, left_out = data.task_rows(datasets.Dataset.from_dict(table), ("audio", "text"))
    assert rows["text"] == ["turn it on", "no"] and left_out == {"empty_text": 4}
    rows, left_out = data.task_rows(datasets.Dataset.from_dict(table), ("audio", "intent"))
    assert rows["intent"] == ["lights", "music", "alarm"] and left_out == {"empty_intent": 3}


def test_audio_length_comes_from_the_header(tmp_path, monkeypatch):
    decoders = [row["audio"] for row in rows_of(tmp_path, [0.5, 2.25], text=["a", "b"])]
    monkeypatch.setattr(type(decoders[0]), "get_all_samples", lambda self: pytest.fail("decoded a whole clip"))
    assert [audio_seconds(decoder) for decoder in decoders] == pytest.approx([0.5, 2.25], abs=1 / 22_050)


def test_whisper_asr_leaves_out_and_counts_long_clips_and_texts(tiny_backbone_dirs, tmp_path):
    task = TASKS.get("asr").build(load_frozen(tiny_backbone_dirs["whisper"], "asr", "fp32", device="cpu"), None)
    texts = [TEXTS[0], TEXTS[1], "uh, um", LONG_TEXT, TEXTS[2]]  # the third: fillers, no words after the normaliser
    kept, left_out = task.usable(rows_of(tmp_path, [1.5, LONG, 1.5, 1.5, 7.9], text=texts))
    assert kept["text"] == [TEXTS[0], TEXTS[2]]
    assert left_out == {"audio_too_long": 1, "text_normalises_to_nothing": 1, "text_too_long": 1}


def test_ctc_asr_keeps_long_clips(tiny_backbone_dirs, tmp_path):
    task = TASKS.get("asr").build(load_frozen(tiny_backbone_dirs["wav2vec2"], "asr", "fp32", device="cpu"), None)
    kept, left_out = task.usable(rows_of(tmp_path, [1.5, LONG, 1.5], text=["yes", "no", "uh, um"]))
    assert kept["text"] == ["yes", "no"] and left_out == {"text_normalises_to_nothing": 1}


def test_whisper_classification_counts_long_clips_and_unknown_labels(tiny_backbone_dirs, tmp_path):
    labels = ["lights", "music"]
    backbone = load_frozen(tiny_backbone_dirs["whisper"], "classify", "fp32", device="cpu", labels=labels)
    task = TASKS.get("intent").build(backbone, labels)
    rows = rows_of(tmp_path, [1.5, LONG, 1.5, 1.5], intent=["lights", "music", "alarm", "music"])
    kept, left_out = task.usable(rows)
    assert kept["intent"] == ["lights", "music"] and left_out == {"audio_too_long": 1, "label_not_in_map": 1}


def test_tts_leaves_out_references_longer_than_the_decoder_positions(tiny_backbone_dirs, tmp_path):
    """The longest kept reference trains; one sample more would overflow SpeechT5's speech positions."""
    backbone = load_frozen(tiny_backbone_dirs["speecht5"], "tts", "fp32", device="cpu")
    task, config = TASKS.get("tts").build(backbone, None), backbone.model.config
    longest = config.max_speech_positions * config.reduction_factor * task.extractor.sample_stride - 1  # samples
    paths = []
    for name, samples in (("fits", longest), ("over", longest + 1)):
        paths.append(str(tmp_path / f"{name}.wav"))
        soundfile.write(paths[-1], np.zeros(samples, dtype=np.float32), RATE)
    rows = datasets.Dataset.from_dict({"audio": paths, "text": ["yes", "no"]}).cast_column("audio", datasets.Audio())
    kept, left_out = task.usable(rows)
    assert kept["text"] == ["yes"] and left_out == {"audio_too_long": 1}
    assert task.loss(backbone.model, task.collate([kept[0]])).isfinite()
    with pytest.raises(RuntimeError, match="must match"):
        task.loss(backbone.model, task.collate([rows[1]]))


@pytest.fixture(scope="module")
def messy_corpus(tmp_path_factory) -> str:
    """Train and test splits with usable rows and one row of each kind a task must leave out; a clean dev split."""
    root = tmp_path_factory.mktemp("messy")
    train = {"text": [*TEXTS[:4], "?!", "uh, um", TEXTS[4]], "intent": ["lights", "music"] * 3 + ["lights"]}
    test = {"text": [TEXTS[0], "", TEXTS[1], TEXTS[5]], "intent": ["lights", "music", "alarm", "music"]}
    splits = {
        "train": rows_of(root / "train", [1.5] * 6 + [LONG], **train),
        "test": rows_of(root / "test", [1.5, 1.5, 1.5, LONG], **test),
        "dev": rows_of(root / "dev", [1.5, 1.5], text=TEXTS[2:4], intent=["lights", "music"]),
    }
    datasets.DatasetDict(splits).save_to_disk(str(root / "corpus"))
    return str(root / "corpus")


@pytest.mark.slow
def test_train_record_and_eval_summary_count_left_out_rows(messy_corpus, tiny_backbone_dirs, tmp_path, caplog):
    adapter = tmp_path / "asr"
    assert main(["train", "--task", "asr", "--out", str(adapter), "--backbone", str(tiny_backbone_dirs["whisper"]),
                 "--dataset", messy_corpus, "--split", "train", "--validation-split", "test", "--steps", "1",
                 "--eval-every", "1", "--batch-size", "2", "--quiet"]) == 0  # fmt: skip
    recorded = read_record(adapter)["data"]
    assert recorded["train_left_out"] == {"empty_text": 1, "text_normalises_to_nothing": 1, "audio_too_long": 1}
    assert recorded["validation_left_out"] == {"empty_text": 1, "audio_too_long": 1}
    assert (recorded["train_utterances"], recorded["validation_utterances"]) == (4, 2)
    assert "left out 3 training rows (4 kept): audio_too_long 1" in caplog.text
    assert main(["eval", "--adapter", str(adapter), "--split", "test"]) == 0
    summary = json.loads((adapter / "eval" / "test" / "summary.json").read_text())
    assert (summary["rows_read"], summary["utterances"]) == (4, 2)
    assert summary["left_out"] == {"empty_text": 1, "audio_too_long": 1}


@pytest.mark.slow
def test_eval_counts_labels_missing_from_the_label_map(messy_corpus, tiny_backbone_dirs, tmp_path):
    adapter = tmp_path / "intent"
    assert main(["train", "--task", "intent", "--out", str(adapter), "--backbone", str(tiny_backbone_dirs["whisper"]),
                 "--dataset", messy_corpus, "--split", "train", "--validation-split", "dev", "--steps", "1",
                 "--eval-every", "1", "--batch-size", "2", "--quiet"]) == 0  # fmt: skip
    assert read_record(adapter)["labels"] == ["lights", "music"]
    assert main(["eval", "--adapter", str(adapter), "--split", "test"]) == 0
    summary = json.loads((adapter / "eval" / "test" / "summary.json").read_text())
    assert summary["left_out"] == {"label_not_in_map": 1, "audio_too_long": 1} and summary["utterances"] == 2
