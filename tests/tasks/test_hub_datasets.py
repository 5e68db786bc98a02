"""Hub datasets as people name them: an id or folder, a config (Common Voice "en"), split names as the dataset has
them ("validated"), and `--streaming` for a large one, which keeps the first `--max-utterances` rows of a split.

The dataset is a Hub-format folder with two configs declared in its README's YAML `configs:` (audio files and a
`metadata.csv` per split), loaded by the real `datasets`; the same folder is uploaded to `tests.hub_server.LocalHub`
and loaded by its Hub id in subprocesses whose HF_ENDPOINT is that server, then again offline from the cache.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf

from speechpeft.cli import main
from speechpeft.errors import InputError, MissingInputError
from speechpeft.eval_options import EvalOptions
from speechpeft.tasks import data
from speechpeft.tasks.catalog import TASKS
from speechpeft.train import prepare_rows
from speechpeft.train_options import TrainOptions

SAMPLE_RATE, SAMPLES = 16_000, 8_000  # 0.5 s tones
TEXTS = {  # config -> split -> transcripts; Common Voice names its checked clips `validated`
    "en": {"train": ["turn on the lights", "what time is it", "play some music", "set an alarm", "call my sister",
                     "open the door"],
           "validated": ["stop the music", "how hot is it"], "test": ["good morning", "read me the news"]},
    "fr": {"train": ["allume la lumière", "quelle heure est-il"], "test": ["bonjour"]},
}  # fmt: skip


def write_hub_folder(root: Path) -> Path:
    """`root/<config>/<split>/{0.wav, ..., metadata.csv}` and a README whose YAML declares each config's splits."""
    card = ["---", "configs:"]
    for config, splits in TEXTS.items():
        card += [f"- config_name: {config}", "  data_files:"]
        for split, texts in splits.items():
            folder = root / config / split
            folder.mkdir(parents=True)
            with (folder / "metadata.csv").open("w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["file_name", "sentence", "client_id"])  # Common Voice's column names
                for i, text in enumerate(texts):
                    tone = 0.1 * np.sin(2 * np.pi * (200 + 40 * i) * np.arange(SAMPLES) / SAMPLE_RATE)
                    sf.write(folder / f"{i}.wav", tone.astype(np.float32), SAMPLE_RATE)
                    writer.writerow([f"{i}.wav", text, f"speaker{i % 2}"])
            card += [f"  - split: {split}", f"    path: {config}/{split}/*"]
    (root / "README.md").write_text("\n".join([*card, "---", "", "Speech in two configs, for tests.", ""]))
    return root


@pytest.fixture(scope="module")
def hub_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_hub_folder(tmp_path_factory.mktemp("hub-configs") / "speech")


@pytest.fixture(autouse=True)
def datasets_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Prepared copies of the folders in the test's own cache, not the user's (`load_speech_dataset` reads it)."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "datasets-cache")


def train_options(tmp_path: Path, dataset: Path | str, **options) -> TrainOptions:
    return TrainOptions(task="asr", out=tmp_path / "adapter", dataset=str(dataset), **options)


def test_a_config_and_the_datasets_own_split_names_pick_the_rows(hub_folder):
    assert data.load_split(hub_folder, "train", config="en")["sentence"] == TEXTS["en"]["train"]
    assert data.load_split(hub_folder, "validated", config="en")["sentence"] == TEXTS["en"]["validated"]
    french = data.load_split(hub_folder, "train", config="fr")
    assert french["sentence"] == TEXTS["fr"]["train"] and french.column_names == ["audio", "sentence", "client_id"]
    assert set(data.load_speech_dataset(hub_folder, "fr")) == {"train", "test"}


def test_a_folder_with_configs_needs_one_and_a_wrong_one_is_named(hub_folder):
    with pytest.raises(InputError, match=r"has configs en, fr: pick one with --dataset-config NAME$"):
        data.load_speech_dataset(hub_folder)
    with pytest.raises(InputError, match=r"^--dataset-config de: .* has no such config; its configs: en, fr$"):
        data.load_speech_dataset(hub_folder, "de")


def test_a_config_for_a_folder_that_declares_none_says_to_leave_it_out(hub_folder):
    plain = hub_folder / "en"  # split folders with metadata, no README `configs:`
    with pytest.raises(InputError, match=r"^--dataset-config en: .* declares no configs .*: leave it out$"):
        data.load_speech_dataset(plain, "en")


def test_a_missing_split_lists_the_splits_of_the_config(hub_folder, tmp_path):
    with pytest.raises(InputError, match=r"^--split validation: split 'validation' not in the dataset; its splits: t"):
        data.load_split(hub_folder, "validation", config="en")
    with pytest.raises(InputError, match=r"^--split validated: .* its splits: train, test$"):
        prepare_rows(train_options(tmp_path, hub_folder, dataset_config="fr", split="validated"), TASKS.get("asr"))
    validation = train_options(tmp_path, hub_folder, dataset_config="en", split="train", validation_split="dev")
    with pytest.raises(InputError, match=r"^--validation-split dev: split 'dev' not in the dataset"):
        prepare_rows(validation, TASKS.get("asr"))


def test_streaming_keeps_the_first_rows_as_a_dataset_whose_audio_decodes(hub_folder, capsys):
    rows = data.load_split(hub_folder, "train", config="en", streaming=True, max_utterances=3)
    assert isinstance(rows, datasets.Dataset) and rows["sentence"] == TEXTS["en"]["train"][:3]
    assert isinstance(rows.features["audio"], datasets.Audio)  # the features of the split, undecoded until read
    assert rows[2]["audio"].get_all_samples().data.shape == (1, SAMPLES)
    assert data.at_sample_rate(rows, 8_000)[0]["audio"].get_all_samples().data.shape == (1, SAMPLES // 2)
    assert "streamed 3 rows of split 'train' (--max-utterances 3)" in capsys.readouterr().err


def test_streamed_training_rows_are_cut_before_the_validation_slice(hub_folder, tmp_path):
    options = train_options(tmp_path, hub_folder, dataset_config="en", split="train", streaming=True, max_utterances=4)
    train, validation, _ = prepare_rows(options, TASKS.get("asr"))
    assert sorted([*train["text"], *validation["text"]]) == sorted(TEXTS["en"]["train"][:4]) and len(validation) == 1
    options = train_options(tmp_path, hub_folder, dataset_config="en", split="train", validation_split="validated",
                            streaming=True, max_utterances=1)  # fmt: skip
    train, validation, _ = prepare_rows(options, TASKS.get("asr"))
    assert train["text"] == TEXTS["en"]["train"][:1] and validation["text"] == TEXTS["en"]["validated"][:1]


def test_streaming_without_a_cap_is_refused_naming_the_fix(tmp_path, capsys):
    with pytest.raises(InputError, match=r"^--streaming reads the first --max-utterances rows of each split: give "):
        train_options(tmp_path, "owner/speech", streaming=True)
    with pytest.raises(InputError, match="give --max-utterances N"):
        EvalOptions(adapter=str(tmp_path), streaming=True)
    with pytest.raises(SystemExit) as exit_:  # refused while parsing flags, as argparse refuses
        main(["train", "--task", "asr", "--out", str(tmp_path / "a"), "--dataset", "owner/speech", "--streaming"])
    assert exit_.value.code == 2 and "error: --streaming reads the first --max-utterances" in capsys.readouterr().err


def test_the_missing_default_corpus_says_make_corpus(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no data/corpus here; `data/corpus` is a well-formed Hub id, but not looked up
    for name in ("data/corpus", "./data/corpus", str(tmp_path / "data" / "corpus")):
        says = r"^no corpus at .*: build it with `make corpus` .* or `speechpeft data synth --utterances 2000 --out"
        with pytest.raises(MissingInputError, match=says):
            data.load_speech_dataset(name)
    assert main(["train", "--task", "asr", "--out", str(tmp_path / "adapter"), "--quiet"]) == 2
    assert "speechpeft: error: no corpus at data/corpus: build it with `make corpus`" in capsys.readouterr().err
    for path in ("./corpus", "runs/a/corpus", "~/corpus"):  # not here, and no Hub id either
        with pytest.raises(MissingInputError, match=r"is not here, and not a Hub id \(OWNER/NAME\)"):
            data.load_speech_dataset(path)
    # a well-formed id that is no folder here is a Hub id: offline (the suite's setting) and not in the cache
    with pytest.raises(MissingInputError, match=r"^dataset 'owner/speech' is not a directory here, and Couldn't r"):
        data.load_speech_dataset("owner/speech")


def test_a_loading_script_is_refused_naming_what_is_read(tmp_path):
    (tmp_path / "speech").mkdir()
    (tmp_path / "speech" / "speech.py").write_text("import datasets\n")  # as Hub datasets once shipped
    with pytest.raises(InputError, match=r"is a loading script .* reads data files only \(parquet, audio files"):
        data.load_speech_dataset(tmp_path / "speech")


def test_a_saved_dataset_has_no_configs_and_streams_too(tmp_path, capsys):
    saved = tmp_path / "saved"
    datasets.DatasetDict({"test": datasets.Dataset.from_dict({"text": ["a", "b", "c"]})}).save_to_disk(str(saved))
    with pytest.raises(InputError, match=r"^--dataset-config en: .* is a saved dataset .* leave --dataset-config out"):
        data.load_speech_dataset(saved, "en")
    assert data.load_split(saved, "test", streaming=True, max_utterances=2)["text"] == ["a", "b"]


@pytest.mark.slow
def test_train_with_a_config_then_eval_reuses_it(hub_folder, tiny_backbone_dirs, tmp_path):
    adapter = tmp_path / "asr-lora"
    assert main(["train", "--task", "asr", "--method", "lora", "--backbone", str(tiny_backbone_dirs["whisper"]),
                 "--dataset", str(hub_folder), "--dataset-config", "en", "--split", "train", "--validation-split",
                 "validated", "--steps", "2", "--eval-every", "2", "--batch-size", "3", "--out", str(adapter),
                 "--quiet"]) == 0  # fmt: skip
    record = json.loads((adapter / "speechpeft.json").read_text())["data"]
    assert (record["dataset"], record["config"], record["split"], record["streamed_max_rows"]) == (
        str(hub_folder), "en", "train", None)  # fmt: skip
    assert main(["eval", "--adapter", str(adapter), "--split", "test"]) == 0  # no --dataset: the recorded one, in "en"
    summary = json.loads((adapter / "eval" / "test" / "summary.json").read_text())
    assert (summary["dataset"], summary["config"], summary["utterances"]) == (str(hub_folder), "en", 2)
    records = (adapter / "eval" / "test" / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(r)["reference"] for r in records] == TEXTS["en"]["test"]


# Run in a subprocess: `datasets` reads HF_ENDPOINT and the offline switches when imported, as for a user's shell
LOAD = """
import json, sys
import datasets
from speechpeft.errors import UserError
from speechpeft.tasks import data
for split, config, cap in json.loads(sys.argv[1]):
    try:
        rows = data.load_split("local-user/speech", split, config, streaming=cap is not None, max_utterances=cap)
    except UserError as error:
        print(json.dumps({"error": str(error)}))
        continue
    stored = rows.cast_column("audio", datasets.Audio(decode=False))[0]["audio"]
    samples = rows[0]["audio"].get_all_samples().data.shape[-1]
    print(json.dumps({"text": list(rows["sentence"]), "samples": samples, "bytes": stored["bytes"] is not None}))
"""


def load_by_hub_id(calls: list[tuple[str, str | None, int | None]], env: dict[str, str]) -> list[dict]:
    done = subprocess.run([sys.executable, "-c", LOAD, json.dumps(calls)], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.mark.slow
def test_a_hub_id_with_a_config_loads_then_loads_offline_from_the_cache(hub_folder, local_hub, tmp_path):
    from huggingface_hub import HfApi

    api = HfApi(endpoint=local_hub.endpoint, token=local_hub.token)
    api.create_repo("local-user/speech", repo_type="dataset")
    api.upload_folder(repo_id="local-user/speech", repo_type="dataset", folder_path=str(hub_folder))
    cache = {"HF_HOME": str(tmp_path / "hf-home"), "HF_HUB_DISABLE_XET": "1"}
    online = {**cache, **local_hub.env(), "HF_DATASETS_OFFLINE": "0"}
    loaded, streamed, no_config, wrong = load_by_hub_id(
        [("train", "en", None), ("test", "en", 1), ("test", None, None), ("test", "de", None)], online
    )
    assert loaded == {"text": TEXTS["en"]["train"], "samples": SAMPLES, "bytes": False}  # files in the cache
    assert streamed == {"text": TEXTS["en"]["test"][:1], "samples": SAMPLES, "bytes": True}  # fetched, kept
    assert no_config["error"] == "local-user/speech has configs en, fr: pick one with --dataset-config NAME"
    assert wrong["error"] == "--dataset-config de: local-user/speech has no such config; its configs: en, fr"
    # offline, the prepared config comes from the datasets cache, audio files and all: the server hears nothing
    served = len(local_hub.requests)
    offline = {**cache, "HF_ENDPOINT": local_hub.endpoint, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    again, uncached = load_by_hub_id([("train", "en", None), ("train", "fr", None)], offline)
    assert again == loaded and len(local_hub.requests) == served
    assert uncached["error"].startswith("--dataset-config fr: offline (HF_HUB_OFFLINE=1), local-user/speech is read ")
    assert uncached["error"].endswith("Available configs in the cache: ['en']")
