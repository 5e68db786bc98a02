"""`speechpeft leaderboard --report-only --publish`: the results table, its JSON and its dataset card reach a local
server speaking the Hub's HTTP API in one commit, the token is never shown, and each failure names its fix."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub import DatasetCard, HfApi

from speechpeft.cli import main
from speechpeft.leaderboard.publish import public_command

REPO_ID = "local-user/speechpeft-leaderboard"
WHISPER = "openai/whisper-tiny.en"
# task, variant, headline metric, its value, trainable parameters, when the cell started and finished (UTC)
CELLS = (("asr", "frozen", "wer", 0.5, 0, "10:00:00", "10:02:00"),
         ("asr", "lora", "wer", 0.2, 147_456, "11:00:00", "11:03:00"),
         ("intent", "lora", "accuracy", 0.9, 150_000, "10:01:00", "10:02:30"))  # fmt: skip
MEASURED = "2026-11-30T10:00:00+00:00 to 2026-11-30T11:03:00+00:00 (6 min 30 s of cell compute)"
MACHINE = {"cpu": "AMD EPYC", "cores": 2, "threads": 1, "memory_bytes": 25276063744, "gpu": None,
           "platform": "Linux-6.18-x86_64"}  # fmt: skip


def cell_result(task: str, variant: str, metric: str, value: float, parameters: int, started: str,
                finished: str) -> dict:  # fmt: skip
    """A finished cell's result.json, shaped as the runner writes it (runs/leaderboard/cells/.../result.json)."""
    score = {"value": value, "low": value - 0.05, "high": value + 0.05}
    return {
        "schema": 1, "id": f"{task}/openai--whisper-tiny.en/{variant}/seed-0", "task": task, "backbone": WHISPER,
        "variant": variant, "method": variant, "seed": 0, "settings": {"method": variant, "steps": 2},
        "corpus": "data/fake", "status": "ok",
        "run": {"git_commit": "abc1234", "versions": {"speechpeft": "0.1.0", "peft": "0.21.2"}, "hardware": MACHINE,
                "started": f"2026-11-30T{started}+00:00", "finished": f"2026-11-30T{finished}+00:00"},
        "training": {"steps": 2, "best_step": 2, "seconds": 1.5, "peak_memory_bytes": 10**8,
                     "trainable_parameters": parameters, "adapter_bytes": 4 * parameters + 16,
                     "validation": {metric: value}},
        "evaluation": {"split": "test", "utterances": 20, "seconds": 0.5, "metrics": {metric: score},
                       "groups": {"flite-awb": {"utterances": 20, **score}},
                       "latency": {"median_seconds": 0.1, "rtfx": 5.0}, "task_metrics": {}},
    }  # fmt: skip


@pytest.fixture
def board_out(tmp_path: Path) -> Path:
    """A leaderboard --out with three finished cells and nothing else (no report yet)."""
    out = tmp_path / "board"
    for cell in CELLS:
        result = cell_result(*cell)
        path = out / "cells" / result["id"] / "result.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(result))
    return out


def leaderboard(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """`speechpeft leaderboard ARGS` with sys.argv as a shell would set it (the report records the command)."""
    monkeypatch.setattr(sys, "argv", ["speechpeft", "leaderboard", *args])
    return main(["leaderboard", *args])


def test_publish_uploads_the_table_its_json_and_a_card_in_one_commit(local_hub, board_out, monkeypatch, capsys):
    flags = ("--publish", REPO_ID, "--token", local_hub.token, "--endpoint", local_hub.endpoint)
    assert leaderboard(monkeypatch, "--report-only", "--out", str(board_out), *flags) == 0
    printed = capsys.readouterr()
    files = local_hub.files(REPO_ID, repo_type="dataset")
    assert set(files) == {".gitattributes", "results.csv", "results.json", "README.md"}  # the Hub's own .gitattributes
    assert [request for request in local_hub.requests if "/commit/" in request[1]] == [
        ("POST", f"/api/datasets/{REPO_ID}/commit/main")
    ]
    assert files["results.csv"] == (board_out / "results.csv").read_bytes()
    with (board_out / "results.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == len(CELLS)

    table = json.loads(files["results.json"])
    assert sorted((r["task"], r["variant"], r["value"], r["trainable_parameters"]) for r in table["rows"]) == sorted(
        (task, variant, value, parameters) for task, variant, _, value, parameters, *_ in CELLS
    )
    meta = table["metadata"]
    assert meta["command"] == f"speechpeft leaderboard --out {board_out}"  # what measures: no publishing flags
    assert meta["preset"] == "default" and meta["git_commit"] == "abc1234" and meta["created"]
    assert meta["machine"] == "AMD EPYC, 2 cores" and meta["versions"] == {"speechpeft": "0.1.0", "peft": "0.21.2"}
    measured = (meta["measured_from"], meta["measured_until"], meta["compute_seconds"])
    assert measured == ("2026-11-30T10:00:00+00:00", "2026-11-30T11:03:00+00:00", 390.0)  # over the cells
    assert meta["wall_seconds"] is None  # --report-only measured nothing

    card = DatasetCard(files["README.md"].decode())
    assert card.data.license == "apache-2.0" and card.data.pretty_name == "speechpeft leaderboard"
    assert {"speech", "peft", "leaderboard", "asr", "intent"} <= set(card.data.tags)
    assert card.data.configs == [{"config_name": "default", "data_files": [{"split": "train", "path": "results.csv"}]}]
    assert "### asr · openai/whisper-tiny.en" in card.text and "| lora | 20.0 % [15.0, 25.0] |" in card.text
    assert f"Measured {MEASURED} on AMD EPYC, 2 cores," in card.text and f"written {meta['created']}" in card.text
    assert "`make leaderboard`" in card.text and "--report-only" not in card.text
    assert f"`{meta['command']}`" in card.text and f'load_dataset("{REPO_ID}", split="train")' in card.text

    head = HfApi(endpoint=local_hub.endpoint, token=local_hub.token).repo_info(REPO_ID, repo_type="dataset").sha
    published = json.loads((board_out / "published.json").read_text())
    assert published == {"repo_id": REPO_ID, "repo_type": "dataset", "url": f"{local_hub.endpoint}/datasets/{REPO_ID}",
                         "commit": head, "published": published["published"]}  # fmt: skip
    assert f"{published['url']}, commit {head}" in printed.err and "published 3 rows (3 cells)" in printed.err
    written = [printed.out, printed.err, *(p.read_text() for p in board_out.glob("*.*") if p.suffix != ".png")]
    assert not any(local_hub.token in text for text in [*written, *(f.decode() for f in files.values())])


def test_a_report_rewritten_later_says_when_the_cells_ran_not_when_it_was_written(board_out, monkeypatch):
    assert leaderboard(monkeypatch, "--report-only", "--out", str(board_out)) == 0
    report = (board_out / "report.md").read_text()
    assert f"Measured {MEASURED} on AMD EPYC, 2 cores (preset `default`), commit `abc1234`; report written " in report
    assert "wall time" not in report and "--report-only" not in report
    assert f"Measured by: `speechpeft leaderboard --out {board_out}`" in report
    page = (board_out / "report.html").read_text()
    assert f"measured {MEASURED}" in page and "wall time" not in page and "--report-only" not in page


def test_without_a_token_publishing_fails_before_the_report_naming_the_fix(
    local_hub, board_out, tmp_path, monkeypatch, capsys
):
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no saved login; the client read HF_HOME at import:
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    args = ("--report-only", "--out", str(board_out), "--publish", REPO_ID, "--endpoint", local_hub.endpoint)
    assert leaderboard(monkeypatch, *args) == 2
    assert "no Hub token: pass --token, set HF_TOKEN, or run `hf auth login`" in capsys.readouterr().err
    assert not (board_out / "report.md").exists() and not local_hub.requests


def test_a_token_the_hub_refuses_is_an_input_error_that_does_not_show_it(local_hub, board_out, monkeypatch, capsys):
    wrong = "hf_not_the_local_token_123"
    args = ("--report-only", "--out", str(board_out), "--publish", REPO_ID, "--endpoint", local_hub.endpoint)
    assert leaderboard(monkeypatch, *args, "--token", wrong) == 2
    printed = capsys.readouterr()
    assert "answered HTTP 401" in printed.err and "pass a valid one with --token or HF_TOKEN" in printed.err
    assert wrong not in printed.out + printed.err and not (board_out / "published.json").exists()


def test_hub_flags_without_publish_are_an_input_error(monkeypatch, capsys):
    assert leaderboard(monkeypatch, "--report-only", "--private", "--token", "hf_secret_value") == 2
    error = capsys.readouterr().err
    assert "--private, --token and --endpoint go with --publish: add --publish OWNER/NAME" in error
    assert "hf_secret_value" not in error


@pytest.mark.parametrize(
    "argv",
    [["--publish", "me/board", "--token", "hf_x"], ["--publish=me/board", "--token=hf_x"], ["--pub", "me/board",
     "--tok", "hf_x", "--priv", "--endpoint", "http://hub"], ["--report-only", "--publish", "me/board"],
     ["--report"]],
)  # fmt: skip
def test_the_recorded_command_leaves_out_report_only_and_the_publishing_flags_however_spelled(argv):
    assert public_command(["leaderboard", "--quick", *argv, "--out", "o"]) == "speechpeft leaderboard --quick --out o"
