"""The leaderboard report: Pareto front, Markdown numbers against hand-computed values, and the HTML page rendered
by a real headless Chromium (screenshot not blank; deep-link sorting reorders the rows)."""

import base64
import io
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from speechpeft.leaderboard.plots import pareto_front, task_plots
from speechpeft.leaderboard.report import markdown, print_table
from speechpeft.leaderboard.report_html import html_page, write_report

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium on PATH")
META = {"created": "2025-01-02T03:04:05Z", "preset": "quick", "machine": "test-box <cpu>", "git_commit": "abc1234",
        "measured_from": "2025-01-02T02:00:00+00:00", "measured_until": "2025-01-02T03:02:05+00:00",
        "compute_seconds": 7250.0, "wall_seconds": 3725.0, "command": "speechpeft leaderboard --quick"}  # fmt: skip
WHISPER = "openai/whisper-tiny.en"


def score(value: float, half_width: float) -> dict:
    return {"value": value, "low": value - half_width, "high": value + half_width}


COST_KEYS = ("trainable_parameters", "adapter_bytes", "train_seconds", "rtfx")
COSTS = {  # (task, variant): trainable parameters, adapter bytes, training seconds, RTFx
    ("asr", "frozen"): (0, 0, 0.0, 9.0),
    ("asr", "full"): (37_760_640, 151_061_672, 310.5, 8.0),
    ("asr", "lora"): (147_456, 592_000, 85.3, 7.5),
    ("tts", "frozen"): (0, 0, 0.0, 3.0),
    ("tts", "full"): (144_000_000, 580_000_000, 900.0, 2.8),
    ("tts", "lora"): (98_304, 400_000, 120.0, 2.9),
}


def row(task: str, variant: str, headline: str, value: float | None, **extra) -> dict:
    """A leaderboard row as `leaderboard.results.rows` makes it, with a ±0.02 interval and a per-voice split."""
    base = {"task": task, "backbone": WHISPER, "variant": variant, "method": variant, "status": "ok", "seeds": 1,
            "metric": headline, "spread": None, "error": None, "steps": 60, "split": "test", "utterances": 200,
            "seconds_per_utterance": 0.2}  # fmt: skip
    if value is None:
        return {**base, "status": "failed", "seeds": 0, "value": None, "low": None, "high": None, "metrics": {},
                "groups": {}, **extra}  # fmt: skip
    groups = {"flite-awb": {"utterances": 25, **score(value * 0.8, 0.03)},
              "flite-slt": {"utterances": 25, **score(value * 1.2, 0.03)}}  # fmt: skip
    costs = dict(zip(COST_KEYS, COSTS[task, variant], strict=True))
    metrics = {headline: score(value, 0.02)}
    return {**base, **score(value, 0.02), "metrics": metrics, "groups": groups, **costs, **extra}


def board_rows() -> list[dict]:
    """Two tasks; ASR: frozen 40 % WER, full 12 %, LoRA 10 %, Houlsby failed; TTS: MOS with one partial row."""
    oom = "CUDA out of memory | tried 2 GiB"
    asr = [row("asr", "frozen", "wer", 0.40), row("asr", "houlsby", "wer", None, error=oom),
           row("asr", "full", "wer", 0.12), row("asr", "lora", "wer", 0.10)]  # fmt: skip
    for r, cer in zip(asr, (0.25, None, 0.06, 0.05), strict=True):
        if cer is not None:
            r["metrics"]["cer"] = score(cer, 0.01)
    partial = {"spread": 0.05, "seeds": 2, "status": "partial", "error": "seed 3: NaN loss"}
    tts = [row("tts", "frozen", "ovrl_mos", 2.0), row("tts", "lora", "ovrl_mos", 2.5, **partial),
           row("tts", "full", "ovrl_mos", 2.4)]  # fmt: skip
    for r, mcd in zip(tts, (9.1, 6.5, 6.0), strict=True):
        r["metrics"]["mcd"] = score(mcd, 0.3)
    return [asr[0], tts[0], *asr[1:], *tts[1:]]


def table_lines(report: str, task: str) -> list[str]:
    """The lines of `task`'s main Markdown table, header and separator dropped."""
    section = report.split(f"## {task} ")[1].split("\n## ")[0]
    table = section.split("\n\n")[2]
    return table.splitlines()[2:]


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]


# Pareto front


@pytest.mark.parametrize(
    ("points", "direction", "front"),
    [
        ([(0, 0.40), (100, 0.10), (1000, 0.12), (50, 0.30)], "min", [0, 3, 1]),
        ([(0, 2.0), (100, 2.5), (1000, 2.4), (50, 1.9)], "max", [0, 1]),
        ([(10, 0.2), (10, 0.2), (20, 0.1)], "min", [0, 1, 2]),  # identical points: neither dominates the other
        ([(10, 0.2), (10, 0.3), (5, 0.3)], "min", [2, 0]),  # same cost, worse value; same value, higher cost
        ([(10, 0.5), (20, 0.5)], "max", [0]),  # same value for more cost is dominated
        ([], "min", []),
    ],
)
def test_pareto_front(points: list[tuple[float, float]], direction: str, front: list[int]) -> None:
    assert pareto_front(points, direction) == front


# Markdown and terminal


def test_markdown_tables_best_first_with_deltas() -> None:
    report = markdown(board_rows(), META)
    assert report.index("## asr \u00b7 openai/whisper-tiny.en") < report.index("## tts \u00b7 openai/whisper-tiny.en")
    assert "`abc1234`" in report and "1 h 02 min" in report and "test-box <cpu>" in report and "`quick`" in report
    asr = [cells(line) for line in table_lines(report, "asr")]
    assert [line[0] for line in asr] == ["lora", "full", "frozen", "houlsby"]
    lora, full, frozen, failed = asr
    assert lora[1] == "10.0 % [8.0, 12.0]"
    assert lora[2:4] == ["\u221230.0 pt (\u221275 %)", "\u22122.0 pt (\u221217 %)"]  # vs frozen 40 %, vs full 12 %
    assert full[2:4] == ["\u221228.0 pt (\u221270 %)", ""]
    assert frozen[2:4] == ["", "+28.0 pt (+233 %)"]
    assert lora[4:] == ["5.0 %", "147,456", "578.1 KiB", "85.3", "7.5"]  # CER, params, 592,000 B, seconds, RTFx
    assert full[6] == "144.1 MiB"
    assert failed[1] == "failed: CUDA out of memory \\| tried 2 GiB" and set(failed[2:]) == {""}
    tts = [cells(line) for line in table_lines(report, "tts")]
    assert [line[0] for line in tts] == ["lora (partial, 2 seeds)", "full", "frozen"]
    assert tts[0][1:4] == ["2.50 \u00b1 0.05 [2.48, 2.52]", "+0.50 (+25 %)", "+0.10 (+4 %)"]
    assert tts[0][4] == "6.50"  # MCD, compact


def test_the_header_says_when_the_cells_ran_and_when_the_report_was_written() -> None:
    measured = "2025-01-02T02:00:00+00:00 to 2025-01-02T03:02:05+00:00 (2 h 00 min of cell compute)"
    assert (f"Measured {measured} on test-box <cpu> (preset `quick`), commit `abc1234`, this command's wall time "
            "1 h 02 min; report written 2025-01-02T03:04:05Z.") in markdown(board_rows(), META)  # fmt: skip
    rewritten = {**META, "wall_seconds": None}  # --report-only: this command measured nothing
    report, page = markdown(board_rows(), rewritten), html_page(board_rows(), rewritten)
    assert f"Measured {measured} on" in report and f"measured {measured} \u00b7 on" in page
    assert "wall time" not in report and "wall time" not in page and "report written 2025-01-02T03:04:05Z" in page
    unrecorded = {**rewritten, "measured_from": None, "measured_until": None, "compute_seconds": None}
    assert "Measured at unrecorded times on" in markdown(board_rows(), unrecorded)


def test_markdown_per_voice_table() -> None:
    report = markdown(board_rows(), META)
    section = report.split("## asr ")[1].split("\n## ")[0]
    assert "| method | flite-awb (n=25) | flite-slt (n=25) |" in section
    assert "| lora | 8.0 % [5.0, 11.0] | 12.0 % [9.0, 15.0] |" in section


def test_print_table() -> None:
    console = Console(file=io.StringIO(), width=250, color_system=None)
    print_table(board_rows(), console)
    text = console.file.getvalue()
    assert "asr \u00b7 openai/whisper-tiny.en" in text and "tts \u00b7 openai/whisper-tiny.en" in text
    methods = [line.split("\u2502")[1].strip() for line in text.splitlines() if line.startswith("\u2502 ")]
    assert methods == ["lora", "full", "frozen", "houlsby", "lora (partial, 2 seeds)", "full", "frozen"]
    assert "failed: CUDA out of memory | tried 2 GiB" in text


# --tune: which rows were tuned, with how many trials


def tuned_rows() -> list[dict]:
    """`board_rows()` with ASR tuned by `--tune 4`: LoRA over two seeds (one trial pruned, one failed), full over
    one, frozen not (nothing to search); TTS untuned."""

    def study(pruned: int, failed: int, params: dict) -> dict:
        return {"tuned": True, "asked": 4, "completed": 4 - pruned - failed, "pruned": pruned, "failed": failed,
                "metric": "wer", "best": {"number": 2, "params": params, "validation": 0.1}}  # fmt: skip

    rows = board_rows()
    tuning = {"lora": [study(1, 0, {"lr": 0.0021, "rank": 16}), study(0, 1, {"lr": 0.004, "rank": 8})],
              "full": [study(0, 0, {"lr": 1.5e-4})],
              "frozen": [{"tuned": False, "asked": 4, "reason": "no knobs"}]}  # fmt: skip
    for r in rows:
        if r["task"] == "asr" and r["variant"] in tuning:
            r["tuning"] = tuning[r["variant"]]
    return rows


def test_tuned_rows_show_their_trials_and_best_values_and_a_line_says_how() -> None:
    report = markdown(tuned_rows(), META)
    asr = report.split("## asr ")[1].split("\n## ")[0]
    assert "| RTFx | tuned | best trial |" in asr
    lora, full, frozen, failed = (cells(line) for line in table_lines(report, "asr"))
    assert lora[-2:] == ["4 trials \u00d7 2 seeds (1 pruned, 1 failed)", "lr 2.1e-03, rank 16; lr 4.0e-03, rank 8"]
    assert full[-2:] == ["4 trials", "lr 1.5e-04"] and frozen[-2:] == ["not tuned", ""]
    assert len(failed) == len(lora) and failed[-2:] == ["", ""]
    assert ("Tuned on validation data (lora, full): 4 trials per cell of the learning rate (and the rank, prefix "
            "length or reduction factor)") in asr and "the best by validation wer" in asr  # fmt: skip
    assert "scored on `test`. Not tuned: frozen, no knobs." in asr
    tts = report.split("## tts ")[1]
    assert "tuned" not in tts.lower() and cells(table_lines(report, "tts")[0])[-1] == "2.9"  # RTFx stays last
    assert "Tuned on" not in markdown(board_rows(), META)


def test_tuned_rows_in_the_html_page_and_the_terminal() -> None:
    page = html_page(tuned_rows(), META, plots={})
    assert '<th data-key="tuned" data-type="num">tuned</th>' in page and 'data-sort="8">4 trials' in page
    assert '<p class="tuning">Tuned on validation data (lora, full)' in page and "scored on test." in page
    assert page.count('data-key="tuned"') == 1  # the untuned TTS table has no such column
    console = Console(file=io.StringIO(), width=300, color_system=None)
    print_table(tuned_rows(), console)
    text = console.file.getvalue()
    assert "4 trials \u00d7 2 seeds (1 pruned, 1 failed)" in text and "Not tuned: frozen, no knobs." in text


# plots and files


def test_plots_are_pngs() -> None:
    asr = [r for r in board_rows() if r["task"] == "asr"]
    plots = task_plots(asr)
    assert set(plots) == {"params", "bytes", "time"}
    for data in plots.values():
        image = Image.open(io.BytesIO(data))
        assert image.format == "PNG" and image.width > 500
        assert np.asarray(image.convert("L")).std() > 10  # something is drawn
    assert set(task_plots([r for r in asr if r["status"] == "failed"])) == {"params", "bytes", "time"}


def test_write_report(tmp_path: Path) -> None:
    paths = write_report(board_rows(), META, tmp_path / "report")
    kinds = ("params", "bytes", "time")
    assert set(paths) == {"markdown", "html", *(f"plot-{t}-{k}" for t in ("asr", "tts") for k in kinds)}
    assert all(path.is_file() and path.parent == tmp_path / "report" for path in paths.values())
    assert paths["markdown"].name == "report.md" and paths["html"].name == "report.html"
    assert paths["plot-asr-params"].name == "plot-asr-params.png"
    report = paths["markdown"].read_text()
    assert "](plot-asr-params.png)" in report and "](plot-tts-time.png)" in report


def test_html_is_self_contained_and_escaped() -> None:
    page = html_page(board_rows(), META)
    assert "http://" not in page and "https://" not in page and "<link" not in page
    assert "<script src" not in page and "@import" not in page and "url(" not in page
    sources = re.findall(r'<img [^>]*src="([^"]*)"', page)
    assert len(sources) == 6 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert Image.open(io.BytesIO(base64.b64decode(sources[0].split(",", 1)[1]))).format == "PNG"
    assert "test-box &lt;cpu&gt;" in page and "test-box <cpu>" not in page
    assert 'data-sort="0.1"' in page and 'data-sort="147456"' in page


# the page in a real browser


@pytest.fixture(scope="module")
def report_html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(board_rows(), META, tmp_path_factory.mktemp("report"))["html"]


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--no-first-run", f"--user-data-dir={profile}", *args]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)


class TableRows(HTMLParser):
    """Each table's `data-task` (or "") and the `data-variant` of its body rows, in document order."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[tuple[str, list[str]]] = []
        self.sorted_by: list[tuple[str, str]] = []  # (column key, aria-sort) of sorted headers

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "table":
            self.tables.append((found.get("data-task") or "", []))
        elif tag == "tr" and found.get("data-variant"):
            self.tables[-1][1].append(found["data-variant"])
        elif tag == "th" and found.get("aria-sort"):
            self.sorted_by.append((found["data-key"], found["aria-sort"]))


def dumped_rows(page: Path, fragment: str, profile: Path) -> TableRows:
    dom = chromium("--virtual-time-budget=2000", "--dump-dom", page.as_uri() + fragment, profile=profile).stdout
    parser = TableRows()
    parser.feed(dom)
    return parser


@needs_chromium
def test_chromium_screenshot_is_not_blank(report_html: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    chromium(f"--screenshot={shot}", "--window-size=1280,1600", "--hide-scrollbars", report_html.as_uri(),
             profile=tmp_path / "profile")  # fmt: skip
    pixels = np.asarray(Image.open(shot).convert("RGB"))
    assert pixels.shape == (1600, 1280, 3)
    assert pixels.std() > 20
    assert (pixels.min(axis=2) < 235).mean() > 0.05  # text, table rules and plots, not a white page
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200  # antialiased text, table shades, plot colours


@needs_chromium
@pytest.mark.parametrize(
    ("fragment", "asr_order", "sorted_by"),
    [
        ("", ["lora", "full", "frozen", "houlsby"], ("wer", "ascending")),  # as written: best first
        ("#sort=asr:params", ["frozen", "lora", "full", "houlsby"], ("params", "ascending")),
        ("#sort=asr:wer:desc", ["frozen", "full", "lora", "houlsby"], ("wer", "descending")),  # failed stays last
        ("#sort=asr:method", ["frozen", "full", "lora", "houlsby"], ("method", "ascending")),
    ],
)
def test_chromium_deep_link_sorts(report_html: Path, tmp_path: Path, fragment: str, asr_order: list[str],
                                  sorted_by: tuple[str, str]) -> None:  # fmt: skip
    parsed = dumped_rows(report_html, fragment, tmp_path / "profile")
    boards = {task: variants for task, variants in parsed.tables if task}
    assert boards == {"asr": asr_order, "tts": ["lora", "full", "frozen"]}  # the deep link leaves tts alone
    assert parsed.sorted_by[0] == sorted_by
