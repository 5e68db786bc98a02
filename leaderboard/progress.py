"""The grid's progress display: cells done / running / failed, elapsed time and an estimate of what is left.

On a terminal it is a live `rich` table, redrawn in place; in a log (CI, `make leaderboard > log`) it is one
line per cell started or finished, so nothing is lost. The estimate assumes a pending cell takes as long as the
finished cells of its task did on average (of any task before one has finished), divided among the workers.
"""

from __future__ import annotations

import sys
import time

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from speechpeft.leaderboard.grid import Cell

STYLES = {"ok": "green", "failed": "bold red", "running": "yellow", "pending": "dim", "kept": "green"}


class Board:
    def __init__(self, cells: list[Cell], done: list[dict], workers: int, live: bool | None = None) -> None:
        kept = {r["id"]: r for r in done}
        self.cells, self.workers = cells, workers
        self.state = {c.id: ("kept" if c.id in kept and kept[c.id]["status"] == "ok" else "pending") for c in cells}
        self.state.update({i: "failed" for i, r in kept.items() if r["status"] == "failed"})
        self.notes: dict[str, str] = {i: _note(r) for i, r in kept.items()}
        self.began_at: dict[str, float] = {}
        self.took: dict[str, float] = {}
        self.start = time.perf_counter()
        self.console = Console(file=sys.stderr)
        live = self.console.is_terminal if live is None else live
        # redrawn by `refresh` from the thread that changes the state (no auto-refresh thread reading it meanwhile)
        self.live = Live(console=self.console, auto_refresh=False, get_renderable=self.render) if live else None

    def __enter__(self) -> Board:
        if self.live:
            self.live.start()
        else:
            self._line(f"{len(self.cells)} cells, {sum(s == 'kept' for s in self.state.values())} already done")
        return self

    def __exit__(self, *exc) -> None:
        if self.live:
            self.live.stop()
        self._line(self.summary())

    def started(self, cell: Cell) -> None:
        self.state[cell.id], self.began_at[cell.id] = "running", time.perf_counter()
        if not self.live:
            self._line(f"start {cell.id}")

    def finished(self, cell: Cell, result: dict) -> None:
        self.took[cell.id] = time.perf_counter() - self.began_at.get(cell.id, time.perf_counter())
        self.state[cell.id], self.notes[cell.id] = result["status"], _note(result)
        if not self.live:
            self._line(f"{result['status']:6} {cell.id} ({self.took[cell.id]:.0f} s): {self.notes[cell.id]}")

    def refresh(self) -> None:
        if self.live:
            self.live.refresh()

    def _line(self, text: str) -> None:
        print(f"[{_clock(time.perf_counter() - self.start)}] {text}", file=sys.stderr, flush=True)

    def summary(self) -> str:
        counts = {s: sum(v == s for v in self.state.values()) for s in ("ok", "kept", "running", "failed", "pending")}
        left = self.remaining_seconds()
        return (f"{counts['ok'] + counts['kept']}/{len(self.cells)} done ({counts['kept']} from an earlier run), "
                f"{counts['running']} running, {counts['failed']} failed, {counts['pending']} pending; "
                f"elapsed {_clock(time.perf_counter() - self.start)}"
                + (f", about {_clock(left)} left" if left is not None else ""))  # fmt: skip

    def remaining_seconds(self) -> float | None:
        """Seconds the pending and running cells still need, by their task's mean so far; None before any ends."""
        if not self.took:
            return None
        overall = sum(self.took.values()) / len(self.took)
        task_of = {c.id: c.task for c in self.cells}
        mean = {t: [s for i, s in self.took.items() if task_of[i] == t] for t in set(task_of.values())}
        need = 0.0
        for cell in self.cells:
            expected = sum(mean[cell.task]) / len(mean[cell.task]) if mean[cell.task] else overall
            if self.state[cell.id] == "pending":
                need += expected
            elif self.state[cell.id] == "running":
                need += max(0.0, expected - (time.perf_counter() - self.began_at[cell.id]))
        return need / self.workers

    def render(self) -> Group:
        table = Table(box=None, pad_edge=False)
        for column in ("cell", "state", "time", "result"):
            table.add_column(column)
        now = time.perf_counter()
        for cell in self.cells:
            state = self.state[cell.id]
            seconds = now - self.began_at[cell.id] if state == "running" else self.took.get(cell.id)
            table.add_row(cell.id, Text(state, style=STYLES[state]), _clock(seconds) if seconds else "",
                          self.notes.get(cell.id, ""))  # fmt: skip
        return Group(table, Text(self.summary(), style="bold"))


def _note(result: dict) -> str:
    """The cell's headline on one line, or its error."""
    if result["status"] != "ok":
        error = result.get("error") or {}
        return f"{error.get('type', 'error')}: {error.get('message', '')}"[:120]
    metrics = {k: v["value"] for k, v in result.get("evaluation", {}).get("metrics", {}).items()}
    where = "test"
    if not metrics:  # a tuning cell: its validation scores
        metrics, where = result.get("training", {}).get("validation") or {}, "validation"
    name = next(iter(metrics), None)
    return f"{where} {name} {metrics[name]:.4f}" if name else ""


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return ""
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"
