"""The leaderboard as one self-contained HTML page (inline CSS, vanilla JS, plots as data URIs) and the report folder.

Tables sort by any column on a click (numerically, from each cell's `data-sort`; failed rows stay last). A sorted
view can be shared as `report.html#sort=<task>:<column key>[:desc]`, e.g. `#sort=asr:params` or `#sort=tts:mcd:desc`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from html import escape
from pathlib import Path

from speechpeft.leaderboard.plots import PLOTS, task_plots
from speechpeft.leaderboard.report import (
    LEGEND,
    Board,
    Cell,
    board_summary,
    board_title,
    boards,
    format_duration,
    is_failed,
    markdown,
    measured,
    tuning_note,
    voice_cell,
    voice_header,
    voices,
)

PlotSet = Mapping[tuple[str, str], Mapping[str, bytes]]  # (task, backbone) -> plot kind -> PNG bytes

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 24px auto; max-width: 1500px;
       padding: 0 16px; color: #1d2433; background: #fff; font-size: 14px; }
h1 { font-size: 24px; margin-bottom: 4px; } h2 { font-size: 18px; margin: 32px 0 4px; }
.meta, .summary, .tuning { color: #566074; margin: 4px 0 12px; }
code { background: #f1f3f7; padding: 1px 4px; border-radius: 3px; }
.legend { background: #f6f8fb; border-left: 4px solid #4c78a8; padding: 8px 14px; margin: 12px 0 20px; }
.legend li { margin: 3px 0; }
nav a { margin-right: 12px; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { padding: 5px 10px; border-bottom: 1px solid #e2e6ee; white-space: nowrap; }
th { background: #e9eef6; cursor: pointer; user-select: none; text-align: left; position: sticky; top: 0; }
th::after { content: " \\2195"; opacity: 0.3; }
th[aria-sort="ascending"]::after { content: " \\25B2"; opacity: 1; }
th[aria-sort="descending"]::after { content: " \\25BC"; opacity: 1; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: #f8f9fc; }
tbody tr:hover { background: #fff6d6; }
tr.best td:first-child { border-left: 4px solid #2f9e44; font-weight: 600; }
tr.failed td { color: #a61e1e; background: #fdecec; }
tr.failed td.num { white-space: normal; text-align: left; max-width: 40em; }
.plots { display: grid; grid-template-columns: repeat(auto-fit, minmax(360px, 1fr)); gap: 12px; }
figure { margin: 0; border: 1px solid #e2e6ee; padding: 6px; }
figure img { width: 100%; height: auto; display: block; }
figcaption { color: #566074; font-size: 12px; margin-top: 4px; }
"""

SCRIPT = """
(function () {
  "use strict";
  function cellValue(row, index, numeric) {
    var cell = row.cells[index];
    var raw = cell ? cell.getAttribute("data-sort") : null;
    if (raw === null || raw === "") return null;
    return numeric ? Number(raw) : raw;
  }
  function sortTable(table, key, desc) {
    var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
    var index = heads.findIndex(function (th) { return th.dataset.key === key; });
    if (index < 0) return false;
    var numeric = heads[index].dataset.type !== "text";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var fa = a.classList.contains("failed"), fb = b.classList.contains("failed");
      if (fa !== fb) return fa ? 1 : -1;
      var va = cellValue(a, index, numeric), vb = cellValue(b, index, numeric);
      if ((va === null) !== (vb === null)) return va === null ? 1 : -1;
      if (va === null) return 0;
      var order = numeric ? va - vb : va.localeCompare(vb);
      return desc ? -order : order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
    heads.forEach(function (th) { th.removeAttribute("aria-sort"); });
    heads[index].setAttribute("aria-sort", desc ? "descending" : "ascending");
    table.dataset.sortKey = key;
    table.dataset.sortDir = desc ? "desc" : "asc";
    return true;
  }
  function onHeaderClick(event) {
    var th = event.currentTarget, table = th.closest("table");
    var desc = table.dataset.sortKey === th.dataset.key && table.dataset.sortDir === "asc";
    sortTable(table, th.dataset.key, desc);
    if (table.classList.contains("board")) {
      var hash = "#sort=" + table.dataset.task + ":" + th.dataset.key + (desc ? ":desc" : "");
      history.replaceState(null, "", hash);
    }
  }
  function applyHash() {
    var match = /^#sort=([^:]+):([^:]+)(?::(asc|desc))?$/.exec(decodeURIComponent(location.hash));
    if (!match) return;
    document.querySelectorAll("table.board").forEach(function (table) {
      if (table.dataset.task === match[1]) sortTable(table, match[2], match[3] === "desc");
    });
  }
  document.querySelectorAll("table.sortable th").forEach(function (th) {
    th.addEventListener("click", onHeaderClick);
  });
  applyHash();
  window.addEventListener("hashchange", applyHash);
})();
"""


def slug(text: str) -> str:
    """Lowercase letters, digits and dashes only: safe in ids and file names."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def board_stems(all_boards: list[Board]) -> dict[tuple[str, str], str]:
    """A file stem per board: `plot-<task>`, with the backbone's slug added when a task has several backbones."""
    tasks = [board.task for board in all_boards]
    return {
        (b.task, b.backbone): f"plot-{slug(b.task)}" + (f"-{slug(b.backbone)}" if tasks.count(b.task) > 1 else "")
        for b in all_boards
    }


def sort_attribute(value: float | str | None) -> str:
    return "" if value is None else escape(str(value), quote=True)


def td(cell: Cell, numeric: bool) -> str:
    klass = ' class="num"' if numeric else ""
    return f'<td{klass} data-sort="{sort_attribute(cell.sort)}">{escape(cell.text)}</td>'


def thead(heads: list[tuple[str, str, bool]], sorted_by: str = "", desc: bool = False) -> str:
    """Header cells (key, text, numeric); `sorted_by` marks the column the rows already come sorted by."""
    cells = []
    for key, text, numeric in heads:
        state = f' aria-sort="{"descending" if desc else "ascending"}"' if key == sorted_by else ""
        kind = "num" if numeric else "text"
        cells.append(f'<th data-key="{escape(key)}" data-type="{kind}"{state}>{escape(text)}</th>')
    return "<thead><tr>" + "".join(cells) + "</tr></thead>"


def row_class(board: Board, index: int) -> str:
    row = board.rows[index]
    if is_failed(row):
        return "failed"
    if row.get("status") == "partial":
        return "partial best" if index == 0 else "partial"
    return "best" if index == 0 else "ok"


def board_table(board: Board) -> str:
    """The main table, rows best first: the headline column is marked sorted (ascending for "min" metrics)."""
    metric, desc = board.headline.metric, board.headline.direction == "max"
    head = thead([(c.key, c.header, c.numeric) for c in board.columns], metric, desc)
    body = []
    for index, cells in enumerate(board.cells):
        tds = "".join(td(cells.get(c.key, Cell("")), c.numeric) for c in board.columns)
        variant = escape(board.rows[index]["variant"])
        body.append(f'<tr class="{row_class(board, index)}" data-variant="{variant}">{tds}</tr>')
    attrs = f'data-task="{escape(board.task)}" data-backbone="{escape(board.backbone)}"'
    direction = "desc" if desc else "asc"
    return (f'<table class="board sortable" {attrs} data-sort-key="{escape(metric)}" data-sort-dir="{direction}">'
            f"{head}<tbody>{''.join(body)}</tbody></table>")  # fmt: skip


def voice_table(board: Board) -> str:
    """The headline per voice (columns) and method (rows), or "" when no row reports voices."""
    found = voices(board)
    if not found:
        return ""
    head = thead([("method", "method", False), *((v, voice_header(v, n), True) for v, n in found.items())])
    body = []
    for row in board.rows:
        tds = td(Cell(row["variant"], row["variant"]), False) + "".join(
            td(voice_cell(board, row, voice), True) for voice in found
        )
        body.append(f'<tr class="{"failed" if is_failed(row) else "ok"}">{tds}</tr>')
    caption = f"<caption>{escape(board.headline.label)} per voice</caption>"
    return f'<table class="voices sortable">{caption}{head}<tbody>{"".join(body)}</tbody></table>'


def figures(plots: Mapping[str, bytes], title: str) -> str:
    """The plots as inline `data:image/png;base64` images, captioned from `PLOTS`."""
    items = []
    for kind, data in plots.items():
        caption = escape(f"{title}: {PLOTS[kind][0] if kind in PLOTS else kind}")
        source = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        items.append(f'<figure><img alt="{caption}" src="{source}"><figcaption>{caption}</figcaption></figure>')
    return f'<div class="plots">{"".join(items)}</div>' if items else ""


def section(board: Board, plots: Mapping[str, bytes], anchor: str) -> str:
    title = board_title(board)
    summary = escape(board_summary(board).replace("`", ""))
    note = tuning_note(board).replace("`", "")
    note = f'<p class="tuning">{escape(note)}</p>' if note else ""
    return (f'<section id="{anchor}"><h2>{escape(title)}</h2><p class="summary">{summary}</p>'
            f"{board_table(board)}{note}{voice_table(board)}{figures(plots, title)}</section>")  # fmt: skip


def header(meta: Mapping) -> str:
    """Title, meta line (when the cells were measured, machine, preset, commit, this command's wall time when it
    ran cells, when the report was written, command) and the legend."""
    parts = [f"measured {escape(measured(meta))}", f"on {escape(str(meta.get('machine') or '?'))}",
             f"commit <code>{escape(str(meta.get('git_commit') or '?'))}</code>"]  # fmt: skip
    if meta.get("preset"):
        parts.insert(2, f"preset <code>{escape(str(meta['preset']))}</code>")
    if meta.get("wall_seconds") is not None:
        parts.append(f"this command's wall time {escape(format_duration(meta['wall_seconds']))}")
    parts.append(f"report written {escape(str(meta.get('created', '?')))}")
    if meta.get("command"):
        parts.append(f"measured by <code>{escape(str(meta['command']))}</code>")
    legend = "".join(f"<li>{escape(item)}</li>" for item in LEGEND)
    legend += "<li>Click a column header to sort (again to reverse); failed runs stay last. The address then "
    legend += "links to that view (<code>#sort=task:column[:desc]</code>).</li>"
    legend = f'<details class="legend" open><summary>How to read this</summary><ul>{legend}</ul></details>'
    meta_line = " \u00b7 ".join(parts)
    return f'<h1>speechpeft leaderboard</h1><p class="meta">{meta_line}</p>{legend}'


def render_plots(all_boards: list[Board]) -> dict[tuple[str, str], dict[str, bytes]]:
    return {(b.task, b.backbone): task_plots([r for r in b.rows if not is_failed(r)]) for b in all_boards}


def html_page(rows: list[dict], meta: dict, plots: PlotSet | None = None) -> str:
    """The report as one offline HTML page; `plots` (PNG bytes by (task, backbone) and kind) are drawn if None."""
    all_boards = boards(rows)
    plots = render_plots(all_boards) if plots is None else plots
    stems = board_stems(all_boards)
    anchors = {key: stem.replace("plot-", "board-", 1) for key, stem in stems.items()}
    nav = " ".join(f'<a href="#{anchors[b.task, b.backbone]}">{escape(board_title(b))}</a>' for b in all_boards)
    sections = "".join(
        section(b, plots.get((b.task, b.backbone), {}), anchors[b.task, b.backbone]) for b in all_boards
    )
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>speechpeft leaderboard</title><style>{STYLE}</style></head><body>{header(meta)}"
            f"<nav>{nav}</nav>{sections}<script>{SCRIPT}</script></body></html>\n")  # fmt: skip


def write_report(rows: list[dict], meta: dict, out_dir: Path) -> dict[str, Path]:
    """Write `report.md`, `report.html` and `plot-<task>-<kind>.png` files into `out_dir` (created if missing).

    Returns the written paths: "markdown", "html", and each plot by its file stem ("plot-asr-params").
    Raises OSError when `out_dir` cannot be written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    all_boards = boards(rows)
    plots, stems = render_plots(all_boards), board_stems(all_boards)
    written: dict[str, Path] = {}
    links: dict[tuple[str, str], dict[str, str]] = {}
    for key, kinds in plots.items():
        for kind, data in kinds.items():
            stem = f"{stems[key]}-{kind}"
            written[stem] = out_dir / f"{stem}.png"
            written[stem].write_bytes(data)
            links.setdefault(key, {})[PLOTS[kind][0]] = written[stem].name
    written["markdown"], written["html"] = out_dir / "report.md", out_dir / "report.html"
    written["markdown"].write_text(markdown(rows, meta, links), encoding="utf-8")
    written["html"].write_text(html_page(rows, meta, plots), encoding="utf-8")
    return written
