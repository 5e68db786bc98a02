"""`speechpeft leaderboard --tune N`: the search space per method, pruning and determinism with the real Optuna (a
fake trainer stands in for training, with a learning-rate curve known in advance), the results' tuning columns,
and one quick cell tuned end to end."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from speechpeft.cli import main
from speechpeft.leaderboard.grid import Cell
from speechpeft.leaderboard.results import rows, write_csv
from speechpeft.leaderboard.tune import (
    LR_SPAN,
    not_tuned,
    own_params,
    search_space,
    tune_cell,
)
from speechpeft.train_options import TrainOptions

BEST_LR = 3e-3  # the fake trainer's best learning rate: the further a trial's is, the worse its WER


def _cell(method: str = "lora", seed: int = 0, tune: int = 8, steps: int = 40, **settings) -> Cell:
    settings = {"method": method, "lr": BEST_LR, "steps": steps, "eval_every": 10, **settings}
    return Cell("asr", "speechpeft/tiny-whisper", method, seed, Path("data/c"), settings, tune=tune)


class FakeTrainer:
    """Trains nothing: validates every `eval_every` steps with WER = |log10(lr / BEST_LR)| + 1 / step, writes an
    adapter file, and remembers what each trial asked and the steps it reached."""

    def __init__(self, fail_trials: tuple[int, ...] = ()) -> None:
        self.fail_trials, self.options, self.steps = fail_trials, {}, {}

    def __call__(self, options: TrainOptions, on_validation) -> dict:
        number = int(options.out.parent.name)  # trials/<number>/adapter
        self.options[number], self.steps[number] = options, []
        if number in self.fail_trials:
            raise RuntimeError(f"boom in trial {number}")
        options.out.mkdir(parents=True)
        (options.out / "weights.safetensors").write_text(str(number))
        best = math.inf
        for step in range(options.eval_every, options.steps + 1, options.eval_every):
            wer = abs(math.log10(options.lr / BEST_LR)) + 1 / step
            best = min(best, wer)
            self.steps[number].append(step)
            on_validation(step, {"wer": wer, "cer": wer / 2})
        return {"validation": {"wer": best}, "steps_run": options.steps, "trial": number}


def _distance(lr: float) -> float:
    return abs(math.log10(lr / BEST_LR))


# the search space


@pytest.mark.parametrize(
    ("method", "searched"),
    [("lora", {"lr", "rank"}), ("adalora", {"lr", "rank"}), ("prefix", {"lr", "prefix_length"}),
     ("bottleneck", {"lr", "reduction_factor"}), ("full", {"lr"})],
)  # fmt: skip
def test_each_method_searches_the_learning_rate_and_its_own_size(method: str, searched: set[str]) -> None:
    space = search_space({"method": method, "lr": 2e-4})
    assert set(space) == searched and not_tuned({"method": method}) is None
    assert (space["lr"].low, space["lr"].high, space["lr"].log) == pytest.approx((2e-5, 2e-3, True))
    sizes = {"rank": (4, 8, 16), "prefix_length": (8, 16, 32), "reduction_factor": (8, 16, 32)}
    assert all(tuple(space[name].choices) == sizes[name] for name in searched - {"lr"})


def test_frozen_has_nothing_to_tune_and_the_rate_defaults_to_train_s_own() -> None:
    assert "nothing to search" in not_tuned({"method": "frozen"})
    lr = search_space({"method": "lora"})["lr"]  # no lr in the settings: TrainOptions' default, 1e-3
    assert (lr.low, lr.high) == pytest.approx((1e-3 / LR_SPAN, 1e-3 * LR_SPAN))


def test_the_first_trial_is_the_cell_s_own_settings_where_they_lie_in_the_space() -> None:
    settings = {"method": "adalora", "lr": 3e-3, "rank": 12}  # rank 12 is not one of 4, 8, 16: sampled instead
    assert own_params(settings, search_space(settings)) == {"lr": 3e-3}
    settings = {"method": "prefix", "lr": 3e-3}  # the default prefix length, 16
    assert own_params(settings, search_space(settings)) == {"lr": 3e-3, "prefix_length": 16}


# the study, with the real Optuna


def test_bad_learning_rates_are_pruned_and_the_best_trial_s_adapter_is_kept(tmp_path: Path) -> None:
    trainer = FakeTrainer()
    tuned = tune_cell(_cell(tune=8), tmp_path, trainer)
    summary, trials = tuned.summary, tuned.summary["trials"]
    assert (summary["tuned"], summary["asked"], len(trials)) == (True, 8, 8)
    assert summary["completed"] + summary["pruned"] + summary["failed"] == 8 and summary["failed"] == 0
    assert trials[0]["params"] == {"lr": BEST_LR, "rank": 8}  # the cell's own settings first
    pruned = [t for t in trials if t["state"] == "pruned"]
    assert pruned, "some of 8 trials around a known best rate should be stopped early"
    for trial in pruned:  # stopped at a validation before the last, worse than the earlier trials' median there
        step = max(trainer.steps[trial["number"]])
        assert step < 40 and list(trial["intermediate"]) == [str(s) for s in trainer.steps[trial["number"]]]
        earlier = sorted(t["intermediate"][str(step)] for t in trials[: trial["number"]] if str(step) in
                         t["intermediate"])  # fmt: skip
        assert trial["intermediate"][str(step)] > earlier[(len(earlier) - 1) // 2]
        assert trial["validation"] == trial["intermediate"][str(step)] and trial["seconds"] is not None
    done = [t for t in trials if t["state"] == "completed"]
    assert all(trainer.steps[t["number"]] == [10, 20, 30, 40] for t in done)
    best = min(done, key=lambda t: t["validation"])
    assert summary["best"] == {"number": best["number"], "params": best["params"], "validation": best["validation"]}
    assert best["validation"] == pytest.approx(_distance(best["params"]["lr"]) + 1 / 40)
    assert tuned.best.record["trial"] == best["number"] and tuned.best.seconds >= 0
    assert (tmp_path / "adapter" / "weights.safetensors").read_text() == str(best["number"])
    assert not (tmp_path / "trials").exists()  # the other trials' adapters are gone; result.json keeps them
    assert (summary["metric"], summary["direction"], summary["split"]) == ("wer", "min", "validation")


def test_a_run_is_never_stopped_at_its_last_validation(tmp_path: Path) -> None:
    summary = tune_cell(_cell(tune=6, steps=10), tmp_path, FakeTrainer()).summary  # one validation, at the end
    assert summary["pruned"] == 0 and summary["completed"] == 6
    assert max(_distance(t["params"]["lr"]) for t in summary["trials"]) > 0.3  # bad rates there, run to the end


def test_the_same_seed_asks_the_same_trials_and_another_seed_others(tmp_path: Path) -> None:
    def params(seed: int, run: str) -> list[dict]:
        return [
            t["params"] for t in tune_cell(_cell(seed=seed, tune=4), tmp_path / run, FakeTrainer()).summary["trials"]
        ]

    first = params(0, "a")
    assert first == params(0, "b")
    assert first[1:] != params(1, "c")[1:]  # the first trial is the cell's own settings under any seed
    assert len({json.dumps(p, sort_keys=True) for p in first}) == 4


def test_a_failing_trial_is_recorded_and_the_study_goes_on(tmp_path: Path) -> None:
    summary = tune_cell(_cell(tune=3), tmp_path, FakeTrainer(fail_trials=(1,))).summary
    assert summary["failed"] == 1 and summary["completed"] + summary["pruned"] == 2
    failed = summary["trials"][1]
    assert failed["state"] == "failed" and failed["error"] == "RuntimeError: boom in trial 1"
    assert summary["best"]["number"] in (0, 2)


def test_a_cell_with_no_completed_trial_fails_naming_the_first_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"none of its 3 trials completed \(0 pruned, 3 failed; first failure: "
                       r"RuntimeError: boom in trial 0\)"):  # fmt: skip
        tune_cell(_cell(tune=3), tmp_path, FakeTrainer(fail_trials=(0, 1, 2)))


# results: rows and results.csv


def _result(variant: str, tuning: dict | None, seed: int = 0) -> dict:
    evaluation = {"metrics": {"wer": {"value": 0.2, "low": 0.1, "high": 0.3}}, "groups": {}, "split": "test",
                  "utterances": 10, "latency": {"rtfx": 5.0, "median_seconds": 0.1}}  # fmt: skip
    training = {"trainable_parameters": 10, "adapter_bytes": 40, "seconds": 1.0, "steps": 8, "validation": {}}
    return {"id": f"asr/x/{variant}/seed-{seed}", "task": "asr", "backbone": "x", "variant": variant,
            "method": variant, "seed": seed, "status": "ok", "training": training, "evaluation": evaluation,
            **({"tuning": tuning} if tuning else {})}  # fmt: skip


TUNED = {"tuned": True, "asked": 4, "completed": 3, "pruned": 1, "failed": 0, "metric": "wer",
         "best": {"number": 2, "params": {"lr": 0.0021, "rank": 16}, "validation": 0.18}, "trials": []}  # fmt: skip
UNTUNED = {"tuned": False, "asked": 4, "reason": "nothing to search"}


def test_rows_carry_each_seed_s_study_and_the_csv_its_trials(tmp_path: Path) -> None:
    results = [_result("lora", TUNED), _result("lora", TUNED, seed=1), _result("frozen", UNTUNED)]
    lora, frozen = rows(results)
    assert lora["tuning"] == [TUNED, TUNED] and frozen["tuning"] == [UNTUNED]
    with write_csv(results, tmp_path / "results.csv").open() as handle:
        lines = list(csv.DictReader(handle))
    assert (lines[0]["tuned"], lines[0]["tune_trials"], lines[0]["tune_pruned"]) == ("True", "4", "1")
    assert json.loads(lines[0]["tune_best_params"]) == {"lr": 0.0021, "rank": 16}
    assert (lines[2]["tuned"], lines[2]["tune_trials"], lines[2]["tune_best_params"]) == ("False", "4", "")
    untuned = [_result("lora", None)]
    assert "tuning" not in rows(untuned)[0]
    with write_csv(untuned, tmp_path / "plain.csv").open() as handle:
        assert not any(name.startswith("tune") for name in csv.DictReader(handle).fieldnames)


# end to end


@pytest.mark.slow
def test_quick_cell_tuned_with_two_trials_scores_its_best_trial_on_the_test_split(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the preset's corpora go to ./data/leaderboard
    flags = ["--tasks", "asr", "--methods", "lora", "frozen", "--tune", "2", "--no-live"]
    assert main(["leaderboard", "--quick", "--out", "out", *flags]) == 0
    cells = tmp_path / "out" / "cells" / "asr" / "speechpeft--tiny-whisper"
    lora = json.loads((cells / "lora" / "seed-0" / "result.json").read_text())
    tuning = lora["tuning"]
    assert (lora["status"], lora["tune"], tuning["tuned"], tuning["asked"]) == ("ok", 2, True, 2)
    assert [t["number"] for t in tuning["trials"]] == [0, 1] and tuning["completed"] >= 1
    assert all(set(t["params"]) == {"lr", "rank"} and t["intermediate"] for t in tuning["trials"])
    best = tuning["trials"][tuning["best"]["number"]]
    assert best["state"] == "completed" and best["validation"] == tuning["best"]["validation"]
    assert lora["training"]["validation"]["wer"] == best["validation"]  # the training block is the best trial's
    assert lora["run"]["train_options"]["lr"] == best["params"]["lr"]
    assert lora["run"]["train_options"]["rank"] == best["params"]["rank"]
    wer = lora["evaluation"]["metrics"]["wer"]
    assert lora["evaluation"]["split"] == "test" and wer["low"] <= wer["value"] <= wer["high"]
    assert (cells / "lora" / "seed-0" / "adapter").is_dir() and lora["training"]["adapter_bytes"] > 0
    assert not (cells / "lora" / "seed-0" / "trials").exists()
    frozen = json.loads((cells / "frozen" / "seed-0" / "result.json").read_text())
    assert frozen["status"] == "ok" and frozen["tuning"]["tuned"] is False and "evaluation" in frozen
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| tuned | best trial |" in report and "Tuned on validation data (lora): 2 trials per cell" in report
    assert "Not tuned: frozen" in report and "2 trials" in report
