"""Which cells a rerun keeps: results are written by hand, so nothing trains (the end-to-end runs are in
test_leaderboard.py)."""

from __future__ import annotations

from pathlib import Path

from speechpeft.leaderboard.cell import describe, result_path, write_json
from speechpeft.leaderboard.grid import Cell
from speechpeft.leaderboard.normalize import NORMALIZER
from speechpeft.leaderboard.runner import all_results, pending


def _cell(task: str, variant: str) -> Cell:
    return Cell(task, "speechpeft/tiny-whisper", variant, 0, Path("data/c"), {"method": variant, "steps": 2})


def _write(out: Path, cell: Cell, normalizer: str | None) -> dict:
    result = {**describe(cell), "status": "ok", "run": {"normalizer": normalizer}}
    write_json(result_path(out, cell), result)
    return result


def test_a_cell_scored_under_another_normaliser_runs_again_and_the_run_says_how_many(tmp_path, capsys):
    current, old, intent = _cell("asr", "lora"), _cell("asr", "full"), _cell("intent", "lora")
    kept = [_write(tmp_path, current, NORMALIZER), _write(tmp_path, intent, None)]  # classification: no normaliser
    _write(tmp_path, old, "speechpeft-en-2")
    todo, done = pending([current, old, intent], tmp_path, retry_failed=True)
    assert todo == [old] and done == kept
    assert f"1 of 3 cells were scored under a text normaliser other than {NORMALIZER}" in capsys.readouterr().err


def test_results_of_other_runs_scored_under_another_normaliser_are_left_out_of_the_report(tmp_path, capsys):
    first = [_write(tmp_path, _cell("asr", "lora"), NORMALIZER)]
    other = _write(tmp_path, _cell("asr", "prefix"), NORMALIZER)  # an earlier run with other --methods
    _write(tmp_path, _cell("asr", "full"), "speechpeft-en-2")
    assert all_results(tmp_path, first) == [*first, other]
    said = capsys.readouterr().err.strip()
    assert said.endswith(f"other than {NORMALIZER}: asr/speechpeft--tiny-whisper/full/seed-0")
