"""Whisper's full 30 s encoder window against a short one, on the same CPU in the same run.

    .venv/bin/python benchmarks/whisper_window.py [--backbone openai/whisper-tiny.en] [--corpus data/corpus]
        [--windows 30 6] [--steps 5] [--out benchmarks/results/whisper_window.json]

For each window: the frozen backbone's WER, CER and RTFx (audio seconds / compute seconds) on the corpus's test
split, how many utterances were decoded at the full window anyway (longer than the short window, or redone
after runaway decoding, `tasks.runaway`), and the wall time of one LoRA training step (forward, backward,
AdamW update) at batch 8 on the adapt split: the median of `--steps` steps after one warm-up step.
The issue's target: a step of at most 2.5 s with the short window on the 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import datasets
import torch

from speechpeft.backbones import load_frozen
from speechpeft.backbones.imported_card import cpu_model
from speechpeft.evaluation import evaluate_task
from speechpeft.tasks import data
from speechpeft.tasks.catalog import TASKS
from speechpeft.train import prepare_run
from speechpeft.train_options import TrainOptions

TARGET_STEP_SECONDS = 2.5


def frozen_scores(backbone_id: str, corpus: str, window: float | None, limit: int | None = None) -> dict:
    """WER, CER, RTFx (and utterances decoded at the full window) of the frozen backbone on the test split."""
    entry = TASKS.get("asr")
    backbone = load_frozen(backbone_id, "asr", "fp32", device="cpu", window_seconds=window)
    task = entry.build(backbone, None)
    rows, left_out = data.task_rows(datasets.load_from_disk(corpus)["test"], entry.roles)
    rows = rows.select(range(min(limit or len(rows), len(rows))))
    rows, left_out = data.usable_rows(task, rows, left_out, "test")
    started = time.perf_counter()
    metrics, _ = evaluate_task(task, backbone.model, rows, batch_size=8, progress=True)
    return {**metrics, "utterances": len(rows), "left_out": left_out, "wall_seconds": time.perf_counter() - started}


def lora_step_seconds(backbone_id: str, corpus: str, window: float | None, steps: int) -> float:
    """Median wall time of a LoRA training step at batch 8 (after one warm-up step)."""
    with tempfile.TemporaryDirectory() as out:
        options = TrainOptions(task="asr", out=Path(out) / "adapter", backbone=backbone_id, dataset=corpus,
                               precision="fp32", window_seconds=window, batch_size=8, steps=steps + 1,
                               max_utterances=8 * (steps + 1) * 2)  # fmt: skip
        run = prepare_run(options, torch.device("cpu"))
    optimizer = torch.optim.AdamW([p for p in run.model.parameters() if p.requires_grad], lr=1e-3)
    run.model.train()
    timings = []
    for start in range(0, 8 * (steps + 1), 8):
        batch = run.task.collate([run.train_rows[i] for i in range(start, start + 8)])
        started = time.perf_counter()
        run.task.loss(run.model, batch).backward()
        optimizer.step()
        optimizer.zero_grad()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings[1:])


def machine() -> str:
    return f"{cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="openai/whisper-tiny.en")
    parser.add_argument("--corpus", default="data/corpus")
    parser.add_argument("--windows", type=float, nargs="+", default=[30.0, 6.0], help="seconds; 30 = Whisper's own")
    parser.add_argument("--steps", type=int, default=5, help="timed LoRA steps per window")
    parser.add_argument("--max-utterances", type=int, help="score only the first N test utterances (a quick look)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/whisper_window.json"))
    args = parser.parse_args(argv)
    results = {"command": " ".join(["python", *sys.argv]), "machine": machine(), "date": date.today().isoformat(),
               "backbone": args.backbone, "corpus": args.corpus, "windows": {}}  # fmt: skip
    for window in args.windows:
        own = None if window == 30.0 else window
        row = frozen_scores(args.backbone, args.corpus, own, args.max_utterances)
        row["lora_step_seconds"] = lora_step_seconds(args.backbone, args.corpus, own, args.steps)
        results["windows"][f"{window:g}"] = row
        print(f"{window:g} s: {json.dumps(row)}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


def table(results: dict) -> str:
    lines = ["| window | WER | CER | RTFx | full-window utterances | LoRA step, batch 8 |", "|---" * 6 + "|"]
    for window, row in results["windows"].items():
        full = row.get("full_window_utterances", row["utterances"])
        lines.append(f"| {window} s | {row['wer']:.1%} | {row['cer']:.1%} | {row['rtfx']:.1f} | {full} of "
                     f"{row['utterances']} | {row['lora_step_seconds']:.2f} s |")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()
