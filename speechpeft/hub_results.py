"""An adapter's evaluations, gathered for its model card: what was measured, on which data, and how much of it.

Three sources, all written by speechpeft itself:
  1. the leaderboard cell the adapter was trained in, `ADAPTER/../result.json` (metrics with 95 % bootstrap
     intervals over utterances, scores per voice, and the same cell's `frozen` baseline beside it);
  2. `ADAPTER/eval/<split>/summary.json`, written by `speechpeft eval` (its default output);
  3. the training record's validation scores (`speechpeft.json`), only when nothing above exists.
One evaluation per (dataset, split) is kept, in that order of preference; one over the first N utterances only
(`speechpeft eval --max-utterances`) gives way to a complete one.
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
    "macro_f1": "Macro-F1",
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
    partial: bool = False  # the first N utterances of the split only
    groups: dict[str, dict] = field(default_factory=dict)  # voice -> {utterances, value, low, high} (headline)
    baseline: float | None = None  # the frozen backbone's headline on the same data (a leaderboard cell's sibling)


def card_metrics(task: str, metrics: dict) -> list[str]:
    """The metrics a card reports for `task`, headline first, among those in `metrics` (speed is left out:
    it depends on the machine)."""
    headline = HEADLINES.get(task)
    wanted = (headline.metric, *headline.others, "macro_f1") if headline else ("accuracy", "macro_f1")
    return [name for name in wanted if isinstance(metrics.get(name), int | float)]


def headline_metric(task: str) -> str:
    return HEADLINES[task].metric if task in HEADLINES else "accuracy"


def gather(adapter: Path, record: dict) -> list[Evaluation]:
    """The evaluations recorded for the adapter at `adapter` (see the module doc), test splits first."""
    cell = adapter.parent / "result.json"
    found = [_from_cell(cell, record) if cell.exists() else None]
    found += [_from_eval_summary(path) for path in sorted(adapter.glob("eval/*/summary.json"))]
    found = [e for e in found if e is not None and card_metrics(record["task"], e.metrics)]
    kept: dict[tuple[str, str], Evaluation] = {}
    for evaluation in sorted(found, key=lambda e: e.partial):  # stable: cell, then summaries
        kept.setdefault((Path(evaluation.dataset).name, evaluation.split), evaluation)
    if not kept and record.get("validation"):
        kept[("", "validation")] = _from_validation(adapter, record)
    return sorted(kept.values(), key=lambda e: e.split != "test")


def _from_eval_summary(path: Path) -> Evaluation | None:
    summary = json.loads(path.read_text())
    if not isinstance(summary.get("metrics"), dict):
        return None
    return Evaluation(summary["dataset"], summary["split"], summary.get("utterances"), summary["metrics"],
                      source=str(path), partial=summary.get("max_utterances") is not None)  # fmt: skip


def _from_cell(path: Path, record: dict) -> Evaluation | None:
    """The leaderboard cell's test evaluation, when the cell finished and trained this very adapter."""
    cell = json.loads(path.read_text())
    evaluation = cell.get("evaluation") or {}
    if cell.get("status") != "ok" or cell.get("method") != record.get("method") or not evaluation.get("metrics"):
        return None
    scored = {k: v for k, v in evaluation["metrics"].items() if isinstance(v, dict) and v.get("value") is not None}
    metrics = {**(evaluation.get("task_metrics") or {}), **{k: v["value"] for k, v in scored.items()}}
    intervals = {k: (v["low"], v["high"]) for k, v in scored.items() if v.get("low") is not None}
    dataset = cell.get("corpus") or record.get("data", {}).get("dataset") or "unknown"
    return Evaluation(dataset, evaluation["split"], evaluation.get("utterances"), metrics, intervals, str(path),
                      groups=evaluation.get("groups") or {}, baseline=_baseline(path, cell["task"]))  # fmt: skip


def _baseline(cell: Path, task: str) -> float | None:
    """The headline of the `frozen` cell beside this one (same task, backbone and seed), when it finished."""
    frozen = cell.parent.parent.parent / "frozen" / cell.parent.name / "result.json"
    if not frozen.exists() or frozen == cell:
        return None
    scored = (json.loads(frozen.read_text()).get("evaluation") or {}).get("metrics") or {}
    value = scored.get(headline_metric(task))
    return value.get("value") if isinstance(value, dict) else None


def _from_validation(adapter: Path, record: dict) -> Evaluation:
    data = record.get("data", {})
    split = f"{data.get('split')} (held-out validation part)" if data.get("split") else "validation"
    return Evaluation(data.get("dataset") or "unknown", split, data.get("validation_utterances"),
                      record["validation"], source=str(adapter / "speechpeft.json"))  # fmt: skip


def dataset_label(dataset: str) -> tuple[str, str | None]:
    """(name, Hub dataset id or None) for an evaluation's `dataset`: a local corpus directory has no Hub id."""
    if Path(dataset).exists() or dataset.startswith((".", "/")) or dataset.count("/") != 1:
        return Path(dataset).name or dataset, None
    return dataset, dataset
