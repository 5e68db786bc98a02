"""The leaderboard as Markdown and as a terminal table, from the aggregated rows (one per task, backbone and variant).

`boards` turns the rows into tables of formatted cells, each keeping the raw number it shows, so the Markdown,
the terminal table and the sortable HTML page (`leaderboard.report_html`) all show the same columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from speechpeft.leaderboard.headline import HEADLINES, Headline, direction

PERCENT_METRICS = frozenset({"wer", "cer", "accuracy", "macro_f1"})  # fractions, shown as percent
METRIC_NAMES = {"wer": "WER", "cer": "CER", "mcd": "MCD (dB)", "ovrl_mos": "OVRL", "sig_mos": "SIG",
                "bak_mos": "BAK", "p808_mos": "P.808", "accuracy": "accuracy", "macro_f1": "macro F1"}  # fmt: skip
MINUS = "\u2212"  # a real minus sign, as wide as "+", so signed columns line up
REFERENCES = ("frozen", "full")  # the Δ columns compare every variant with these two


@dataclass(frozen=True)
class Cell:
    text: str
    sort: float | str | None = None  # the raw value the column sorts by; None (blank) sorts last


@dataclass(frozen=True)
class Column:
    key: str  # stable name for deep links (`#sort=asr:wer`): the metric name, "method", "params", ...
    header: str
    numeric: bool = True


@dataclass(frozen=True)
class Board:
    """One (task, backbone) table: rows best first (failed last) and each row's cells by column key."""

    task: str
    backbone: str
    headline: Headline
    columns: tuple[Column, ...]
    rows: tuple[dict, ...]
    cells: tuple[dict[str, Cell], ...]


# formatting: one helper per kind of value


def signed(number: float, digits: int) -> str:
    """`number` with an explicit sign ("+1.5", or a minus sign U+2212 before 1.5; zero unsigned)."""
    text = f"{abs(number):.{digits}f}"
    if float(text) == 0:
        return text
    return ("+" if number > 0 else MINUS) + text


def format_value(metric: str, value: float | None) -> str:
    """A metric value, compact: percent metrics as "12.3 %", others (MOS, MCD in dB) as "2.41"."""
    if value is None:
        return ""
    return f"{value * 100:.1f} %" if metric in PERCENT_METRICS else f"{value:.2f}"


def format_interval(metric: str, value: float | None, low: float | None, high: float | None,
                    spread: float | None = None) -> str:  # fmt: skip
    """Mean with its 95 % interval: "12.3 % [10.1, 14.9]", "12.3 ± 0.8 % [10.1, 14.9]", "2.41 [2.30, 2.52]"."""
    if value is None:
        return ""
    percent = metric in PERCENT_METRICS
    scale, unit, digits = (100, " %", 1) if percent else (1, "", 2)
    text = f"{value * scale:.{digits}f}"
    if spread is not None:
        text += f" \u00b1 {spread * scale:.{digits}f}"
    text += unit
    if low is not None and high is not None:
        text += f" [{low * scale:.{digits}f}, {high * scale:.{digits}f}]"
    return text


def format_delta(metric: str, value: float, reference: float) -> str:
    """Difference from a reference, in points for percent metrics, with the relative change.

    "-18.2 pt (-60 %)" for percent metrics, "+0.35 (+15 %)" for others; signs are U+2212 and "+".
    """
    percent = metric in PERCENT_METRICS
    text = signed((value - reference) * 100, 1) + " pt" if percent else signed(value - reference, 2)
    if reference != 0:
        text += f" ({signed((value - reference) / abs(reference) * 100, 0)} %)"
    return text


def format_count(number: int | None) -> str:
    return "" if number is None else f"{number:,}"


def format_bytes(size: int | None) -> str:
    """A size in bytes as "512 B", "541.1 KiB", "1.2 MiB" or "3.4 GiB"."""
    if size is None:
        return ""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} B"


def format_number(number: float | None, digits: int = 1) -> str:
    return "" if number is None else f"{number:,.{digits}f}"


def format_trials(tunings: list[dict]) -> str:
    """How a row was tuned (`--tune`): "4 trials (1 pruned)", "4 trials \u00d7 3 seeds (2 pruned, 1 failed)",
    "not tuned" (its method has nothing to search), or "" for a row not asked to tune."""
    tuned = [t for t in tunings if t.get("tuned")]
    if not tuned:
        return "not tuned" if tunings else ""
    asked = tuned[0]["asked"]
    text = f"{asked} trial{'s' if asked != 1 else ''}" + (f" \u00d7 {len(tuned)} seeds" if len(tuned) > 1 else "")
    lost = [f"{count} {state}" for state in ("pruned", "failed") if (count := sum(t.get(state, 0) for t in tuned))]
    return text + (f" ({', '.join(lost)})" if lost else "")


def format_params(params: Mapping[str, object]) -> str:
    """A trial's values: "lr 2.1e-03, rank 16"."""
    return ", ".join(f"{name} {value:.1e}" if isinstance(value, float) else f"{name} {value}"
                     for name, value in params.items())  # fmt: skip


def format_duration(seconds: float | None) -> str:
    """Wall time in seconds as "42 s", "12 min 05 s" or "2 h 03 min"."""
    if seconds is None:
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


# the table model


def headline_for(task: str, rows: Iterable[dict] = ()) -> Headline:
    """The task's headline from `HEADLINES`; for a task it does not know, the rows' own `metric`."""
    if task in HEADLINES:
        return HEADLINES[task]
    metric = next((row["metric"] for row in rows if row.get("metric")), "value")
    return Headline(metric, direction(metric), metric, ())


def is_failed(row: dict) -> bool:
    return row.get("status") == "failed" or row.get("value") is None


def rank(rows: Iterable[dict], headline: Headline) -> list[dict]:
    """Rows best first by the headline value (its direction), rows without a value last, in their given order."""
    sign = 1 if headline.direction == "min" else -1
    return sorted(rows, key=lambda row: (is_failed(row), 0 if is_failed(row) else sign * row["value"]))


def group_rows(rows: Iterable[dict]) -> dict[tuple[str, str], list[dict]]:
    """Rows by (task, backbone), tasks in order of first appearance, each task's backbones together."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["task"], row.get("backbone") or ""), []).append(row)
    tasks = list(dict.fromkeys(task for task, _ in groups))
    return {key: groups[key] for task in tasks for key in groups if key[0] == task}


def other_metrics(headline: Headline, rows: Iterable[dict]) -> list[str]:
    """The metrics besides the headline that some row reports: the task's `others` first, then by appearance."""
    seen = {name: None for row in rows for name in row.get("metrics") or {}}
    return [name for name in dict.fromkeys([*headline.others, *seen]) if name in seen and name != headline.metric]


def columns(headline: Headline, others: list[str], tuned: bool = False) -> tuple[Column, ...]:
    """The table's columns; with `tuned` (some row ran `--tune`), its trials and the best trial's values last."""
    label = METRIC_NAMES.get(headline.metric, headline.metric)
    tuning = (Column("tuned", "tuned"), Column("tuned_params", "best trial", numeric=False)) if tuned else ()
    return (
        Column("method", "method", numeric=False),
        Column(headline.metric, f"{label} [95 % CI]"),
        *(Column(f"delta_{ref}", f"\u0394 vs {ref}") for ref in REFERENCES),
        *(Column(name, METRIC_NAMES.get(name, name)) for name in others),
        Column("params", "trainable params"),
        Column("adapter", "adapter size"),
        Column("train_s", "train (s)"),
        Column("rtfx", "RTFx"),
        *tuning,
    )


def references(rows: Iterable[dict]) -> dict[str, float]:
    """The headline value of the `frozen` and `full` rows that finished."""
    return {row["variant"]: row["value"] for row in rows if row["variant"] in REFERENCES and not is_failed(row)}


def method_cell(row: dict) -> Cell:
    text = row["variant"]
    if row.get("status") == "partial":
        text += f" (partial, {row.get('seeds', '?')} seeds)"
    return Cell(text, row["variant"])


def delta_cells(row: dict, metric: str, refs: Mapping[str, float]) -> dict[str, Cell]:
    """Δ vs frozen and vs full; blank on the reference's own row or without a reference."""
    cells = {}
    for ref in REFERENCES:
        if ref in refs and row["variant"] != ref and not is_failed(row):
            cells[f"delta_{ref}"] = Cell(format_delta(metric, row["value"], refs[ref]), row["value"] - refs[ref])
        else:
            cells[f"delta_{ref}"] = Cell("")
    return cells


def metric_cell(name: str, metrics: Mapping[str, dict]) -> Cell:
    value = (metrics.get(name) or {}).get("value")
    return Cell(format_value(name, value), value)


def tuning_cells(row: dict) -> dict[str, Cell]:
    """The `--tune` columns: trials (sorted by how many were asked) and each seed's best values ("; " between)."""
    tunings = row.get("tuning") or []
    asked = sum(t["asked"] for t in tunings if t.get("tuned")) or None
    best = "; ".join(format_params(t["best"]["params"]) for t in tunings if t.get("best"))
    return {"tuned": Cell(format_trials(tunings), asked), "tuned_params": Cell(best, best or None)}


def row_cells(row: dict, headline: Headline, others: list[str], refs: Mapping[str, float]) -> dict[str, Cell]:
    """Every column's cell for one row; a failed row shows "failed: <error>" in the headline column."""
    metric = headline.metric
    if is_failed(row):
        return {"method": method_cell(row), metric: Cell(f"failed: {row.get('error') or 'no result'}")}
    metrics, value = row.get("metrics") or {}, row["value"]
    return {
        "method": method_cell(row),
        metric: Cell(format_interval(metric, value, row.get("low"), row.get("high"), row.get("spread")), value),
        **delta_cells(row, metric, refs),
        **{name: metric_cell(name, metrics) for name in others},
        "params": Cell(format_count(row.get("trainable_parameters")), row.get("trainable_parameters")),
        "adapter": Cell(format_bytes(row.get("adapter_bytes")), row.get("adapter_bytes")),
        "train_s": Cell(format_number(row.get("train_seconds")), row.get("train_seconds")),
        "rtfx": Cell(format_number(row.get("rtfx")), row.get("rtfx")),
        **tuning_cells(row),
    }


def boards(rows: Iterable[dict]) -> list[Board]:
    """One table per (task, backbone), in order of first appearance, rows best first."""
    result = []
    for (task, backbone), group in group_rows(rows).items():
        headline = headline_for(task, group)
        others = other_metrics(headline, group)
        ranked = rank(group, headline)
        refs = references(group)
        cells = tuple(row_cells(row, headline, others, refs) for row in ranked)
        tuned = any(row.get("tuning") for row in group)
        result.append(Board(task, backbone, headline, columns(headline, others, tuned), tuple(ranked), cells))
    return result


def voices(board: Board) -> dict[str, int | None]:
    """The voices (groups) the board's rows report, with their utterance count, in order of appearance."""
    found: dict[str, int | None] = {}
    for row in board.rows:
        for voice, group in (row.get("groups") or {}).items():
            found.setdefault(voice, group.get("utterances"))
    return found


def voice_cell(board: Board, row: dict, voice: str) -> Cell:
    group = (row.get("groups") or {}).get(voice) or {}
    metric = board.headline.metric
    return Cell(format_interval(metric, group.get("value"), group.get("low"), group.get("high")), group.get("value"))


def voice_header(voice: str, utterances: int | None) -> str:
    return voice if utterances is None else f"{voice} (n={utterances})"


# Markdown


def board_title(board: Board) -> str:
    return f"{board.task} \u00b7 {board.backbone}" if board.backbone else board.task


def board_summary(board: Board) -> str:
    """One line under a table's title: ranking metric, direction, split and size."""
    better = "lower" if board.headline.direction == "min" else "higher"
    text = f"Ranked by {board.headline.label}, {better} is better"
    done = next((row for row in board.rows if not is_failed(row)), None)
    if done and done.get("split"):
        text += f"; split `{done['split']}`, {format_count(done.get('utterances'))} utterances"
    return text + "."


def tuning_note(board: Board) -> str:
    """A line for under the table when some row was tuned (`--tune`): which, how, on what split it is scored, and
    which rows were not and why; "" when none was."""
    studies = [(row, t) for row in board.rows for t in row.get("tuning") or []]
    tuned = [(row, t) for row, t in studies if t.get("tuned")]
    if not tuned:
        return ""
    first_row, first = tuned[0]
    variants = ", ".join(dict.fromkeys(row["variant"] for row, _ in tuned))
    split = first_row.get("split")
    text = (
        f"Tuned on validation data ({variants}): {first['asked']} trials per cell of the learning rate (and "
        "the rank, prefix length or reduction factor), TPE sampling, bad trials stopped early by median "
        f"pruning, the best by validation {first['metric']}; each row shows that trial, scored on `{split}`."
    )
    untuned = {row["variant"]: t.get("reason") for row, t in studies if not t.get("tuned")}
    return text + "".join(f" Not tuned: {variant}, {reason}." for variant, reason in untuned.items())


def markdown_table(headers: list[str], lines: list[list[str]], numeric: list[bool]) -> str:
    def escaped(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(escaped(h) for h in headers) + " |"]
    out.append("|" + "|".join("---:" if n else ":---" for n in numeric) + "|")
    out += ["| " + " | ".join(escaped(text) for text in line) + " |" for line in lines]
    return "\n".join(out)


def board_markdown(board: Board, plots: Mapping[str, str] | None = None) -> str:
    cols = board.columns
    main = [[cells.get(c.key, Cell("")).text for c in cols] for cells in board.cells]
    parts = [f"## {board_title(board)}", board_summary(board),
             markdown_table([c.header for c in cols], main, [c.numeric for c in cols])]  # fmt: skip
    note = tuning_note(board)
    parts += [note] if note else []
    found = voices(board)
    if found:
        lines = [[row["variant"], *(voice_cell(board, row, v).text for v in found)] for row in board.rows]
        headers = ["method", *(voice_header(v, n) for v, n in found.items())]
        parts += [f"{board.headline.label} per voice:", markdown_table(headers, lines, [False] + [True] * len(found))]
    parts += [f"![{board_title(board)}: {kind}]({path})" for kind, path in (plots or {}).items()]
    return "\n\n".join(parts)


def measured(meta: Mapping) -> str:
    """When the cells ran and their compute, e.g. "2026-11-30T10:59:43+00:00 to 2026-11-30T11:10:21+00:00
    (12 min 40 s of cell compute)"."""
    if not meta.get("measured_from"):
        return "at unrecorded times"
    compute = format_duration(meta.get("compute_seconds"))
    return f"{meta['measured_from']} to {meta['measured_until']} ({compute} of cell compute)"


def meta_line(meta: Mapping) -> str:
    """Measured when and where, preset, commit, this command's wall time (when it ran cells), report written when."""
    preset = f" (preset `{meta['preset']}`)" if meta.get("preset") else ""
    wall = meta.get("wall_seconds")
    wall = "" if wall is None else f", this command's wall time {format_duration(wall)}"
    return (f"Measured {measured(meta)} on {meta.get('machine') or '?'}{preset}, commit "
            f"`{meta.get('git_commit') or '?'}`{wall}; report written {meta.get('created', '?')}.")  # fmt: skip


LEGEND = (
    "Intervals: 95 % bootstrap intervals over utterances; with several seeds, the mean of the seeds' intervals, "
    "and \u00b1 is the standard deviation over seeds.",
    "\u0394 vs frozen / full: the headline minus that of the frozen backbone / of full fine-tuning, in points for "
    "percentages, with the relative change in parentheses.",
    "Pareto front (plots): the best headline reachable with at most that many trainable parameters (or adapter "
    "bytes); the frozen backbone (0) is drawn at a floor of the log axis.",
)


def markdown(rows: list[dict], meta: dict, plots: Mapping[tuple[str, str], Mapping[str, str]] | None = None) -> str:
    """The report as Markdown: a header from `meta`, then a table per (task, backbone), rows best first.

    `plots` maps (task, backbone) to {plot label: relative path of its PNG}; each is linked under its table.
    """
    parts = ["# speechpeft leaderboard", meta_line(meta)]
    if meta.get("description"):
        parts.append(str(meta["description"]))
    if meta.get("command"):
        parts.append(f"Measured by: `{meta['command']}`")
    parts.append("\n".join(f"- {item}" for item in LEGEND))
    for board in boards(rows):
        parts.append(board_markdown(board, (plots or {}).get((board.task, board.backbone))))
    return "\n\n".join(parts) + "\n"


# terminal


def rich_table(board: Board) -> Table:
    table = Table(title=f"{board_title(board)}: {board.headline.label}", title_justify="left",
                  caption=tuning_note(board) or None, caption_justify="left")  # fmt: skip
    for column in board.columns:
        table.add_column(column.header, justify="right" if column.numeric else "left")
    for index, cells in enumerate(board.cells):
        style = "red" if is_failed(board.rows[index]) else ("bold green" if index == 0 else None)
        table.add_row(*(cells.get(c.key, Cell("")).text for c in board.columns), style=style)
    return table


def print_table(rows: list[dict], console: Console | None = None) -> None:
    """Print one rich table per (task, backbone) to `console` (stdout by default), best row first, in green."""
    console = console or Console()
    for board in boards(rows):
        console.print(rich_table(board))
