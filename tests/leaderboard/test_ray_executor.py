"""`speechpeft leaderboard --executor ray` on a local Ray cluster: the same table as the local executor, and a
worker killed mid-cell loses only that cell's attempt."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from speechpeft.cli import main
from speechpeft.errors import InputError
from speechpeft.leaderboard.grid import Cell
from speechpeft.leaderboard.ray_executor import DEFAULT_MEMORY, MEMORY_MARGIN, memory_for
from tests.leaderboard.grids import small_grid

# columns that measure the machine at that moment (time, memory, latency), not what the cell learned
TIMINGS = ("seconds", "memory", "latency", "rtfx", "started", "finished")


def _table(out: Path) -> list[dict]:
    with (out / "results.csv").open() as handle:
        return [{k: v for k, v in row.items() if not any(t in k for t in TIMINGS)} for row in csv.DictReader(handle)]


@pytest.mark.slow
def test_the_quick_grid_gives_the_same_table_through_ray_as_through_local_workers(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.chdir(tmp_path)  # the preset's corpora go to ./data/leaderboard
    flags = ["leaderboard", "--quick", "--tasks", "intent", "--methods", "frozen", "lora", "--workers", "1",
             "--no-live"]  # fmt: skip
    assert main([*flags, "--out", "local"]) == 0
    assert main([*flags, "--out", "ray", "--executor", "ray"]) == 0
    local, on_ray = _table(tmp_path / "local"), _table(tmp_path / "ray")
    assert len(local) == 2 and all(row["status"] == "ok" for row in local)
    assert float(local[1]["trainable_parameters"]) > 0 and local[1]["accuracy"] != ""  # lora trained, scored
    assert on_ray == local  # same seeds, same threads: the same numbers, to the last digit
    weights = [next((tmp_path / o).glob("cells/intent/*/lora/seed-0/adapter/*.safetensors")) for o in ("local", "ray")]
    assert weights[0].read_bytes() == weights[1].read_bytes()  # the same adapter, bit for bit
    assert (tmp_path / "ray" / "report.html").stat().st_size > 10_000
    tune = ["leaderboard", "--quick", "--tasks", "intent", "--methods", "lora", "--no-live", "--tune", "2"]
    assert main([*tune, "--out", "ray", "--executor", "ray"]) == 0  # a tuned cell on Ray: its result replaced
    tuned = json.loads(next((tmp_path / "ray").glob("cells/intent/*/lora/seed-0/result.json")).read_text())
    assert tuned["tune"] == 2 and tuned["tuning"]["completed"] + tuned["tuning"]["pruned"] == 2
    assert tuned["tuning"]["best"] is not None and "accuracy" in tuned["evaluation"]["metrics"]


def _cell_worker(run: psutil.Process) -> psutil.Process | None:
    """The Ray worker process running a cell (Ray titles it `ray::_cell_task`), if one has started."""
    for process in run.children(recursive=True):
        try:
            if "_cell_task" in " ".join(process.cmdline()):
                return process
        except psutil.Error:
            continue
    return None


@pytest.mark.slow
def test_a_ray_worker_killed_mid_cell_is_retried_and_the_grid_finishes(tmp_path, tiny_backbone_dirs):
    pytest.importorskip("ray")
    out, grid = tmp_path / "out", small_grid(tmp_path, tiny_backbone_dirs["wavlm"], steps=20, methods=("lora",))
    command = [sys.executable, "-m", "speechpeft.cli", "leaderboard", "--config", str(grid), "--out", str(out),
               "--executor", "ray", "--workers", "1", "--no-live"]  # fmt: skip
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = next(iter(out.glob("cells/intent/*/lora/seed-0")), None)
    deadline, worker = time.monotonic() + 300, None
    while time.monotonic() < deadline and (worker is None or log is None or not (log / "log.txt").exists()):
        time.sleep(0.2)
        worker, log = _cell_worker(psutil.Process(run.pid)), next(iter(out.glob("cells/intent/*/lora/seed-0")), None)
    assert worker is not None and not (log / "result.json").exists(), "the cell never started"
    worker.send_signal(signal.SIGKILL)  # mid-cell: its log is open, its result not yet written
    output, _ = run.communicate(timeout=600)
    assert run.returncode == 0, output[-3000:]
    result = json.loads((log / "result.json").read_text())
    assert result["status"] == "ok" and result["training"]["steps"] > 0  # run again, from the start, to the end
    assert not worker.is_running()


def test_a_worker_that_dies_twice_is_recorded_failed_and_named(tmp_path):
    ray = pytest.importorskip("ray")
    from speechpeft.leaderboard.progress import Board
    from speechpeft.leaderboard.ray_executor import _collect

    cell = Cell("intent", "b", "lora", 0, Path("c"), {"method": "lora"})
    with Board([cell], [], 1, live=False) as board:
        error = ray.exceptions.WorkerCrashedError()
        result = _collect(_Raising(error), "ref", cell, tmp_path, board)
    assert result["status"] == "failed" and result["error"]["type"] == "WorkerDied"
    assert "WorkerCrashedError" in result["error"]["message"]
    assert json.loads((tmp_path / "cells" / cell.id / "result.json").read_text()) == result  # the driver wrote it


class _Raising:
    """Stands in for the `ray` module in `_collect`: `get` raises what a dead worker's task raises."""

    def __init__(self, error: Exception) -> None:
        import ray

        self.error, self.exceptions = error, ray.exceptions

    def get(self, ref):
        raise self.error


def test_the_memory_a_cell_declares_is_the_peak_its_kind_recorded_with_a_margin():
    cell = Cell("asr", "b", "lora", 0, Path("c"), {"method": "lora"})
    other = {"task": "asr", "backbone": "other", "training": {"peak_memory_bytes": 9 * 2**30}}
    assert memory_for(cell, [other]) == DEFAULT_MEMORY  # another backbone's peak says nothing
    same = [{"task": "asr", "backbone": "b", "training": {"peak_memory_bytes": p}} for p in (2**30, 2 * 2**30)]
    assert memory_for(cell, [other, *same]) == int(2 * 2**30 * MEMORY_MARGIN)


def test_without_ray_installed_the_error_says_how_to_get_it(monkeypatch):
    from speechpeft.leaderboard.ray_executor import run_on_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(InputError, match=r"pip install 'speechpeft\[ray\]'"):
        run_on_ray([], None, [], None)


def test_an_address_without_the_ray_executor_is_refused(capsys):
    assert main(["leaderboard", "--quick", "--address", "auto", "--dry-run"]) == 2
    assert "--address names a Ray cluster" in capsys.readouterr().err
