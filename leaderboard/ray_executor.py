"""Run the grid's cells as Ray tasks: `speechpeft leaderboard --executor ray [--address ADDR]`.

Each cell is one Ray task (`ray.remote`, https://docs.ray.io/en/latest/ray-core/tasks.html) declaring what it
needs: the CPUs it trains on (the same torch thread count the local executor gives it, so the same seeds give the
same numbers), a GPU when the cluster has them, and memory (the largest peak a finished cell of the same task and
backbone recorded, with a margin; `DEFAULT_MEMORY` before any has). Each task runs in a fresh worker process
(`max_calls=1`), as a local cell does, from the driver's working directory, so the grid's relative paths (corpora,
`--out`) mean the same on every node: on a cluster they must lie on a filesystem every node mounts at that path.

The driver keeps as many cells in flight as the cluster has room for, so a cell starts when it is submitted and
the progress display is the local one. A worker that dies (killed, out of memory, its node lost) is retried once
(`MAX_RETRIES`) from a clean cell directory; if it dies again the cell is recorded as failed ("WorkerDied") and the
grid goes on; the next run retries it. The driver writes each cell's `result.json` from what the task returned,
so the report is complete even where the workers' disks are not shared (their adapters and logs stay there).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from speechpeft.errors import InputError
from speechpeft.leaderboard.cell import SCHEMA, cell_threads, describe, result_path, run_cell, write_json
from speechpeft.leaderboard.grid import Cell
from speechpeft.leaderboard.progress import Board

DEFAULT_MEMORY = 3 * 2**30  # bytes a cell declares before a finished cell of its kind has measured its peak
MEMORY_MARGIN = 1.25  # declared memory = recorded peak x this
MAX_RETRIES = 1  # a cell whose worker process dies is run once more before it is recorded as failed
STARTS = 3  # attempts to start a local Ray (its raylet must register within 30 s, hard-coded in Ray)


def run_on_ray(todo: list[Cell], options: Any, done: list[dict], board: Board) -> list[dict]:
    """Run `todo` as Ray tasks (`options`: the runner's RunOptions: out, workers, address); results as they finish.

    Raises InputError when Ray is not installed or the cluster cannot be reached; KeyboardInterrupt (Ctrl-C,
    SIGTERM) cancels the running tasks and re-raises."""
    ray = _ray()
    started_here = _connect(ray, options.address)
    try:
        return _run(ray, todo, options, done, board)
    finally:
        if started_here:
            ray.shutdown()


def _ray():
    try:
        import ray
    except ImportError:
        raise InputError("--executor ray needs Ray: pip install 'speechpeft[ray]', or leave out --executor") from None
    return ray


def _connect(ray, address: str | None) -> bool:
    """Join `address` (else $RAY_ADDRESS) or start a local Ray for this run; True when started here."""
    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        return False
    for attempt in range(1, STARTS + 1):
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
            break
        except ConnectionError as error:
            raise InputError(f"--executor ray: cannot reach the Ray cluster at {address}: {error}") from None
        except Exception as error:  # Ray gives its raylet 30 s to start, which a busy machine can miss
            if "timed out during startup" not in str(error) or attempt == STARTS:
                raise
            ray.shutdown()
            print(f"Ray did not start in time (attempt {attempt} of {STARTS}); starting it again", file=sys.stderr)
    return address is None


def _run(ray, todo: list[Cell], options: Any, done: list[dict], board: Board) -> list[dict]:
    threads = cell_threads(options.workers)
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    task = ray.remote(num_cpus=threads, num_gpus=gpus, max_calls=1, max_retries=MAX_RETRIES)(_cell_task)
    queue, running, results = list(todo), {}, []
    try:
        while queue or running:
            while queue and len(running) < _slots(ray, threads, gpus):
                cell = queue.pop(0)
                memory = min(memory_for(cell, [*done, *results]), int(ray.cluster_resources().get("memory", 2**40)))
                running[task.options(memory=memory).remote(cell, options.out, threads, os.getcwd())] = cell
                board.started(cell)
            finished, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
            board.refresh()
            for ref in finished:
                results.append(_collect(ray, ref, running.pop(ref), options.out, board))
    except KeyboardInterrupt:
        for ref in running:
            ray.cancel(ref, force=True)
        raise
    return results


def _slots(ray, threads: int, gpus: int) -> int:
    """Cells in flight: as many as the cluster's CPUs (and GPUs, when cells take one) hold, at least one."""
    resources = ray.cluster_resources()
    room = int(resources.get("CPU", 1) // threads)
    if gpus:
        room = min(room, int(resources.get("GPU", 0)))
    return max(1, room)


def memory_for(cell: Cell, results: list[dict]) -> int:
    """Bytes of memory `cell` declares: the largest peak a finished cell of its task and backbone recorded, with
    `MEMORY_MARGIN`; `DEFAULT_MEMORY` when none has."""
    peaks = [
        (r.get("training") or {}).get("peak_memory_bytes") or 0
        for r in results
        if r.get("task") == cell.task and r.get("backbone") == cell.backbone
    ]
    return int(max(peaks) * MEMORY_MARGIN) if any(peaks) else DEFAULT_MEMORY


def _cell_task(cell: Cell, out: Path, threads: int, cwd: str) -> dict:
    """One cell in a Ray worker: from the driver's directory, a clean cell directory, then `run_cell`."""
    import shutil

    if not Path(cwd).is_dir():
        raise InputError(f"the grid's directory {cwd} does not exist on this node: run the grid from a filesystem "
                         "every node mounts at the same path")  # fmt: skip
    os.chdir(cwd)
    shutil.rmtree(out / "cells" / cell.id, ignore_errors=True)  # what a killed attempt left
    return run_cell(cell, out, threads)


def _collect(ray, ref, cell: Cell, out: Path, board: Board) -> dict:
    """The cell's result, written by the driver; a task whose worker died (after its retry) is recorded failed."""
    try:
        result = ray.get(ref)
    except ray.exceptions.RayTaskError as error:  # raised by the task before the cell ran (its directory)
        result = _failed(cell, type(error.cause).__name__, str(error.cause), str(error))
    except Exception as error:  # WorkerCrashedError, NodeDiedError, TaskCancelledError: the process is gone
        reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        result = _failed(cell, "WorkerDied", f"Ray worker died while running the cell ({reason})", "")
    write_json(result_path(out, cell), result)
    board.finished(cell, result)
    return result


def _failed(cell: Cell, kind: str, message: str, trace: str) -> dict:
    return {"schema": SCHEMA, **describe(cell), "status": "failed",
            "error": {"type": kind, "message": message, "traceback": trace}}  # fmt: skip
