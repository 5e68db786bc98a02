"""An adapter's evaluations, gathered for its model card: what was measured, on which data, and how much of it.

Three sources, all written by speechpeft itself, read in this order:
  1. `ADAPTER/eval/<split>/summary.json`, written by `speechpeft eval` (its default output);
  2. `ADAPTER/../result.json`, the leaderboard cell the adapter was trained in (metrics with 95 % bootstrap
     intervals over utterances);
  3. the training record's validation scores (`speechpeft.json`), when nothing above exists.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from speechpeft.leaderboard.headline import HEADLINES

# metric key -> the name a card shows; every value is on the scale the evaluation reports (WER 0.12 = 12 %)
METRIC_NAMES = {
    "wer": "WER",
    "cer": "CER",
    "accuracy": "Accuracy",
    "ovrl_mos": "MOS proxy (DNSMOS OVRL, 1-5)",
    "sig_mos": "DNSMOS SIG (1-5)",
    "bak_mos": "DNSMOS BAK (1-5)",
    "p808_mos": "DNSMOS P.808 (1-5)",
    "mcd": "MCD (dB)",
}


@dataclass(frozen=True)
class Evaluation:
    """One evaluation of an adapter: `metrics` (key -> value) on `utterances` utterances of `dataset`'s `split`."""

    dataset: str  # a local corpus directory or a Hub dataset id
    split: str
    utterances: int | None
    metrics: dict[str, float]
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)  # key -> (low, high), 95 %
    source: str = ""  # the file it was read from


def card_metrics(task: str, metrics: dict) -> list[str]:
    """The metrics a card reports for `task`, headline first, among those in `metrics` (speed is left out:
    it depends on the machine)."""
    headline = HEADLINES.get(task)
    wanted = (headline.metric, *headline.others) if headline else ("accuracy",)
    return [name for name in wanted if isinstance(metrics.get(name), int | float)]


def gather(adapter: Path, record: dict) -> list[Evaluation]:
    """Every evaluation recorded for the adapter at `adapter` (see the module doc), test splits first."""
    found = [_from_eval_summary(path) for path in sorted(adapter.glob("eval/*/summary.json"))]
    cell = adapter.parent / "result.json"
    if cell.exists():
        found.append(_from_cell(cell, record))
    found = [e for e in found if e is not None and card_metrics(record["task"], e.metrics)]
    if not found and record.get("validation"):
        found.append(_from_validation(adapter, record))
    return sorted(found, key=lambda e: e.split != "test")


def _from_eval_summary(path: Path) -> Evaluation | None:
    summary = json.loads(path.read_text())
    if not isinstance(summary.get("metrics"), dict):
        return None
    return Evaluation(summary["dataset"], summary["split"], summary.get("utterances"), summary["metrics"],
                      source=str(path))  # fmt: skip


def _from_cell(path: Path, record: dict) -> Evaluation | None:
    """The leaderboard cell's test evaluation, when the cell finished and trained this very adapter."""
    cell = json.loads(path.read_text())
    evaluation = cell.get("evaluation") or {}
    if cell.get("status") != "ok" or cell.get("method") != record.get("method") or not evaluation.get("metrics"):
        return None
    scored = evaluation["metrics"]
    metrics = {k: v["value"] for k, v in scored.items() if isinstance(v, dict) and v.get("value") is not None}
    intervals = {k: (v["low"], v["high"]) for k, v in scored.items() if isinstance(v, dict) and "low" in v}
    dataset = cell.get("corpus") or record.get("data", {}).get("dataset") or "unknown"
    return Evaluation(dataset, evaluation["split"], evaluation.get("utterances"), metrics, intervals, str(path))


def _from_validation(adapter: Path, record: dict) -> Evaluation:
    data = record.get("data", {})
    return Evaluation(data.get("dataset") or "unknown", "validation", data.get("validation_utterances"),
                      record["validation"], source=str(adapter / "speechpeft.json"))  # fmt: skip


def dataset_label(dataset: str) -> tuple[str, str | None]:
    """(name, Hub dataset id or None) for an evaluation's `dataset`: a local corpus directory has no Hub id."""
    if Path(dataset).exists() or dataset.startswith((".", "/")) or dataset.count("/") != 1:
        return Path(dataset).name or dataset, None
    return dataset, dataset
