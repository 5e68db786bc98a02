"""`speechpeft train` end to end on a tiny random Whisper and a tiny synthetic corpus: LoRA trains, the
adapter directory holds only trainable weights plus its record, and it reloads to the same outputs."""

import pytest
from safetensors.torch import load_file

from speechpeft.adapter_dir import read_record
from speechpeft.evaluation import evaluate_task, load_trained
from speechpeft.tasks.catalog import TASKS
from speechpeft.tasks.corpus.build import build_corpus
from speechpeft.tasks.corpus.options import SynthOptions
from speechpeft.tasks.data import at_sample_rate
from speechpeft.train import prepare_rows, train
from speechpeft.train_options import TrainOptions


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "corpus"
    build_corpus(SynthOptions(out=out, utterances=80, seed=3, splits=("pretrain=0.2", "adapt=0.6", "test=0.2"),
                              kinds=("sentence=0.3", "command=0.5", "keyword=0.2")), progress=False)  # fmt: skip
    return out


@pytest.mark.slow
@pytest.mark.parametrize("task", ["asr", "intent"])
def test_lora_training_writes_a_reloadable_adapter(task, corpus, tiny_backbone_dirs, tmp_path):
    options = TrainOptions(task=task, out=tmp_path / "adapter", backbone=str(tiny_backbone_dirs["whisper"]),
                           dataset=str(corpus), steps=6, batch_size=4, eval_every=3, lr=5e-3)  # fmt: skip
    record = train(options, progress=False)
    files = {p.name for p in (tmp_path / "adapter").iterdir()} - {"README.md"}  # PEFT's card stub
    assert files == {"adapter_config.json", "adapter_model.safetensors", "speechpeft.json"}
    saved = read_record(tmp_path / "adapter")
    assert saved["task"] == task and saved["method"] == "lora" and saved["backbone_fingerprint"].startswith("sha256:")
    assert saved["best_step"] in (3, 6) and record["steps_run"] == 6
    weights = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert weights and all("lora_" in k or "modules_to_save" in k or "classifier" in k or "projector" in k
                           for k in weights)  # fmt: skip
    assert sum(w.numel() for w in weights.values()) == saved["trainable_parameters"]
    if task == "intent":
        assert saved["labels"] == sorted(saved["labels"]) and len(saved["labels"]) >= 2

    # reloaded on a fresh copy of the backbone, the adapter reproduces the validation scores exactly
    task_again, model, _ = load_trained(tmp_path / "adapter", device="cpu")
    validation = at_sample_rate(prepare_rows(options, TASKS.get(task))[1], 16_000)
    metrics, items = evaluate_task(task_again, model, task_again.usable(validation), options.batch_size)
    timing = {"real_time_factor"}  # the one score that measures the machine, not the model
    assert {k: v for k, v in metrics.items() if k not in timing} == {
        k: v for k, v in saved["validation"].items() if k not in timing
    }
    assert len(items) == saved["data"]["validation_utterances"]
