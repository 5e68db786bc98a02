"""Run a task over a dataset split with a model: metrics, and one record per utterance.

Used by the training loop (validation) and by `speechpeft eval`, which also writes the records as
JSONL and the metrics as a summary JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import datasets
import torch
from tqdm.auto import tqdm

from speechpeft.errors import InputError
from speechpeft.leaderboard.normalize import NORMALIZER
from speechpeft.tasks.base import Predictions, Task, seeded

EVAL_SEED = 0


def batches(rows: datasets.Dataset, size: int):
    for start in range(0, len(rows), size):
        yield [rows[i] for i in range(start, min(start + size, len(rows)))]


def evaluate_task(
    task: Task, model: torch.nn.Module, rows: datasets.Dataset, batch_size: int = 16, progress: bool = False
) -> tuple[dict[str, float], list[dict]]:
    """Corpus metrics and per-utterance records of `model` on `rows` (eval mode, no gradients).

    A record does not depend on the batch size nor on the utterance's place in its batch: tasks predict in
    groups whose padding is exact, and every batch starts from the same seed of the CPU's and the model's
    GPU's generators (SpeechT5's decoder prenet keeps its dropout at inference; the TTS task reseeds it per
    utterance, and Griffin-Lim seeds its phases per clip). Training's random streams are left as they were.
    """
    was_training = model.training
    model.eval()
    predictions: list[Predictions] = []
    total = -(-len(rows) // batch_size)
    with torch.no_grad():
        for chunk in tqdm(batches(rows, batch_size), total=total, desc=f"eval {task.name}", disable=not progress):
            # as in training: bf16 compute, fp32 trainable weights
            with seeded(task.backbone.device, EVAL_SEED), task.backbone.autocast():
                predictions.append(task.predict(model, task.collate(chunk)))
    model.train(was_training)
    return task.score(predictions)


def shown(value: float | int) -> str:
    """A metric for the terminal: scores to 4 decimals, counts (e.g. `capped_utterances`) as integers."""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def write_outputs(directory: Path, summary: dict, items: list[dict]) -> tuple[Path, Path]:
    """`predictions.jsonl` (one record per utterance) and `summary.json` in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    records = directory / "predictions.jsonl"
    records.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items))
    summary_path = directory / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=1) + "\n")
    return records, summary_path


def load_trained(
    directory: Path,
    precision: str | None = None,
    device: str | None = None,
    window_seconds: float | None = None,
    backbone: str | None = None,
) -> tuple[Task, torch.nn.Module, dict]:
    """(task, model, record) for an adapter directory: its backbone (`backbone`, else the one its record names)
    loaded frozen (at `precision` and Whisper encoder window `window_seconds`, by default those it trained at), the
    adapter on top, eval mode. A recorded backbone directory that is not here raises InputError naming --backbone.

    Raises CorruptAdapterError (an InputError) for files that do not hold together, checked before the backbone
    loads (a record naming no backbone, task or method; a weights file unreadable, beside pickled files, or unlike
    the tensors its record lists; a config of another method) and after (weights that do not fit the method
    attached to this backbone: see the method's `load`).
    """
    from speechpeft.adapter_dir import check_adapter, read_record
    from speechpeft.adapters.catalog import METHODS
    from speechpeft.backbones import load_frozen
    from speechpeft.backbones.fingerprint import warn_other_weights
    from speechpeft.tasks.catalog import TASKS
    from speechpeft.train_options import backbone_kind

    record = read_record(directory)
    check_adapter(directory, record)
    method, entry = METHODS.get(record["method"]), TASKS.get(record["task"])
    window = window_seconds or record.get("options", {}).get("window_seconds")
    kind = backbone_kind(entry.kind, record.get("options", {}).get("classifier"))
    labels = record.get("labels") if kind == "classify" else None  # a decoder classifier has no head to size
    frozen = load_frozen(backbone or _recorded_backbone(record, directory), kind,
                         precision or record.get("precision", "auto"), device=device, labels=labels,
                         window_seconds=window)  # fmt: skip
    warn_other_weights(record, frozen.source, directory)
    model = method.load(frozen, Path(directory))
    return entry.build(frozen, record.get("labels")), model, record


def _recorded_backbone(record: dict, directory: Path) -> str:
    """The backbone the record names; InputError naming --backbone when it was a local directory that is gone."""
    recorded = record["backbone"]
    if record.get("backbone_resolved_as") == "directory" and not Path(recorded).is_dir():
        raise InputError(f"adapter {directory} trained on the backbone directory {recorded}, which is not here "
                         "(moved or deleted): pass --backbone DIR_OR_HUB_ID with the same weights")  # fmt: skip
    return recorded


def evaluate_adapter(options) -> dict:
    """`speechpeft eval`: score an adapter on a split; write predictions.jsonl and summary.json (with the rows
    read from the split, the rows left out by reason, and the utterances scored)."""
    from speechpeft.store import resolve_adapter
    from speechpeft.tasks import data

    adapter = resolve_adapter(options.adapter, options.store)
    source, config, streaming, cap = _scoring_source(adapter, options)
    split = data.load_split(source, options.split, config, streaming, cap)  # a wrong config or split: before the model
    task, model, record = load_trained(adapter, options.precision, window_seconds=options.window_seconds,
                                       backbone=options.backbone)  # fmt: skip
    use_normalizer(task, options.normalizer or record.get("options", {}).get("normalizer") or NORMALIZER)
    rows, left_out = data.task_rows(split, task.roles, getattr(task, "context", ()))
    if options.max_utterances is not None:
        rows = rows.select(range(min(options.max_utterances, len(rows))))
    rows, left_out = data.usable_rows(task, rows, left_out, options.split)
    if not len(rows):
        raise InputError(f"split {options.split!r} of {source} has no rows usable for task {record['task']!r}")
    metrics, items = evaluate_task(task, model, rows, options.batch_size, progress=True)
    summary = {"adapter": str(adapter), "task": record["task"], "method": record["method"],
               "backbone": record["backbone"], "dataset": source, "config": config, "split": options.split,
               "streamed_max_rows": cap if streaming else None, "rows_read": len(split),
               "left_out": left_out, "max_utterances": options.max_utterances, "utterances": len(rows),
               "window_seconds": task.backbone.window_seconds, "metrics": metrics,
               "normalizer": _normalizer(task), **getattr(task, "provenance", dict)()}  # fmt: skip
    out = options.out or adapter / "eval" / options.split
    records, summary_path = write_outputs(out, summary, items)
    return {**summary, "predictions": str(records), "summary": str(summary_path)}


def _scoring_source(adapter: Path, options) -> tuple[str, str | None, bool, int | None]:
    """(dataset, config, streaming, row cap) to score on: the flags', else the training dataset's, in its config,
    streamed (and capped) as it was when it trained streamed, said on stderr."""
    if options.dataset is not None:
        return options.dataset, options.dataset_config, options.streaming, options.max_utterances
    from speechpeft.adapter_dir import read_record

    source, trained_on = recorded_dataset(adapter), read_record(adapter).get("data") or {}
    config, streamed = options.dataset_config or trained_on.get("config"), trained_on.get("streamed_max_rows")
    if streamed and not options.streaming:
        cap = options.max_utterances or streamed
        print(f"the adapter trained on rows streamed from {source}: streaming split {options.split!r} too, its first "
              f"{cap} rows (--max-utterances N to change, --dataset to score elsewhere)", file=sys.stderr)  # fmt: skip
        return source, config, True, cap
    return source, config, options.streaming, options.max_utterances


def recorded_dataset(adapter: Path) -> str:
    """The dataset the adapter at `adapter` trained on, as its record names it: a directory or a Hub id.

    Raises InputError naming --dataset when there is none, or when it is a local path that is not here (an adapter
    pulled from the Hub records its publisher's path, e.g. `data/leaderboard/accent-421baf79`).
    """
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    from speechpeft.adapter_dir import read_record

    dataset = (read_record(adapter).get("data") or {}).get("dataset")
    if dataset is None:
        raise InputError(f"adapter {adapter} records no dataset to score on: pass --dataset DIR_OR_HUB_ID")
    if Path(dataset).exists():
        return dataset
    try:
        validate_repo_id(dataset)  # `OWNER/NAME` or `NAME` may be on the Hub: `datasets` looks it up
    except HFValidationError:  # more than one `/`, a leading `.`, `/` or `~`: a path, and not here
        raise InputError(f"adapter {adapter} trained on the dataset {dataset!r}, a path that is not here (recorded "
                         "as given where the adapter trained): pass --dataset DIR_OR_HUB_ID") from None  # fmt: skip
    return dataset


def use_normalizer(task: Task, name: str) -> None:
    """Score `task`'s WER and CER (ASR; TTS: the listener's CER) after the normaliser `name`
    (`leaderboard.normalize.NormalizerName`); a classification task has no text to normalise."""
    if hasattr(task, "normalizer"):
        task.normalizer = name


def _normalizer(task) -> str | None:
    return task.normalizer if task.kind == "asr" else None
