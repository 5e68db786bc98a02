"""`speechpeft leaderboard`: corpora, grid, report — the hub's main job, in one command.

Writes under `--out`: `cells/<task>/<backbone>/<variant>/seed-<k>/` (the adapter, `predictions.jsonl`,
`result.json`, `log.txt`), `results.csv` (one line per cell), `grid.json` (the resolved cells and settings),
and the report (`report.md`, `report.html`, the plots). With `--publish OWNER/NAME` the results table then goes
to a Hub dataset repo (`leaderboard.publish`), recorded in `published.json`.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from speechpeft.errors import InputError
from speechpeft.leaderboard.grid import Grid, load_grid, preset_path
from speechpeft.leaderboard.publish import check_target, public_command, publish

Executor = Literal["local", "ray"]


@dataclass(frozen=True)
class LeaderboardOptions:
    config: Path | None = None  # a TOML preset; None: the default preset, or the quick one with `quick`
    quick: bool = False
    out: Path | None = None  # default: see `out_dir`
    tasks: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    backbones: tuple[str, ...] = ()
    seeds: int | None = None
    workers: int | None = None  # None: the preset's
    executor: Executor = "local"  # where cells run: worker processes here, or Ray tasks (`leaderboard.ray_executor`)
    address: str | None = None  # with executor "ray": the cluster to join (None: $RAY_ADDRESS, else a local Ray)
    tune: int = 0  # trials per cell on validation data (`leaderboard.tune`); 0: no tuning
    retry_failed: bool = True
    report_only: bool = False
    dry_run: bool = False
    live: bool | None = None
    publish: str | None = None  # a Hub dataset repo id, OWNER/NAME, to upload the results table and its card to
    private: bool = False  # create the dataset repo private (an existing repo keeps its visibility)
    token: str | None = field(default=None, repr=False)  # None: HF_TOKEN, else the saved login; never shown
    endpoint: str | None = None  # None: HF_ENDPOINT, else https://huggingface.co

    def __post_init__(self) -> None:
        if self.config is not None and self.quick:
            raise InputError("--quick picks the quick preset: leave out --config, or drop --quick")
        if not self.publish and (self.private or self.token or self.endpoint):
            raise InputError("--private, --token and --endpoint go with --publish: add --publish OWNER/NAME, "
                             "or drop them")  # fmt: skip
        if (self.workers is not None and self.workers < 1) or (self.seeds is not None and self.seeds < 1):
            raise InputError("--workers and --seeds must be at least 1")
        if self.tune < 0:
            raise InputError(f"--tune {self.tune}: the number of trials per cell must be 0 (no tuning) or more")
        if self.address and self.executor != "ray":
            raise InputError("--address names a Ray cluster: add --executor ray, or drop --address")

    @property
    def out_dir(self) -> Path:
        """--out, else runs/leaderboard (default preset), runs/leaderboard-quick, or runs/leaderboard-CONFIG_STEM."""
        if self.out:
            return self.out
        return Path("runs/leaderboard" + ("-quick" if self.quick else f"-{self.config.stem}" if self.config else ""))


def grid_of(options: LeaderboardOptions) -> Grid:
    """The preset (or --config) narrowed by the flags."""
    grid = load_grid(options.config or preset_path("quick" if options.quick else "default"))
    grid = grid.narrowed(options.tasks, options.methods, options.backbones, options.seeds)
    return dataclasses.replace(grid, tune=options.tune) if options.tune else grid


def run_leaderboard(options: LeaderboardOptions) -> int:
    """Build the corpora, run the unfinished cells, write the results and the report; 0 when every cell finished,
    1 when some failed (their errors are in the report and in their `result.json`). With `publish`, then upload
    the results table (`leaderboard.publish`); a target that cannot work fails before any cell runs."""
    from speechpeft.leaderboard.runner import RunOptions, all_results, build_corpora, pending, run_grid

    grid, out, began = grid_of(options), options.out_dir, time.perf_counter()
    signal.signal(signal.SIGTERM, _interrupt)  # `timeout`, a CI cancel: stop the workers as Ctrl-C does
    if options.dry_run:
        return _print_cells(grid, out, options.retry_failed)
    if options.publish:
        check_target(options)
    results = pending(grid.cells(), out, retry_failed=False)[1]  # --report-only: what is there, in grid order
    if not options.report_only:
        build_corpora(grid, quiet=options.live is False or not sys.stderr.isatty())
        _write_grid(grid, out)
        workers = options.workers or grid.workers
        run = RunOptions(out, workers, options.retry_failed, options.live, options.executor, options.address)
        results = run_grid(grid, run)
    results = all_results(out, results)
    if not results:
        raise InputError(f"no finished cells under {out}: run without --report-only first")
    meta = _meta(grid, results, None if options.report_only else time.perf_counter() - began)
    status = _report(results, meta, out)
    if options.publish:
        publish(options, results, meta)
    return status


def _interrupt(signum: int, frame) -> None:
    raise KeyboardInterrupt


def _meta(grid: Grid, results: list[dict], seconds: float | None) -> dict:
    """What the report's header and the published results.json say produced the results: when the report was
    written (`created`), when the cells ran and their compute (`_measured`), the machine and commit the cells
    recorded, this command's wall time in seconds (`wall_seconds`; None with --report-only, which measures
    nothing) and the command that measures the cells (`public_command`: without --report-only)."""
    return {"created": datetime.now(UTC).isoformat(timespec="seconds"), "preset": grid.name,
            "description": grid.description, **_measured(results), "machine": _machine(results),
            "git_commit": _commit(results), "wall_seconds": None if seconds is None else round(seconds, 1),
            "command": public_command(sys.argv[1:])}  # fmt: skip


def _measured(results: list[dict]) -> dict:
    """`measured_from` (the earliest cell start) and `measured_until` (the latest finish), ISO times, and
    `compute_seconds`, the cells' own durations summed; None for each when no cell recorded its times."""
    runs = [r.get("run") or {} for r in results]
    spans = [(datetime.fromisoformat(run["started"]), datetime.fromisoformat(run["finished"]))
             for run in runs if run.get("started") and run.get("finished")]  # fmt: skip
    if not spans:
        return {"measured_from": None, "measured_until": None, "compute_seconds": None}
    return {"measured_from": min(start for start, _ in spans).isoformat(),
            "measured_until": max(end for _, end in spans).isoformat(),
            "compute_seconds": round(sum((end - start).total_seconds() for start, end in spans), 1)}  # fmt: skip


def _report(results: list[dict], meta: dict, out: Path) -> int:
    from speechpeft.leaderboard.report import print_table
    from speechpeft.leaderboard.report_html import write_report
    from speechpeft.leaderboard.results import rows, write_csv

    csv_path = write_csv(results, out / "results.csv")
    table = rows(results)
    paths = write_report(table, meta, out)
    print_table(table)
    failed = [r for r in results if r["status"] != "ok"]
    print(f"\nreport: {paths['html']} (and {paths['markdown']}); every cell: {csv_path}", flush=True)
    if failed:
        print(f"{len(failed)} of {len(results)} cells failed: " + ", ".join(r["id"] for r in failed)
              + "; their errors are in the report; rerun the same command to retry them", file=sys.stderr)  # fmt: skip
    return 1 if failed else 0


def _machine(results: list[dict]) -> str | None:
    """The machines the cells recorded running on ("CPU, N cores[, GPU]", several joined by "; "); None if none."""
    machines = {f"{h['cpu']}, {h['cores']} cores" + (f", {h['gpu']}" if h.get("gpu") else "")
                for h in ((r.get("run") or {}).get("hardware") for r in results) if h}  # fmt: skip
    return "; ".join(sorted(machines)) or None


def _commit(results: list[dict]) -> str | None:
    commits = {r.get("run", {}).get("git_commit") for r in results} - {None}
    return ", ".join(sorted(commits)) or None


def _write_grid(grid: Grid, out: Path) -> None:
    cells = [{"id": c.id, **{k: str(v) if isinstance(v, Path) else v for k, v in asdict(c).items()}}
             for c in grid.cells()]  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    (out / "grid.json").write_text(json.dumps({"preset": grid.name, "cells": cells}, indent=1) + "\n")


def _print_cells(grid: Grid, out: Path, retry_failed: bool) -> int:
    from speechpeft.leaderboard.runner import pending

    todo, done = pending(grid.cells(), out, retry_failed)
    waiting = {c.id for c in todo}
    for cell in grid.cells():
        state = "to run" if cell.id in waiting else "done"
        print(f"{state:7} {cell.id}  {json.dumps(cell.settings)}")
    print(f"{len(todo)} to run, {len(done)} done, under {out}")
    return 0
