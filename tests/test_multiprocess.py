"""`accelerate launch` runs the same training loop in two CPU processes (DDP over gloo)."""

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_two_cpu_processes_train_one_adapter(tiny_backbone_dirs, tmp_path):
    from tests.test_train import build_small_corpus

    corpus = build_small_corpus(tmp_path / "corpus", utterances=60, seed=7)
    adapter = tmp_path / "adapter"
    # --multi_gpu selects accelerate's torchrun launcher; without CUDA, Accelerator(cpu=True) joins over gloo
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "speechpeft.cli", "train", "--task", "intent", "--out", str(adapter),
               "--backbone", str(tiny_backbone_dirs["whisper"]), "--dataset", str(corpus),
               "--steps", "4", "--eval-every", "2", "--batch-size", "2", "--quiet"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("wrote ") == 2  # both processes finished the loop ...
    record = json.loads((adapter / "speechpeft.json").read_text())
    assert record["processes"] == 2 and record["best_step"] in (2, 4)  # ... as one DDP job; one saved the adapter
