"""`speechpeft train` on a CUDA device, two steps per precision (skipped without a GPU, like every `gpu` test)."""

import json

import pytest
import torch

from speechpeft.cli import main
from speechpeft.evaluation import load_trained

RESOLVED = {"fp32": "fp32", "bf16": "bf16", "int8": "int8", "auto": "bf16"}  # auto is bf16 on CUDA


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from tests.test_train import build_small_corpus

    return build_small_corpus(tmp_path_factory.mktemp("gpu") / "corpus", utterances=40, seed=2)


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.parametrize("precision", list(RESOLVED))
@pytest.mark.parametrize(("task", "method"), [("asr", "lora"), ("keyword", "frozen"), ("intent", "bottleneck")])
def test_two_training_steps_on_cuda(task, method, precision, corpus, tiny_backbone_dirs, tmp_path):
    out = tmp_path / "adapter"
    argv = ["train", "--task", task, "--method", method, "--precision", precision, "--out", str(out),
            "--backbone", str(tiny_backbone_dirs["whisper"]), "--dataset", str(corpus), "--steps", "2",
            "--eval-every", "2", "--batch-size", "2", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    record = json.loads((out / "speechpeft.json").read_text())
    assert record["steps_run"] == 2 and record["precision"] == RESOLVED[precision]
    assert all(torch.isfinite(torch.tensor(v)) for v in record["validation"].values())
    _, model, _ = load_trained(out)
    assert {p.device.type for p in model.parameters()} == {"cuda"}
