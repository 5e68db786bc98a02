"""The report's figures for one task: headline against cost (trainable parameters, adapter bytes) and training time.

Figures are drawn with matplotlib's Agg canvas (no display, no pyplot state) and returned as PNG bytes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from speechpeft.leaderboard.headline import HEADLINES, Direction
from speechpeft.leaderboard.report import METRIC_NAMES, PERCENT_METRICS, headline_for, is_failed

DPI = 110
SIZE = (6.4, 4.4)  # inches: 704 x 484 px at DPI
FRONT_COLOR = "tab:red"


def pareto_front(points: Sequence[tuple[float, float]], direction: Direction) -> list[int]:
    """Indices of the non-dominated (cost, value) points, cheapest first (ties: by index).

    A point is dominated when another costs no more and is no worse, and is cheaper or better; identical points
    dominate neither each other, so both stay. `direction` "min": lower values are better, "max": higher.
    """
    sign = 1 if direction == "min" else -1

    def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
        no_worse = a[0] <= b[0] and sign * a[1] <= sign * b[1]
        return no_worse and (a[0] < b[0] or sign * a[1] < sign * b[1])

    front = [i for i, point in enumerate(points) if not any(dominates(other, point) for other in points)]
    return sorted(front, key=lambda i: (points[i][0], sign * points[i][1], i))


def finite(number: object) -> bool:
    return isinstance(number, int | float) and math.isfinite(number)


def plottable(rows: Sequence[dict], key: str) -> list[dict]:
    """Rows that finished with a finite headline value and a number under `key`."""
    return [row for row in rows if not is_failed(row) and finite(row["value"]) and finite(row.get(key))]


def png(figure: Figure) -> bytes:
    """The figure rendered by the Agg canvas as PNG bytes."""
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()


def new_figure(title: str) -> tuple[Figure, Axes]:
    figure = Figure(figsize=SIZE, dpi=DPI, layout="constrained")
    axes = figure.add_subplot()
    axes.set_title(title, fontsize=10)
    axes.grid(True, which="major", alpha=0.3)
    return figure, axes


def empty(figure: Figure, axes: Axes) -> bytes:
    axes.text(0.5, 0.5, "no finished runs", ha="center", va="center", transform=axes.transAxes)
    axes.set_axis_off()
    return png(figure)


def headline_axis(rows: Sequence[dict]) -> tuple[str, float, Direction]:
    """Axis label, the scale from stored fractions to what is shown (100 for percent), and the direction."""
    headline = headline_for(rows[0]["task"], rows)
    percent = headline.metric in PERCENT_METRICS
    label = METRIC_NAMES.get(headline.metric, headline.metric) + (" (%)" if percent else "")
    better = "lower" if headline.direction == "min" else "higher"
    return f"{label}, {better} is better", 100.0 if percent else 1.0, headline.direction


def error_bars(rows: Sequence[dict], scale: float) -> list[list[float]]:
    """Distances from each value down to `low` and up to `high` (0 where unknown), for `errorbar(yerr=...)`."""
    below = [max(0.0, (row["value"] - row["low"]) * scale) if row.get("low") is not None else 0.0 for row in rows]
    above = [max(0.0, (row["high"] - row["value"]) * scale) if row.get("high") is not None else 0.0 for row in rows]
    return [below, above]


def floor_for(costs: Sequence[float]) -> float:
    """Where a cost of 0 goes on a log axis: the power of ten a decade below the smallest positive cost (else 1)."""
    positive = [cost for cost in costs if cost > 0]
    return 10.0 ** (math.floor(math.log10(min(positive))) - 1) if positive else 1.0


def draw_front(axes: Axes, xs: list[float], ys: list[float], front: list[int]) -> None:
    """The Pareto front as a step line (best value reachable for at most that cost), its points ringed."""
    fx, fy = [xs[i] for i in front], [ys[i] for i in front]
    right = max(xs) * 1.5
    axes.step([*fx, right], [*fy, fy[-1]], where="post", color=FRONT_COLOR, alpha=0.7, label="Pareto front")
    axes.scatter(fx, fy, s=160, facecolors="none", edgecolors=FRONT_COLOR, linewidths=1.5, zorder=3)


def cost_plot(rows: Sequence[dict], key: str, cost_label: str) -> bytes:
    """Headline against a cost (`key`: "trainable_parameters" or "adapter_bytes") on a log axis, as PNG bytes.

    A cost of 0 (the frozen backbone) is drawn at a floor below the smallest cost and labelled with its 0.
    """
    rows = plottable(rows, key)
    name = HEADLINES[rows[0]["task"]].label if rows and rows[0]["task"] in HEADLINES else "headline"
    figure, axes = new_figure(f"{rows[0]['task']}: {name} vs {cost_label}" if rows else cost_label)
    if not rows:
        return empty(figure, axes)
    ylabel, scale, direction = headline_axis(rows)
    costs = [float(row[key]) for row in rows]
    floor = floor_for(costs)
    xs, ys = [cost if cost > 0 else floor for cost in costs], [row["value"] * scale for row in rows]
    axes.errorbar(xs, ys, yerr=error_bars(rows, scale), fmt="o", color="tab:blue", ecolor="tab:gray", capsize=3)
    draw_front(axes, xs, ys, pareto_front(list(zip(costs, ys, strict=True)), direction))
    for x, y, row, cost in zip(xs, ys, rows, costs, strict=True):
        label = row["variant"] + (" (0)" if cost == 0 else "")
        axes.annotate(label, (x, y), xytext=(6, 5), textcoords="offset points", fontsize=8)
    axes.set_xscale("log")
    axes.set_xlabel(f"{cost_label} (log; 0 drawn at {floor:.0e})" if min(costs) == 0 else f"{cost_label} (log)")
    axes.set_ylabel(ylabel)
    axes.legend(loc="best", fontsize=8)
    return png(figure)


def params_plot(rows: Sequence[dict]) -> bytes:
    """Headline against trainable parameters, with the Pareto front; PNG bytes."""
    return cost_plot(rows, "trainable_parameters", "trainable parameters")


def bytes_plot(rows: Sequence[dict]) -> bytes:
    """Headline against the saved adapter's size in bytes, with the Pareto front; PNG bytes."""
    return cost_plot(rows, "adapter_bytes", "adapter size (bytes)")


def time_plot(rows: Sequence[dict]) -> bytes:
    """Training seconds per variant as horizontal bars, fastest at the top; PNG bytes."""
    rows = sorted(plottable(rows, "train_seconds"), key=lambda row: row["train_seconds"], reverse=True)
    figure, axes = new_figure(f"{rows[0]['task']}: training time" if rows else "training time")
    if not rows:
        return empty(figure, axes)
    seconds = [row["train_seconds"] for row in rows]
    bars = axes.barh([row["variant"] for row in rows], seconds, color="tab:blue")
    axes.bar_label(bars, labels=[f"{s:,.1f} s" for s in seconds], padding=3, fontsize=8)
    axes.set_xlabel("training time (s)")
    axes.set_xlim(0, max(max(seconds) * 1.25, 1.0))
    return png(figure)


PLOTS: dict[str, tuple[str, Callable[[Sequence[dict]], bytes]]] = {
    "params": ("headline vs trainable parameters", params_plot),
    "bytes": ("headline vs adapter size", bytes_plot),
    "time": ("training time", time_plot),
}  # kind (file name part) -> (caption, figure)


def task_plots(rows: Sequence[dict]) -> dict[str, bytes]:
    """Every plot kind in `PLOTS` for one task's rows (one backbone), as PNG bytes by kind."""
    return {kind: draw(rows) for kind, (_, draw) in PLOTS.items()}
