"""`accelerate launch` runs the same training loop in two CPU processes (DDP over gloo), on every backbone family.

One test per family, the methods spread so each of them trains in two processes at least once. Each process runs
`speechpeft train` through this module (`python -m tests.test_multiprocess train ...`, see `main`), which then
saves what that process trained and reloads from disk what rank 0 saved: the test checks that both processes hold
the very tensors rank 0 saved, and that the saved adapter reloads to them.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from speechpeft.adapter_dir import WEIGHTS_FILE
from tests.conftest import checkpoint_for

STEPS = 2  # AdaLoRA's shortest schedule; one validation, at the last step, so the saved adapter is the final one
REPORT = "rank{rank}.json"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("family", "task", "method"),
    [
        # LayerDrop (on in wav2vec2's, HuBERT's, WavLM's and SpeechT5's configs) leaves skipped layers without
        # gradients: DDP must be told to look for unused parameters, or rank 0 fails with "Expected to have
        # finished reduction"
        ("whisper", "asr", "prefix"),
        ("wav2vec2", "speaker", "frozen"),  # only the task head trains
        ("hubert", "asr", "bottleneck"),
        ("wavlm", "speaker", "lora"),
        ("speecht5", "tts", "adalora"),  # the per-step rank allocation runs in each process
        ("fastspeech2_conformer", "tts", "full"),  # trains batch norms: their running statistics are buffers
    ],
)
def test_two_cpu_processes_train_one_adapter(family, task, method, tiny_backbone_dirs, corpus, tmp_path):
    adapter, backbone = tmp_path / "adapter", checkpoint_for(tiny_backbone_dirs, family, task)
    flags = train_flags(task, method, backbone, corpus, adapter, "--steps", str(STEPS), "--eval-every", str(STEPS))
    done = launch(flags, f"{family}/{task}/{method}")
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("wrote ") == 2  # both processes finished the loop ...
    record = json.loads((adapter / "speechpeft.json").read_text())
    assert record["processes"] == 2  # ... as one DDP job
    assert record["best_step"] == STEPS
    saved = load_file(str(adapter / WEIGHTS_FILE))
    assert saved and record["trainable_parameters"] > 0
    for rank in (0, 1):
        report = json.loads((tmp_path / REPORT.format(rank=rank)).read_text())
        assert report["processes"] == 2 and report["steps_run"] == STEPS
        for held in ("trained", "reloaded"):  # what this rank trained, and rank 0's adapter reloaded from disk
            tensors = load_file(str(tmp_path / f"{held}-rank{rank}" / WEIGHTS_FILE))
            assert tensors.keys() == saved.keys(), (rank, held)
            unequal = [name for name in saved if not torch.equal(tensors[name], saved[name])]
            assert not unequal, f"rank {rank}, {held}: {unequal[:5]} differ from what rank 0 saved"


@pytest.mark.slow
def test_the_processes_stop_together_when_their_validation_scores_differ(tiny_backbone_dirs, corpus, tmp_path):
    """Rank 0 scores better at each validation, rank 1 worse (`--disagree`): with --patience 1, rank 1 alone would
    stop at step 2 and leave rank 0 waiting in step 3's all-reduce. Rank 0's verdict holds in both."""
    adapter = tmp_path / "adapter"
    flags = train_flags("asr", "lora", tiny_backbone_dirs["whisper"], corpus, adapter, "--steps", "3",
                        "--eval-every", "1", "--patience", "1")  # fmt: skip
    done = launch(["--disagree", *flags], "whisper/asr/lora, scores that differ", timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    reports = [json.loads((tmp_path / REPORT.format(rank=rank)).read_text()) for rank in (0, 1)]
    assert [report["steps_run"] for report in reports] == [3, 3]
    assert json.loads((adapter / "speechpeft.json").read_text())["best_step"] == 3


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.test_train import build_small_corpus

    return build_small_corpus(tmp_path_factory.mktemp("multiprocess") / "corpus", utterances=40, seed=7)


def train_flags(task: str, method: str, backbone: Path, corpus: Path, out: Path, *more: str) -> list[str]:
    """`speechpeft train` on two utterances a step, quietly (each process prints its "wrote" line)."""
    return ["train", "--task", task, "--method", method, "--out", str(out), "--backbone", str(backbone),
            "--dataset", str(corpus), "--batch-size", "2", "--quiet", *more]  # fmt: skip


def launch(worker_args: list[str], what: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `main(worker_args)` in two CPU processes under `accelerate launch`; when `timeout` (seconds) runs out
    (a process waiting in a collective for another that left), the launcher is stopped with its processes."""
    # --multi_gpu selects accelerate's torchrun launcher; without CUDA, Accelerator(cpu=True) joins over gloo
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "tests.test_multiprocess", *worker_args]  # fmt: skip
    started = time.perf_counter()
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as process:  # fmt: skip
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:  # torchrun stops its workers (in sessions of their own) on SIGTERM
            process.terminate()
            try:
                stdout, stderr = process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                stdout, stderr = process.communicate()
            pytest.fail(f"{what}: not done after {timeout} s (a process waiting for another?)\n{stderr[-3000:]}")
    print(f"{what}: two processes in {time.perf_counter() - started:.1f} s")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def main(argv: list[str]) -> int:
    """In each process: `speechpeft train argv`, then, once every process has finished, save what this process
    trained (`trained-rank<N>`), rank 0's adapter reloaded from disk (`reloaded-rank<N>`) and what the run did
    (`rank<N>.json`), beside `--out`. `--disagree` first: made-up validation scores, better at each validation on
    rank 0, worse on the others."""
    import torch.distributed as dist

    import speechpeft.train as training
    from speechpeft.cli import main as speechpeft

    runs = []
    prepare_run = training.prepare_run
    training.prepare_run = lambda *args, **kwargs: runs.append(prepare_run(*args, **kwargs)) or runs[-1]
    if argv[0] == "--disagree":
        argv, scores = argv[1:], iter(range(1, 1_000))

        def made_up(*args, **kwargs) -> tuple[dict[str, float], list]:
            name, goal = runs[0].entry.selection
            better = (goal == "max") == (dist.get_rank() == 0)
            return {name: float(next(scores) * (1 if better else -1))}, []

        training.evaluate_task = made_up
    status = speechpeft(argv)
    if status != 0:
        return status
    dist.barrier()  # rank 0 has saved
    run, rank = runs[0], dist.get_rank()
    out = Path(run.options.out)
    run.method.save(run.model, out.parent / f"trained-rank{rank}")
    save_reloaded(run, out, out.parent / f"reloaded-rank{rank}")
    saved = json.loads((out / "speechpeft.json").read_text())
    report = {"rank": rank, "processes": saved["processes"], "steps_run": run.record["steps_run"]}
    (out.parent / REPORT.format(rank=rank)).write_text(json.dumps(report))
    return 0


def save_reloaded(run, adapter: Path, directory: Path) -> None:
    """Save (with the run's method) the adapter in `adapter` as `speechpeft eval` loads it. The baselines load into
    the bare backbone, which trains nothing: the parameters the run trained are marked trainable again, so the
    method saves the same tensors it saved from the run."""
    from speechpeft.evaluation import load_trained

    _, model, _ = load_trained(adapter, device="cpu")
    trained = {name for name, param in run.model.named_parameters() if param.requires_grad}
    for name, param in model.named_parameters():
        param.requires_grad_(name in trained)
    run.method.save(model, directory)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
