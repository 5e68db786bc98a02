"""Every adapter method trained and scored on each task kind, on the built-in backbones.

    .venv/bin/python scripts/method_grid.py [--steps 120] [--out runs/method-grid]

Builds two small corpora with `speechpeft data synth` (adaptation voices for ASR and intent; one
adaptation voice, flite-slt, for TTS), trains each method with `speechpeft train`'s code path, scores the
test split with `speechpeft eval`'s, and prints one Markdown table per task. Results go to
`OUT/results.jsonl` as they arrive; a rerun skips the cells already there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("SPEECHPEFT_TTS_LISTENER", "speechpeft/tiny-whisper")  # the listener of README's tables

from speechpeft.eval_options import EvalOptions
from speechpeft.evaluation import evaluate_adapter
from speechpeft.train import train
from speechpeft.train_options import TrainOptions

CORPORA = {  # name -> `speechpeft data synth` flags
    "speech": "--utterances 360 --voices adapt --kinds sentence=0.5 command=0.5 --splits adapt=0.75 test=0.25",
    "voice": "--utterances 200 --voices flite-slt --kinds sentence=0.7 command=0.3 --splits adapt=0.8 test=0.2",
}
TASKS = {"asr": ("speech", "wer"), "intent": ("speech", "accuracy"), "tts": ("voice", "ovrl_mos")}
METHODS = {"frozen": {}, "lora": {}, "adalora": {}, "prefix": {}, "bottleneck": {},
           "houlsby": {"method": "bottleneck", "bottleneck_style": "houlsby"}, "full": {"lr": 1e-4}}  # fmt: skip


def build_corpus(out: Path, name: str) -> Path:
    path = out / "corpora" / name
    if not (path / "dataset_dict.json").exists():
        command = [sys.executable, "-m", "speechpeft.cli", "data", "synth", *CORPORA[name].split(), "--seed", "1"]
        subprocess.run([*command, "--out", str(path)], check=True)
    return path


def run_cell(out: Path, task: str, variant: str, steps: int) -> dict:
    """Train one adapter, score it on the test split; the row for the table."""
    corpus = build_corpus(out, TASKS[task][0])
    settings = {"method": variant, **METHODS[variant]}
    backbone = None if task == "tts" else "speechpeft/tiny-whisper"  # the grid's backbones (README's tables)
    options = TrainOptions(task=task, out=out / task / variant, dataset=str(corpus), steps=steps, backbone=backbone,
                           eval_every=max(1, steps // 2), batch_size=8, **settings)  # fmt: skip
    record = train(options, progress=False)
    scored = evaluate_adapter(EvalOptions(adapter=str(options.out), split="test"))
    size = sum(f.stat().st_size for f in options.out.glob("adapter_*"))
    return {"task": task, "variant": variant, "backbone": record["backbone"], "steps": record["steps_run"],
            "trainable": record["trainable_parameters"], "adapter_bytes": size,
            "train_seconds": record.get("train_seconds"), "test": scored["metrics"],
            "utterances": scored["utterances"]}  # fmt: skip


def table(rows: list[dict], task: str) -> str:
    headline = TASKS[task][1]
    extra = sorted({k for r in rows for k in r["test"]} - {headline})
    lines = [f"**{task}** on {rows[0]['backbone']} ({rows[0]['utterances']} test utterances)", "",
             f"| method | trainable | adapter | s to best | {headline} | " + " | ".join(extra) + " |",
             "|---|---:|---:|---:|---:|" + "---:|" * len(extra)]  # fmt: skip
    for r in rows:
        cells = [_cell(r["test"].get(k, float("nan"))) for k in (headline, *extra)]
        lines.append(f"| {r['variant']} | {r['trainable']:,} | {r['adapter_bytes'] / 1024:,.0f} KiB | "
                     f"{r['train_seconds']} | " + " | ".join(cells) + " |")  # fmt: skip
    return "\n".join(lines)


def _cell(value: float | int) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)  # counts (capped_utterances) as integers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=120, help="optimisation steps per adapter")
    parser.add_argument("--out", type=Path, default=Path("runs/method-grid"), help="corpora, adapters, results")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "results.jsonl"
    done = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
    for task in args.tasks:
        for variant in args.methods:
            if not any(r["task"] == task and r["variant"] == variant for r in done):
                done.append(run_cell(args.out, task, variant, args.steps))
                with results.open("a") as f:
                    f.write(json.dumps(done[-1]) + "\n")
        print(table([r for r in done if r["task"] == task], task), end="\n\n", flush=True)


if __name__ == "__main__":
    main()
