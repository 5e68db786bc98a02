"""`speechpeft train` end to end on a tiny random Whisper and a tiny synthetic corpus: LoRA trains, the
adapter directory holds only trainable weights plus its record, and it reloads to the same outputs."""

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from speechpeft import train as training
from speechpeft.adapter_dir import read_record, save_adapter
from speechpeft.backbones import BACKBONES, load_frozen
from speechpeft.cli import main
from speechpeft.evaluation import evaluate_task, load_trained
from speechpeft.tasks.catalog import TASKS
from speechpeft.tasks.corpus.build import build_corpus
from speechpeft.tasks.corpus.options import SynthOptions
from speechpeft.tasks.data import at_sample_rate
from speechpeft.train import prepare_rows, train
from speechpeft.train_options import TrainOptions


def build_small_corpus(out, utterances: int = 80, seed: int = 3):
    """A corpus with every kind (sentences, commands, keywords), mostly in the adapt split."""
    splits, kinds = ("pretrain=0.2", "adapt=0.6", "test=0.2"), ("sentence=0.3", "command=0.5", "keyword=0.2")
    build_corpus(SynthOptions(out=out, utterances=utterances, seed=seed, splits=splits, kinds=kinds), progress=False)
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_small_corpus(tmp_path_factory.mktemp("train") / "corpus")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("task", "family"),
    [("asr", "whisper"), ("asr", "wav2vec2"), ("intent", "whisper"), ("intent", "hubert"), ("tts", "speecht5")],
)
def test_lora_training_writes_a_reloadable_adapter(task, family, corpus, tiny_backbone_dirs, tmp_path, monkeypatch):
    trained = {}
    monkeypatch.setattr(
        training, "save_adapter", lambda model, *args: trained.update(model=model) or save_adapter(model, *args)
    )
    options = TrainOptions(task=task, out=tmp_path / "adapter", backbone=str(tiny_backbone_dirs[family]),
                           dataset=str(corpus), steps=6, batch_size=4, eval_every=3, lr=5e-3)  # fmt: skip
    record = train(options, progress=False)
    files = {p.name for p in (tmp_path / "adapter").iterdir()} - {"README.md"}  # PEFT's card stub
    assert files == {"adapter_config.json", "adapter_model.safetensors", "speechpeft.json"}
    saved = read_record(tmp_path / "adapter")
    assert saved["task"] == task and saved["method"] == "lora" and saved["backbone_fingerprint"].startswith("sha256:")
    assert saved["best_step"] in (3, 6) and record["steps_run"] == 6
    weights = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    heads = BACKBONES.get(saved["family"]).task(saved["task_kind"]).head_modules
    assert weights and all("lora_" in k or k.split(".")[2] in heads for k in weights)  # trainable parts only
    assert sum(w.numel() for w in weights.values()) == saved["trainable_parameters"]
    fresh = load_frozen(options.backbone, saved["task_kind"], "fp32", device="cpu", labels=saved["labels"])
    backbone_state = {
        k.removeprefix("base_model.model.").replace(".base_layer", ""): v
        for k, v in trained["model"].state_dict().items()
        if "lora_" not in k and "modules_to_save" not in k
    }
    for name, value in fresh.model.state_dict().items():
        if name.split(".")[0] not in heads:  # task heads train (PEFT keeps the original beside the trained copy)
            assert torch.equal(backbone_state[name], value), name
    if task == "intent":
        assert saved["labels"] == sorted(saved["labels"]) and len(saved["labels"]) >= 2

    # reloaded on a fresh copy of the backbone, the adapter reproduces the validation scores exactly
    task_again, model, _ = load_trained(tmp_path / "adapter", device="cpu")
    validation = at_sample_rate(prepare_rows(options, TASKS.get(task))[1], 16_000)
    metrics, items = evaluate_task(task_again, model, task_again.usable(validation)[0], options.batch_size)
    timing = {"rtfx"}  # the one score that measures the machine, not the model
    assert {k: v for k, v in metrics.items() if k not in timing} == {
        k: v for k, v in saved["validation"].items() if k not in timing
    }
    assert len(items) == saved["data"]["validation_utterances"]


@pytest.mark.slow
def test_eval_command_prints_metrics_and_writes_records(corpus, tiny_backbone_dirs, tmp_path, capsys):
    store, backbone = str(tmp_path / "store"), str(tiny_backbone_dirs["whisper"])
    flags = ["--steps", "2", "--eval-every", "2", "--batch-size", "4", "--quiet"]
    assert main(["train", "--task", "keyword", "--name", "keyword/lora", "--store", store, "--backbone", backbone,
                 "--dataset", str(corpus), *flags]) == 0  # fmt: skip
    assert "wrote" in capsys.readouterr().out
    adapter = tmp_path / "store" / "keyword" / "lora"
    assert main(["eval", "--adapter", "keyword/lora", "--store", store, "--split", "test"]) == 0
    printed = capsys.readouterr().out
    assert "keyword / lora on" in printed and "accuracy" in printed and "macro_f1" in printed
    summary = json.loads((adapter / "eval" / "test" / "summary.json").read_text())
    records = [json.loads(line) for line in (adapter / "eval" / "test" / "predictions.jsonl").read_text().splitlines()]
    assert summary["utterances"] == len(records) > 0 and summary["split"] == "test"
    assert summary["metrics"]["accuracy"] == pytest.approx(sum(r["correct"] for r in records) / len(records))
    assert {"reference", "label", "correct", "confidence"} <= set(records[0])
    assert main(["eval", "--adapter", "keyword/lora", "--store", store, "--split", "validation"]) == 2
    assert "split 'validation' not in the dataset; its splits: pretrain, adapt, test" in capsys.readouterr().err


@pytest.mark.slow
def test_a_record_of_relative_paths_is_evaluated_from_any_directory(corpus, tiny_backbone_dirs, tmp_path, monkeypatch):
    """Trained with a backbone and dataset named by paths relative to where it ran, the adapter records their
    absolute paths (and what was typed), so `speechpeft eval --adapter NAME` works from another directory."""
    store, elsewhere = ["--store", str(tmp_path / "store")], tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(tmp_path)
    backbone, dataset = os.path.relpath(tiny_backbone_dirs["whisper"]), os.path.relpath(corpus)
    flags = ["--steps", "2", "--eval-every", "2", "--batch-size", "4", "--quiet"]
    assert main(["train", "--task", "keyword", "--name", "keyword/lora", *store, "--backbone", backbone,
                 "--dataset", dataset, *flags]) == 0  # fmt: skip
    record = read_record(tmp_path / "store" / "keyword" / "lora")
    absolute = str(tiny_backbone_dirs["whisper"].resolve())
    assert (record["backbone"], record["backbone_as_given"]) == (absolute, backbone)
    assert record["backbone_resolved_as"] == record["data"]["dataset_resolved_as"] == "directory"
    assert (record["data"]["dataset"], record["data"]["dataset_as_given"]) == (str(corpus.resolve()), dataset)
    monkeypatch.chdir(elsewhere)  # neither relative path means anything here
    assert main(["eval", "--adapter", "keyword/lora", *store, "--split", "test", "--max-utterances", "3"]) == 0


def test_eval_of_a_directory_that_is_not_an_adapter_fails_clearly(tmp_path, capsys):
    assert main(["eval", "--adapter", str(tmp_path)]) == 2
    assert "is neither an adapter directory" in capsys.readouterr().err
