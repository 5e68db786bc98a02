"""`accelerate launch` runs the same training loop in two CPU processes (DDP over gloo)."""

import json
import subprocess
import sys

import pytest

from tests.conftest import checkpoint_for


@pytest.mark.slow
@pytest.mark.parametrize(
    ("family", "task", "method"),
    [
        # LayerDrop (on in wav2vec2's and SpeechT5's configs) leaves skipped layers without gradients: DDP must
        # be told to look for unused parameters, or rank 0 fails with "Expected to have finished reduction"
        ("wav2vec2", "speaker", "lora"),
        ("speecht5", "tts", "adalora"),
    ],
)
def test_two_cpu_processes_train_one_adapter(family, task, method, tiny_backbone_dirs, tmp_path):
    from tests.test_train import build_small_corpus

    corpus = build_small_corpus(tmp_path / "corpus", utterances=60, seed=7)
    adapter = tmp_path / "adapter"
    # --multi_gpu selects accelerate's torchrun launcher; without CUDA, Accelerator(cpu=True) joins over gloo
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "speechpeft.cli", "train", "--task", task, "--method", method, "--out", str(adapter),
               "--backbone", str(checkpoint_for(tiny_backbone_dirs, family, task)), "--dataset", str(corpus),
               "--steps", "4", "--eval-every", "2", "--batch-size", "2", "--quiet"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("wrote ") == 2  # both processes finished the loop ...
    record = json.loads((adapter / "speechpeft.json").read_text())
    assert record["processes"] == 2 and record["best_step"] in (2, 4)  # ... as one DDP job; one saved the adapter
