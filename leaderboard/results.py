"""Cell results → leaderboard rows (one per task x backbone x variant, seeds pooled) and the CSV of every cell.

A row's headline is the mean over the seeds that finished; with one seed its interval is that seed's bootstrap
interval, with several the mean of the seeds' bounds and `spread` their standard deviation. A row is "failed"
when no seed finished, "partial" when some did not.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from speechpeft.leaderboard.headline import HEADLINES
from speechpeft.leaderboard.stats import across_seeds

CSV_FIXED = ("task", "backbone", "variant", "method", "seed", "status", "metric", "value", "low", "high",
             "trainable_parameters", "adapter_bytes", "train_seconds", "steps", "best_step", "peak_memory_bytes",
             "utterances", "eval_seconds", "latency_seconds", "latency_rtfx", "validation_value", "error")  # fmt: skip


def rows(results: list[dict]) -> list[dict]:
    """Leaderboard rows in the order their cells first appear (`leaderboard.report` reads these)."""
    keyed: dict[tuple, list[dict]] = {}
    for result in results:
        keyed.setdefault((result["task"], result["backbone"], result["variant"]), []).append(result)
    return [_row(cells) for cells in keyed.values()]


def _row(cells: list[dict]) -> dict:
    first, ok = cells[0], [c for c in cells if c["status"] == "ok"]
    status = "failed" if not ok else "partial" if len(ok) < len(cells) else "ok"
    row = {"task": first["task"], "backbone": first["backbone"], "variant": first["variant"],
           "method": first["method"], "status": status, "seeds": len(ok), "metric": HEADLINES[first["task"]].metric,
           "error": next((c["error"]["message"] for c in cells if c["status"] != "ok"), None)}  # fmt: skip
    if not ok:
        return {**row, "value": None, "low": None, "high": None, "spread": None, "metrics": {}, "groups": {}}
    ok = [c if "evaluation" in c else _validation_only(c) for c in ok]
    metrics = {name: _pooled([c["evaluation"]["metrics"][name] for c in ok]) for name in _metric_names(ok)}
    headline = metrics.get(row["metric"], {"value": None, "low": None, "high": None, "spread": None})
    tuning = [c["tuning"] for c in ok if c.get("tuning")]  # --tune: each seed's study (`leaderboard.tune`)
    return {**row, **headline, "metrics": metrics, "groups": _groups(ok), **_costs(ok),
            **({"tuning": tuning} if tuning else {})}  # fmt: skip


def _validation_only(cell: dict) -> dict:
    """A tuning cell (no test split scored) shown by its validation scores, without intervals."""
    headline = HEADLINES[cell["task"]]
    validation = cell["training"]["validation"] or {}
    scores = {k: {"value": validation[k], "low": None, "high": None} for k in (headline.metric, *headline.others)
              if k in validation}  # fmt: skip
    latency = {"rtfx": None, "median_seconds": None}
    evaluation = {"metrics": scores, "groups": {}, "latency": latency, "split": "validation",
                  "utterances": cell["training"]["validation_utterances"]}  # fmt: skip
    return {**cell, "evaluation": evaluation}


def _metric_names(ok: list[dict]) -> list[str]:
    names = [set(c["evaluation"]["metrics"]) for c in ok]
    return [n for n in ok[0]["evaluation"]["metrics"] if all(n in s for s in names)]


def _pooled(per_seed: list[dict]) -> dict:
    """Mean value, mean interval bounds, and the spread over seeds (None for one seed)."""
    value, spread = across_seeds([m["value"] for m in per_seed])
    bounds = {k: _mean_or_none([m[k] for m in per_seed]) for k in ("low", "high")}
    return {"value": value, **bounds, "spread": spread}


def _mean_or_none(values: list) -> float | None:
    return None if any(v is None for v in values) else sum(values) / len(values)


def _groups(ok: list[dict]) -> dict:
    names = ok[0]["evaluation"].get("groups", {})
    out = {}
    for name, first in names.items():
        per_seed = [c["evaluation"]["groups"][name] for c in ok if name in c["evaluation"].get("groups", {})]
        out[name] = {"utterances": first["utterances"], **_pooled(per_seed)}
    return out


def _costs(ok: list[dict]) -> dict:
    """Sizes from the first seed (the same for every seed); times and speeds averaged over seeds."""
    training, evaluation = ok[0]["training"], ok[0]["evaluation"]

    def mean(get) -> float | None:
        values = [get(c) for c in ok]
        return None if any(v is None for v in values) else sum(values) / len(values)

    return {"trainable_parameters": training["trainable_parameters"], "adapter_bytes": training["adapter_bytes"],
            "train_seconds": mean(lambda c: c["training"]["seconds"]), "steps": training["steps"],
            "rtfx": mean(lambda c: c["evaluation"]["latency"].get("rtfx")),
            "seconds_per_utterance": mean(lambda c: c["evaluation"]["latency"].get("median_seconds")),
            "utterances": evaluation["utterances"], "split": evaluation["split"]}  # fmt: skip


def write_csv(results: list[dict], path: Path) -> Path:
    """One line per cell: the fixed columns (`value`: the headline on the test split; `validation_value`: on the
    validation rows, what hyper-parameters are chosen by), then every metric's value and interval (`wer`,
    `wer_low`, ...); with `--tune`, the cell's trials (`tune_trials`, `tune_pruned`, ...)."""
    flat = [_flat(r) for r in results]
    extra = sorted({k for f in flat for k in f} - set(CSV_FIXED))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*CSV_FIXED, *extra])
        writer.writeheader()
        writer.writerows(flat)
    return path


def _flat(result: dict) -> dict:
    training, evaluation = result.get("training", {}), result.get("evaluation", {})
    metrics, latency = evaluation.get("metrics", {}), evaluation.get("latency", {})
    headline = HEADLINES[result["task"]].metric
    flat = {"task": result["task"], "backbone": result["backbone"], "variant": result["variant"],
            "method": result["method"], "seed": result["seed"], "status": result["status"], "metric": headline,
            **{k: metrics.get(headline, {}).get(k) for k in ("value", "low", "high")},
            **{k: training.get(k) for k in ("trainable_parameters", "adapter_bytes", "steps", "best_step",
                                            "peak_memory_bytes")},
            "train_seconds": training.get("seconds"), "utterances": evaluation.get("utterances"),
            "eval_seconds": evaluation.get("seconds"), "latency_seconds": latency.get("median_seconds"),
            "latency_rtfx": latency.get("rtfx"), "error": (result.get("error") or {}).get("message"),
            "validation_value": (training.get("validation") or {}).get(headline)}  # fmt: skip
    for name, score in metrics.items():
        flat.update({name: score["value"], f"{name}_low": score["low"], f"{name}_high": score["high"]})
    counts = {k: v for k, v in evaluation.get("task_metrics", {}).items() if isinstance(v, int)}
    return {**flat, **counts, **_tuning_columns(result.get("tuning"))}  # counts: e.g. capped_utterances (TTS)


def _tuning_columns(tuning: dict | None) -> dict:
    """`--tune`'s columns, only for a cell that was asked to tune: whether it was, its trials by outcome, and the
    best trial's number and values (JSON)."""
    if not tuning:
        return {}
    best = tuning.get("best") or {}
    params = json.dumps(best["params"]) if best else None
    return {"tuned": tuning["tuned"], "tune_trials": tuning["asked"],
            **{f"tune_{state}": tuning.get(state) for state in ("completed", "pruned", "failed")},
            "tune_best_trial": best.get("number"), "tune_best_params": params}  # fmt: skip
