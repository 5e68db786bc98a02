"""`speechpeft leaderboard --tune N`: a cell's method tuned on validation data, N trials of one Optuna study.

The study searches the peak learning rate (log-uniform, from a tenth of the cell's own to ten times it) and the
method's size: LoRA's and AdaLoRA's rank, prefix tuning's length, the bottleneck's reduction factor; `full`
searches the rate only and `frozen` has nothing to search. The first trial is the cell's own settings (as far as
they lie in the space), so a tuned cell is never worse on validation than the untuned one. Later trials come from
TPE, the tree-structured Parzen estimator (Bergstra, Bardenet, Bengio and Kégl, "Algorithms for Hyper-Parameter
Optimization", NeurIPS 2011,
https://papers.nips.cc/paper_files/paper/2011/hash/86e8f7ab32cfd12577bc2619bc635690-Abstract.html), seeded with
the cell's seed so the same cell asks the same trials. A trial whose validation score is worse than the median of
the earlier trials' at the same step is stopped there (from the third trial on, and never at its last validation,
where stopping saves nothing): the median stopping rule (Golovin et al., "Google Vizier", KDD 2017), Optuna's
`MedianPruner`.

Each trial runs `speechpeft train`'s loop on the cell's training split and sees only its validation rows; the
cell (`leaderboard.cell`) scores the best trial's adapter on the test split, once. The other trials' adapters are
deleted (a `full` trial's is the whole model); every trial stays in the cell's `result.json`.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution
from optuna.trial import FrozenTrial, TrialState

from speechpeft.leaderboard.cell_info import PeakMemory
from speechpeft.leaderboard.grid import Cell
from speechpeft.train_options import TrainOptions

SIZES: dict[str, tuple[str, tuple[int, ...]]] = {  # method -> its size setting and the values tried
    "lora": ("rank", (4, 8, 16)),
    "adalora": ("rank", (4, 8, 16)),
    "prefix": ("prefix_length", (8, 16, 32)),
    "bottleneck": ("reduction_factor", (8, 16, 32)),
}
NOT_TUNED = {"frozen": "nothing to search, the backbone stays as it is (a task head, where there is one, keeps the "
                       "cell's learning rate)"}  # fmt: skip
LR_SPAN = 10  # learning rates tried: the cell's own / 10 to x 10
PRUNE_AFTER = 2  # trials that run to the end before any is pruned: the median of one curve is that run's luck
TPE_STARTUP = (2, 10)  # trials sampled at random before TPE models the rest: half the budget, within these bounds
STATES = {TrialState.COMPLETE: "completed", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed"}

OnValidation = Callable[[int, dict[str, float]], None]
Trainer = Callable[[TrainOptions, OnValidation], dict]  # trains one trial's adapter, returns train()'s record


@dataclass(frozen=True)
class Trained:
    """One finished trial: `train()`'s record of the adapter it kept, its wall seconds and peak memory."""

    record: dict
    seconds: float
    peak_bytes: int


@dataclass(frozen=True)
class Tuned:
    """What a study hands the cell: the best trial's training, and the `tuning` block of its result."""

    best: Trained
    summary: dict


def not_tuned(settings: dict[str, Any]) -> str | None:
    """Why a cell with these settings is not tuned (its method has nothing to search), or None."""
    return NOT_TUNED.get(settings["method"])


def untuned_summary(cell: Cell, reason: str) -> dict:
    return {"tuned": False, "asked": cell.tune, "reason": reason}


def search_space(settings: dict[str, Any]) -> dict[str, BaseDistribution]:
    """The distribution of each setting a cell's trials draw: the learning rate, then the method's size if any."""
    lr = settings.get("lr", _default("lr"))
    space: dict[str, BaseDistribution] = {"lr": FloatDistribution(lr / LR_SPAN, lr * LR_SPAN, log=True)}
    if settings["method"] in SIZES:
        name, values = SIZES[settings["method"]]
        space[name] = CategoricalDistribution(values)
    return space


def own_params(settings: dict[str, Any], space: dict[str, BaseDistribution]) -> dict[str, Any]:
    """The cell's own values of the searched settings that lie in the space: the first trial's."""
    own = {name: settings.get(name, _default(name)) for name in space}
    return {name: value for name, value in own.items() if _within(space[name], value)}


def suggest(trial: optuna.Trial, space: dict[str, BaseDistribution]) -> dict[str, Any]:
    """One value per setting of `space`, as the study's sampler picks them for `trial`."""
    params = {}
    for name, distribution in space.items():
        if isinstance(distribution, FloatDistribution):
            params[name] = trial.suggest_float(name, distribution.low, distribution.high, log=distribution.log)
        else:
            params[name] = trial.suggest_categorical(name, distribution.choices)
    return params


def new_study(cell: Cell, direction: str) -> optuna.Study:
    """An in-memory study: TPE seeded with the cell's seed, median pruning; `direction` is "min" or "max"."""
    startup = min(max(cell.tune // 2, TPE_STARTUP[0]), TPE_STARTUP[1])
    sampler = optuna.samplers.TPESampler(seed=cell.seed, n_startup_trials=startup)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=PRUNE_AFTER, n_warmup_steps=0)
    goal = "minimize" if direction == "min" else "maximize"
    return optuna.create_study(direction=goal, sampler=sampler, pruner=pruner)


def tune_cell(cell: Cell, directory: Path, trainer: Trainer | None = None) -> Tuned:
    """Run the cell's study (`cell.tune` trials under `directory/trials/<number>/adapter`) and move the best trial's
    adapter to `directory/adapter`. A trial that raises is recorded as failed and the study goes on; raises
    RuntimeError when no trial completes."""
    from speechpeft.tasks.catalog import TASKS

    metric, direction = TASKS.get(cell.task).selection
    space, study = search_space(cell.settings), new_study(cell, direction)
    study.enqueue_trial(own_params(cell.settings, space))
    objective = Objective(cell, space, metric, directory / "trials", trainer or _train)
    study.optimize(objective, n_trials=cell.tune, catch=(Exception,), gc_after_trial=True)
    summary = summarize(study, cell, metric, direction, space)
    if summary["best"] is None:
        raise RuntimeError(f"tuning {cell.id}: none of its {cell.tune} trials completed ({summary['pruned']} "
                           f"pruned, {summary['failed']} failed; first failure: {_first_error(summary)})")  # fmt: skip
    number = summary["best"]["number"]
    _keep_best(directory, number)
    return Tuned(objective.finished[number], summary)


@dataclass
class Objective:
    """Optuna's objective for one cell: train a trial, return its best validation score (`metric`)."""

    cell: Cell
    space: dict[str, BaseDistribution]
    metric: str
    trials_dir: Path
    trainer: Trainer
    finished: dict[int, Trained] = field(default_factory=dict)  # trial number -> what it trained

    def __call__(self, trial: optuna.Trial) -> float:
        options = cell_options(self.cell, suggest(trial, self.space), self.trials_dir / str(trial.number) / "adapter")
        began = time.perf_counter()
        try:
            with PeakMemory() as memory:
                record = self.trainer(options, reporter(trial, self.metric, options.steps))
            value = _selected(record, self.metric)
        except optuna.TrialPruned:
            raise
        except Exception as error:  # Optuna marks the trial failed (`catch`); the message goes in result.json
            trial.set_user_attr("error", f"{type(error).__name__}: {error}".splitlines()[0])
            raise
        self.finished[trial.number] = Trained(record, round(time.perf_counter() - began, 1), memory.peak_bytes)
        return value


def cell_options(cell: Cell, params: dict[str, Any], out: Path) -> TrainOptions:
    """The cell's `speechpeft train` options, with `params` (a trial's values) in place of its own."""
    return TrainOptions(task=cell.task, out=out, dataset=str(cell.corpus), backbone=cell.backbone, seed=cell.seed,
                        **{**cell.settings, **params})  # fmt: skip


def reporter(trial: optuna.Trial, metric: str, last_step: int) -> OnValidation:
    """`train`'s validation callback: report the score, and stop the run when the pruner says so; never at the last
    step, where the run is done and stopping it would only throw it away."""

    def report(step: int, metrics: dict[str, float]) -> None:
        trial.report(metrics[metric], step)
        if step < last_step and trial.should_prune():
            raise optuna.TrialPruned(f"{metric} {metrics[metric]:.4g} at step {step}: worse than the median of the "
                                     "earlier trials there")  # fmt: skip

    return report


def summarize(study: optuna.Study, cell: Cell, metric: str, direction: str, space: dict) -> dict:
    """The `tuning` block of a cell's result: counts by state, the search, the best trial and every trial."""
    trials = [trial_record(t) for t in study.trials]
    counts = Counter(t["state"] for t in trials)
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    best = study.best_trial if done else None
    return {"tuned": True, "asked": cell.tune, **{state: counts[state] for state in STATES.values()},
            "metric": metric, "direction": direction, "split": "validation",
            "sampler": f"TPE (seed {cell.seed})", "pruner": f"median (after {PRUNE_AFTER} trials)",
            "space": {name: _described(d) for name, d in space.items()},
            "best": None if best is None else {"number": best.number, "params": best.params, "validation": best.value},
            "trials": trials}  # fmt: skip


def trial_record(trial: FrozenTrial) -> dict:
    """A trial as result.json keeps it: its state, values, validation score (a completed trial's best, a pruned
    one's where it stopped), the score at each validation step, its wall seconds and a failed one's error."""
    seconds = trial.duration.total_seconds() if trial.duration else None
    return {"number": trial.number, "state": STATES.get(trial.state, trial.state.name.lower()),
            "params": trial.params, "validation": trial.value,
            "intermediate": {str(step): value for step, value in sorted(trial.intermediate_values.items())},
            "seconds": None if seconds is None else round(seconds, 1),
            **({"error": trial.user_attrs["error"]} if "error" in trial.user_attrs else {})}  # fmt: skip


def _selected(record: dict, metric: str) -> float:
    """The best validation score of a trained trial, the one its kept adapter had."""
    validation = record.get("validation") or {}
    if metric not in validation:
        raise RuntimeError(f"the trial kept no validated adapter: no validation {metric} to compare it by")
    return validation[metric]


def _train(options: TrainOptions, on_validation: OnValidation) -> dict:
    from speechpeft.train import train

    return train(options, progress=False, on_validation=on_validation)


def _keep_best(directory: Path, number: int) -> None:
    adapter = directory / "adapter"
    if adapter.exists():
        shutil.rmtree(adapter)
    (directory / "trials" / str(number) / "adapter").rename(adapter)
    shutil.rmtree(directory / "trials")


def _default(name: str) -> Any:
    return next(f.default for f in dataclasses.fields(TrainOptions) if f.name == name)


def _within(distribution: BaseDistribution, value: Any) -> bool:
    if isinstance(distribution, FloatDistribution):
        return distribution.low <= value <= distribution.high
    return value in distribution.choices


def _described(distribution: BaseDistribution) -> dict:
    if isinstance(distribution, FloatDistribution):
        return {"low": distribution.low, "high": distribution.high, "log": distribution.log}
    return {"choices": list(distribution.choices)}


def _first_error(summary: dict) -> str:
    return next((t["error"] for t in summary["trials"] if t.get("error")), "none recorded")
