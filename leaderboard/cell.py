"""One leaderboard cell: train an adapter, score it on the test split, write `result.json`.

Runs in a worker process (`leaderboard.runner`). The adapter is trained by `speechpeft train`'s own loop
and reloaded from disk (the best checkpoint by validation) the way `speechpeft eval` does; the test split is
scored once, batched, and each utterance's record keeps its voice, so per-voice scores and bootstrap
intervals come from the same records (`leaderboard.stats`). Latency is measured apart, one utterance at a
time, after one warm-up. With `--tune N` the adapter scored is the best of N trials on validation data
(`leaderboard.tune`), and the result records every trial in its `tuning` block.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

import torch

from speechpeft.errors import InputError
from speechpeft.leaderboard.cell_info import PeakMemory, adapter_bytes, run_info
from speechpeft.leaderboard.grid import Cell
from speechpeft.leaderboard.headline import HEADLINES
from speechpeft.leaderboard.normalize import NORMALIZER
from speechpeft.leaderboard.stats import group_scores, scores

RESULT = "result.json"
SCHEMA = 1


def result_path(out: Path, cell: Cell) -> Path:
    return out / "cells" / cell.id / RESULT


def cell_threads(workers: int) -> int:
    """Torch threads of one cell when `workers` cells run at once: this machine's cores shared out, at least 1 (both
    executors use it, so the same seeds give the same numbers through either)."""
    return max(1, (os.cpu_count() or 1) // workers)


def run_cell(cell: Cell, out: Path, threads: int | None = None) -> dict:
    """Train and score `cell` under `out/cells/<id>/`; write and return its result (status "ok" or "failed",
    with the error's type, message and traceback). Never raises for a failure inside the cell."""
    if threads:
        torch.set_num_threads(threads)
    directory = out / "cells" / cell.id
    started = _now()
    with output_to(directory / "log.txt"):
        try:
            body = {"status": "ok", **_train_and_score(cell, directory)}
        except Exception as error:  # recorded, and the grid goes on
            body = {"status": "failed", "error": failure(error)}
    result = {"schema": SCHEMA, **describe(cell), **body}
    result["run"] = {**result.get("run", {}), "started": started, "finished": _now()}
    write_json(directory / RESULT, result)
    return result


@contextlib.contextmanager
def output_to(path: Path):
    """Send this process's stdout and stderr (file descriptors 1 and 2: Python, tqdm, native libraries) to `path`
    while the block runs, so a cell's logs stay with the cell and off the grid's progress display."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush(), sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with path.open("ab") as log:
        os.dup2(log.fileno(), 1), os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])


def describe(cell: Cell) -> dict:
    return {"id": cell.id, "task": cell.task, "backbone": cell.backbone, "variant": cell.variant,
            "method": cell.settings["method"], "seed": cell.seed, "settings": cell.settings,
            "corpus": str(cell.corpus), "tune": cell.tune}  # fmt: skip


def same_cell(result: dict | None, cell: Cell) -> bool:
    """Whether `result` was produced by `cell` as it is now: same settings, corpus and tuning trials."""
    return (result is not None and result.get("settings") == cell.settings and result.get("corpus") == str(cell.corpus)
            and result.get("tune", 0) == cell.tune)  # fmt: skip


def failure(error: BaseException) -> dict:
    return {"type": type(error).__name__, "message": str(error).splitlines()[0] if str(error) else "",
            "traceback": traceback.format_exc()}  # fmt: skip


def _train_and_score(cell: Cell, directory: Path) -> dict:
    record, training, tuning = _train(cell, directory)
    tuned = {} if tuning is None else {"tuning": tuning}
    if cell.test_split is None:  # a tuning preset's cell: its validation scores are what it is for
        provenance = {k: record[k] for k in ("listener", "listener_source", "listener_fingerprint") if k in record}
        return {"run": run_info(record, provenance), "training": training, **tuned}
    evaluation, provenance = _evaluate(cell, directory / "adapter", directory)
    return {"run": run_info(record, provenance), "training": training, "evaluation": evaluation, **tuned}


def _train(cell: Cell, directory: Path) -> tuple[dict, dict, dict | None]:
    """Train the cell's adapter into `directory/adapter`, by a study of `cell.tune` trials on validation data when
    it asks for one (`leaderboard.tune`). Returns train()'s record of the adapter kept, the `training` block and
    the `tuning` block (None when not asked)."""
    adapter = directory / "adapter"
    if not cell.tune:
        return *_train_once(cell, adapter), None
    from speechpeft.leaderboard import tune  # only here: Optuna is not imported by untuned cells

    reason = tune.not_tuned(cell.settings)
    if reason is not None:
        return *_train_once(cell, adapter), tune.untuned_summary(cell, reason)
    tuned = tune.tune_cell(cell, directory)
    best = tuned.best
    return best.record, _training(best.record, best.seconds, best.peak_bytes, adapter), tuned.summary


def _train_once(cell: Cell, adapter: Path) -> tuple[dict, dict]:
    from speechpeft.train import train
    from speechpeft.train_options import TrainOptions

    options = TrainOptions(task=cell.task, out=adapter, dataset=str(cell.corpus), backbone=cell.backbone,
                           seed=cell.seed, **cell.settings)  # fmt: skip
    began = time.perf_counter()
    with PeakMemory() as memory:
        record = train(options, progress=False)
    return record, _training(record, time.perf_counter() - began, memory.peak_bytes, adapter)


def _training(record: dict, seconds: float, peak_bytes: int, adapter: Path) -> dict:
    return {"steps": record.get("steps_run", 0), "best_step": record.get("best_step"), "seconds": round(seconds, 1),
            "seconds_to_best": record.get("train_seconds"), "peak_memory_bytes": peak_bytes,
            "trainable_parameters": record["trainable_parameters"], "adapter_bytes": adapter_bytes(adapter),
            "train_utterances": record["data"]["train_utterances"],
            "validation_utterances": record["data"]["validation_utterances"],
            "left_out": {"train": record["data"].get("train_left_out", {}),
                         "validation": record["data"].get("validation_left_out", {})},
            "validation": record.get("validation")}  # fmt: skip


def _evaluate(cell: Cell, adapter: Path, directory: Path) -> tuple[dict, dict]:
    """Score the test split: metrics with 95 % bootstrap intervals, per-group headline, latency; write the
    per-utterance records to `predictions.jsonl`. Returns (evaluation, the task's provenance)."""
    from speechpeft.evaluation import evaluate_task, load_trained

    task, model, _ = load_trained(adapter)
    rows, read, left_out = _test_rows(cell, task)
    if not len(rows):
        raise InputError(f"split {cell.test_split!r} of {cell.corpus} has no rows usable for task {cell.task!r} "
                         f"({read} read, left out: {left_out}): make the corpus bigger")  # fmt: skip
    began = time.perf_counter()
    metrics, items = evaluate_task(task, model, rows, batch_size=cell.settings.get("batch_size", 8))
    seconds = time.perf_counter() - began
    groups = rows["speaker"] if "speaker" in rows.column_names else [None] * len(items)
    items = [{"group": g, **item} for g, item in zip(groups, items, strict=True)]
    _write_items(directory / "predictions.jsonl", items)
    headline = HEADLINES[cell.task]
    interval_metrics = (headline.metric, *headline.others)
    evaluation = {"split": cell.test_split, "rows_read": read, "left_out": left_out, "utterances": len(items),
                  "seconds": round(seconds, 2), "group_by": cell.group_by,
                  "metrics": scores(cell.task, items, interval_metrics, seed=cell.seed),
                  "task_metrics": metrics, "groups": group_scores(cell.task, items, headline.metric, cell.seed),
                  "latency": latency(task, model, rows, cell.latency_utterances)}  # fmt: skip
    provenance = {"normalizer": NORMALIZER if task.kind == "asr" else None, **getattr(task, "provenance", dict)()}
    return evaluation, {**provenance, "window_seconds": task.backbone.window_seconds}


def _test_rows(cell: Cell, task):
    """The usable test rows (with the grouping column as `speaker` when the corpus has it), the rows read from
    the split, and the rows left out by reason."""
    from speechpeft.tasks import data

    split = data.pick_split(data.load_speech_dataset(cell.corpus), cell.test_split)
    context = getattr(task, "context", ())
    if cell.group_by not in split.column_names:
        rows, left_out = data.task_rows(split, task.roles, context)
    else:  # the grouping column is read as the `speaker` role
        roles = task.roles if "speaker" in task.roles else (*task.roles, "speaker")
        rows, left_out = data.task_rows(split, roles, context, sources={"speaker": cell.group_by})
    rows, left_out = data.usable_rows(task, rows, left_out, cell.test_split)
    return rows, len(split), left_out


def latency(task, model: torch.nn.Module, rows, count: int) -> dict:
    """Median seconds to answer one utterance alone (batch 1, after one warm-up) over the first `count` test rows,
    and RTFx over them (audio seconds ÷ compute seconds; for TTS the audio is the speech it generated)."""
    from speechpeft.evaluation import EVAL_SEED
    from speechpeft.tasks.base import seeded

    count = min(count, len(rows))
    if count == 0:
        return {}
    took, audio = [], 0.0
    with torch.no_grad(), seeded(task.backbone.device, EVAL_SEED), task.backbone.autocast():
        task.predict(model, task.collate([rows[0]]))  # warm-up: first-call allocations are not latency
        for index in range(count):
            batch = task.collate([rows[index]])
            began = time.perf_counter()
            predictions = task.predict(model, batch)
            took.append(time.perf_counter() - began)
            audio += _audio_seconds(task, batch, predictions)
    return {"utterances": count, "batch_size": 1, "median_seconds": round(statistics.median(took), 4),
            "rtfx": round(audio / sum(took), 2) if sum(took) else None}  # fmt: skip


def _audio_seconds(task, batch: dict, predictions) -> float:
    """Seconds of audio one prediction covered: the speech TTS made, else the clip heard."""
    rate = task.extractor.sampling_rate
    if task.kind == "tts":
        return sum(len(waveform) / rate for waveform in predictions.outputs)
    return sum(len(clip) / rate for clip in batch["audio"])


def _write_items(path: Path, items: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items))


def write_json(path: Path, value: dict) -> None:
    """Write atomically: a reader (or a rerun after a crash) sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".json.part")
    staging.write_text(json.dumps(value, indent=1, ensure_ascii=False) + "\n")
    staging.replace(path)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
