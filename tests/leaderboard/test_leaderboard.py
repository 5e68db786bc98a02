"""`speechpeft leaderboard` end to end: the quick preset, resuming, a failing cell, parallel workers."""

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
from speechpeft.leaderboard.grid import load_grid, preset_path
from tests.leaderboard.grids import small_grid

pytestmark = pytest.mark.slow


def _results(out: Path) -> dict[str, dict]:
    return {r["id"]: r for r in (json.loads(p.read_text()) for p in out.glob("cells/**/result.json"))}


def test_quick_preset_runs_every_cell_writes_the_report_and_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the preset's corpora go to ./data/leaderboard
    assert main(["leaderboard", "--quick", "--out", "out", "--no-live"]) == 0
    results, cells = _results(tmp_path / "out"), load_grid(preset_path("quick")).cells()
    assert sorted(results) == sorted(c.id for c in cells) and all(r["status"] == "ok" for r in results.values())
    asr = results["asr/speechpeft--tiny-whisper/lora/seed-0"]
    wer = asr["evaluation"]["metrics"]["wer"]
    assert wer["low"] <= wer["value"] <= wer["high"] and asr["evaluation"]["groups"]  # per voice
    assert asr["training"]["trainable_parameters"] > 0 and asr["training"]["adapter_bytes"] > 0
    assert asr["run"]["backbone_fingerprint"].startswith("sha256:") and asr["run"]["git_commit"]
    assert asr["run"]["normalizer"] == "speechpeft-en-3" and asr["run"]["versions"]["peft"]
    assert asr["evaluation"]["latency"]["rtfx"] > 0 and asr["training"]["peak_memory_bytes"] > 0
    tts = results["tts/speechpeft--tiny-speecht5/houlsby/seed-0"]
    assert {"ovrl_mos", "mcd", "cer"} <= set(tts["evaluation"]["metrics"]) and tts["run"]["listener_fingerprint"]
    with (tmp_path / "out" / "results.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == len(cells)
    report = (tmp_path / "out" / "report.md").read_text()
    assert all("houlsby" in report and task in report for task in ("asr", "intent", "tts"))
    assert (tmp_path / "out" / "report.html").stat().st_size > 10_000
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("cells/**/result.json")}
    capsys.readouterr()
    assert main(["leaderboard", "--quick", "--out", "out", "--no-live"]) == 0  # resumes: nothing to run
    assert f"{len(cells)}/{len(cells)} done ({len(cells)} from an earlier run)" in capsys.readouterr().err
    assert stamps == {p: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("cells/**/result.json")}


def test_a_failing_cell_is_recorded_the_grid_goes_on_and_finished_cells_are_kept(tmp_path, tiny_backbone_dirs, capsys):
    config, out = small_grid(tmp_path, tiny_backbone_dirs["wavlm"]), tmp_path / "out"
    assert main(["leaderboard", "--config", str(config), "--out", str(out), "--methods", "frozen"]) == 0
    frozen = next(out.glob("cells/intent/*/frozen/seed-0/result.json"))
    stamp = frozen.stat().st_mtime_ns
    # prefix tuning cannot enter WavLM's attention (adapters.catalog.UNSUPPORTED): that cell fails, with its reason
    assert main(["leaderboard", "--config", str(config), "--out", str(out), "--workers", "2", "--no-live"]) == 1
    results = {r["variant"]: r for r in _results(out).values()}
    assert results["frozen"]["status"] == "ok" and frozen.stat().st_mtime_ns == stamp  # kept, not run again
    assert results["prefix"]["status"] == "failed" and "prefix" in results["prefix"]["error"]["message"]
    assert "Traceback" in results["prefix"]["error"]["traceback"]
    assert "1 of 2 cells failed" in capsys.readouterr().err
    assert "failed" in (out / "report.md").read_text()
    assert main(["leaderboard", "--config", str(config), "--out", str(out), "--no-retry-failed", "--no-live"]) == 1
    assert results["prefix"]["run"]["finished"] == _results(out)[results["prefix"]["id"]]["run"]["finished"]


def test_a_killed_run_stops_its_workers_and_resumes_keeping_finished_cells(tmp_path, tiny_backbone_dirs):
    config, out = small_grid(tmp_path, tiny_backbone_dirs["wavlm"]), tmp_path / "out"
    config.write_text(config.read_text().replace("[methods.prefix]", "[methods.lora]\nlr = 1e-3\n[methods.full]"))
    command = [sys.executable, "-m", "speechpeft.cli", "leaderboard", "--config", str(config), "--out", str(out),
               "--workers", "1", "--no-live"]  # fmt: skip
    run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = out / "cells" / "intent"
    deadline = time.monotonic() + 120
    while not list(first.glob("*/frozen/seed-0/result.json")) and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = psutil.Process(run.pid).children(recursive=True)
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=60) == 130  # "interrupted; finished work is kept"
    psutil.wait_procs(workers, timeout=10)
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
    finished = {p: p.stat().st_mtime_ns for p in first.glob("*/*/seed-0/result.json")}
    assert finished and subprocess.run(command, capture_output=True).returncode == 0
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in finished.items())  # kept, not run again
    assert {r["variant"] for r in _results(out).values() if r["status"] == "ok"} == {"frozen", "lora", "full"}
