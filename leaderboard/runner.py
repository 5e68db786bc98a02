"""Run a grid: build its corpora, run every unfinished cell in worker processes, then write the report.

Resumable: a cell whose `result.json` says "ok", for the same settings and corpus, is skipped, so a killed
run loses at most the cells that were running; failed cells are run again unless `retry_failed` is off, and a
result for other settings (an edited preset) is run again, as is one scored under another version of the text
normaliser (`leaderboard.normalize`: its WER or CER would not compare with the others'). Each cell runs in a
fresh process, forked from a server that imported the libraries once: no state or memory carries from one cell
to the next, so peak memory is the cell's own. A crash that kills a process (out of memory, a segfault in native
code) breaks the pool: every cell running at that moment is recorded as failed ("WorkerDied", retried on the next
run), a new pool starts, and the grid goes on. Torch threads are the machine's cores shared among the workers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from speechpeft.leaderboard.cell import (
    RESULT,
    SCHEMA,
    cell_threads,
    describe,
    result_path,
    run_cell,
    same_cell,
    write_json,
)
from speechpeft.leaderboard.grid import Cell, Grid
from speechpeft.leaderboard.normalize import NORMALIZER
from speechpeft.leaderboard.progress import Board


@dataclass
class RunOptions:
    out: Path
    workers: int = 1
    retry_failed: bool = True
    live: bool | None = None  # None: a live table on a terminal, one line per event otherwise
    executor: str = "local"  # "local": worker processes here; "ray": Ray tasks (`leaderboard.ray_executor`)
    address: str | None = None  # the Ray cluster to join (None: $RAY_ADDRESS, else a local Ray for this run)


def build_corpora(grid: Grid, quiet: bool = False) -> None:
    """Synthesise each corpus the grid's tasks use, unless it is there (`speechpeft data synth` resumes)."""
    used = {spec["corpus"] for spec in grid.tasks.values()}
    for name in used:
        corpus = grid.corpora[name]
        path = corpus.path(grid.data_dir)
        if (path / "dataset_dict.json").exists():
            continue
        print(f"building corpus {name} in {path}: speechpeft data synth {corpus.synth}", flush=True)
        command = [sys.executable, "-m", "speechpeft.cli", "data", "synth", *corpus.argv(), "--out", str(path)]
        subprocess.run([*command, *(["--quiet"] if quiet else [])], check=True)


def pending(cells: list[Cell], out: Path, retry_failed: bool) -> tuple[list[Cell], list[dict]]:
    """(cells to run, results already there): "ok" results are kept; failed ones too unless retried. A result
    scored under another normaliser is run again (said on stderr, with how many)."""
    todo, done, stale = [], [], 0
    for cell in cells:
        result = read_result(result_path(out, cell))
        same = same_cell(result, cell)
        stale += same and not scored_now(result)
        if same and scored_now(result) and (result["status"] == "ok" or not retry_failed):
            done.append(result)
        else:
            todo.append(cell)
    if stale:
        print(f"{stale} of {len(cells)} cells were scored under a text normaliser other than {NORMALIZER}: they "
              "count as not done, to run again", file=sys.stderr, flush=True)  # fmt: skip
    return todo, done


def scored_now(result: dict) -> bool:
    """Whether `result`'s scores went through today's normaliser, or through none (classification, a failure)."""
    return (result.get("run") or {}).get("normalizer") in (None, NORMALIZER)


def read_result(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def run_grid(grid: Grid, options: RunOptions) -> list[dict]:
    """Run the grid's unfinished cells, `options.workers` at a time, with a progress board; results in order."""
    cells = grid.cells()
    todo, done = pending(cells, options.out, options.retry_failed)
    with Board(cells, done, options.workers, options.live) as board:
        if todo and options.executor == "ray":
            from speechpeft.leaderboard.ray_executor import run_on_ray

            fresh = run_on_ray(todo, options, done, board)
        else:
            fresh = _run_all(todo, options, board) if todo else []
    by_id = {r["id"]: r for r in [*done, *fresh]}
    return [by_id[c.id] for c in cells if c.id in by_id]


def all_results(out: Path, first: list[dict]) -> list[dict]:
    """Every cell result under `out`: `first` (this grid's, in order), then those of earlier runs with other flags
    (`--tasks`, `--seeds`), so a narrowed rerun does not drop the rest from the report; not those scored under an
    other normaliser, whose scores would not compare (said on stderr, with how many)."""
    seen = {r["id"] for r in first}
    found = (read_result(p) for p in sorted(out.glob(f"cells/**/{RESULT}")))
    others = [r for r in found if r is not None and r["id"] not in seen]
    stale = [r for r in others if not scored_now(r)]
    if stale:
        print(f"left out of the report, scored under a text normaliser other than {NORMALIZER}: "
              + ", ".join(r["id"] for r in stale), file=sys.stderr, flush=True)  # fmt: skip
    return [*first, *(r for r in others if scored_now(r))]


def _run_all(todo: list[Cell], options: RunOptions, board: Board) -> list[dict]:
    threads = cell_threads(options.workers)
    queue, results = list(todo), []
    while queue:
        with ProcessPoolExecutor(options.workers, mp_context=_context(), max_tasks_per_child=1) as pool:
            running: dict[Future, Cell] = {}
            try:
                while queue or running:
                    while queue and len(running) < options.workers:
                        cell = queue[0]
                        _clear(options.out, cell)
                        running[pool.submit(run_cell, cell, options.out, threads)] = queue.pop(0)
                        board.started(cell)
                    finished, _ = wait(running, timeout=1.0, return_when=FIRST_COMPLETED)
                    board.refresh()
                    for future in finished:
                        results.append(_collect(future, running.pop(future), options.out, board))
            except BrokenProcessPool:  # a worker died: fail the cells it held, start a fresh pool
                for future, cell in running.items():
                    results.append(_collect(future, cell, options.out, board))
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM: stop the running cells too (they rerun next time)
                _terminate(pool)
                raise
    return results


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Kill the pool's workers now (`shutdown` would wait for their cells; Python 3.11 has no public way)."""
    for process in list(getattr(pool, "_processes", {}).values()):
        process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def _context():
    """Fresh processes forked from a server that has already imported torch, transformers and the task code:
    a clean process per cell without paying those imports (seconds) per cell. Nothing in the server has
    started threads or touched CUDA, so forking it is safe."""
    context = get_context("forkserver")
    context.set_forkserver_preload(["speechpeft.leaderboard.cell", "speechpeft.train", "speechpeft.evaluation"])
    return context


def _collect(future: Future, cell: Cell, out: Path, board: Board) -> dict:
    try:
        result = future.result()
    except BaseException as error:  # the worker process died: nothing of the cell was recorded
        message = f"worker process died while running the cell ({type(error).__name__}: {error})"
        result = {"schema": SCHEMA, **describe(cell), "status": "failed", "error": {"type": "WorkerDied",
                  "message": message, "traceback": ""}}  # fmt: skip
        write_json(result_path(out, cell), result)
    board.finished(cell, result)
    return result


def _clear(out: Path, cell: Cell) -> None:
    """Remove what an unfinished attempt left (a partial adapter, an old failure) before running again."""
    import shutil

    directory = out / "cells" / cell.id
    if directory.exists():
        shutil.rmtree(directory)
