"""`speechpeft leaderboard --publish OWNER/NAME`: the results table as a Hub dataset repo, with its dataset card.

One commit uploads `results.csv` (one line per cell, as written; the Hub's viewer shows it), `results.json` (the
leaderboard rows, seeds pooled, with the run's metadata) and `README.md` (the card: what the table is, a table per
task and backbone, the machine, date and command). `<out>/published.json` then records where it went; adapter model
cards read it to link to the dataset, so its keys stay: repo_id, repo_type, url, commit, published.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from speechpeft.errors import InputError
from speechpeft.hub_client import hub_api, hub_errors

if TYPE_CHECKING:
    from speechpeft.leaderboard.command import LeaderboardOptions

PUBLISH_FLAGS = {"--publish": True, "--private": False, "--token": True, "--endpoint": True}  # flag: takes a value
NOT_MEASURING = {**PUBLISH_FLAGS, "--report-only": False}  # what `public_command` leaves out
MAKE_TARGETS = {"default": "make leaderboard", "quick": "make leaderboard-quick"}  # preset: its Makefile target
TAGS = ("speech", "audio", "peft", "parameter-efficient-fine-tuning", "leaderboard", "benchmark")
VIEWER_CONFIGS = [{"config_name": "default", "data_files": [{"split": "train", "path": "results.csv"}]}]


def without_flags(argv: Sequence[str], flags: Mapping[str, bool]) -> list[str]:
    """`argv` less `flags` (flag: whether it takes a value), also given as `--flag=value` or abbreviated as argparse
    accepts them (`--tok`)."""
    kept, skip = [], False
    for arg in argv:
        name = arg.split("=", 1)[0]
        flag = next((f for f in flags if name.startswith("--") and len(name) > 2 and f.startswith(name)), None)
        if skip or flag is None:
            kept += [] if skip else [arg]
            skip = False
        else:
            skip = flags[flag] and "=" not in arg
    return kept


def public_command(argv: Sequence[str]) -> str:
    """The command that measures the numbers, as the report and the card show it: `speechpeft ARGS` without
    --report-only (which only rewrites the report) and the publishing flags, so a token given with --token is
    never written down."""
    return "speechpeft " + shlex.join(without_flags(argv, NOT_MEASURING))


def check_target(options: LeaderboardOptions) -> None:
    """Fail before any cell runs when publishing cannot work: a malformed repo id, offline mode, or no token.

    Raises InputError naming the fix.
    """
    from huggingface_hub import is_offline_mode
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(options.publish)
    except HFValidationError as error:
        raise InputError(f"--publish {options.publish!r} is not a Hub repo id ({error}): use OWNER/NAME") from None
    if is_offline_mode():
        raise InputError("--publish needs the Hub but HF_HUB_OFFLINE is set (`make leaderboard` sets it): publish "
                         "afterwards with `speechpeft leaderboard --report-only --publish REPO_ID`")  # fmt: skip
    hub_api(options.token, options.endpoint, write=True)


def publish(options: LeaderboardOptions, results: list[dict], meta: dict) -> dict:
    """Create the dataset repo `options.publish` (kept if it exists), upload results.csv, results.json and the
    card in one commit, and write `<out>/published.json`; returns its record.

    Raises InputError for a token the Hub refuses or an owner it cannot find, UserError when the Hub cannot be
    reached or fails otherwise; messages never hold the token.
    """
    from huggingface_hub import CommitOperationAdd

    from speechpeft.leaderboard.results import rows

    out, table, meta = options.out_dir, rows(results), {**meta, "versions": versions(results)}
    api = hub_api(options.token, options.endpoint, write=True)
    print(f"publishing {len(table)} rows to the Hub dataset {options.publish} at {api.endpoint} ...", file=sys.stderr)
    with hub_errors(options.token, f"the dataset repo {options.publish}", api.endpoint):
        repo = api.create_repo(options.publish, repo_type="dataset", private=options.private, exist_ok=True)
        files = repo_files(out / "results.csv", table, meta, repo.repo_id)
        commit = api.create_commit(
            repo.repo_id, [CommitOperationAdd(name, data) for name, data in files.items()], repo_type="dataset",
            commit_message=f"speechpeft leaderboard: {len(table)} rows, preset {meta.get('preset')}",
        )  # fmt: skip
    record = {"repo_id": repo.repo_id, "repo_type": "dataset", "url": repo.url, "commit": commit.oid,
              "published": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
    (out / "published.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"published {len(table)} rows ({len(results)} cells) to {repo.url}, commit {commit.oid}; recorded in "
          f"{out / 'published.json'}", file=sys.stderr)  # fmt: skip
    return record


def repo_files(csv_path: Path, table: list[dict], meta: dict, repo_id: str) -> dict[str, bytes]:
    """The repo's files by name: results.csv as written, results.json (`{"schema", "metadata", "rows"}`), the card."""
    as_json = json.dumps({"schema": 1, "metadata": meta, "rows": table}, indent=1) + "\n"
    return {"results.csv": csv_path.read_bytes(), "results.json": as_json.encode(),
            "README.md": dataset_card(table, meta, repo_id).encode()}  # fmt: skip


def versions(results: list[dict]) -> dict[str, str]:
    """Each package's version as the cells recorded it; several, comma-joined, when cells ran with different ones."""
    seen: dict[str, set[str]] = {}
    for result in results:
        for package, version in ((result.get("run") or {}).get("versions") or {}).items():
            seen.setdefault(package, set()).add(str(version))
    return {package: ", ".join(sorted(found)) for package, found in seen.items()}


def dataset_card(table: list[dict], meta: dict, repo_id: str) -> str:
    """The dataset repo's README.md: YAML metadata (license, tags, the viewer's config on results.csv) and a body
    with the report's own tables. Raises RuntimeError if the card does not parse back to that metadata."""
    from huggingface_hub import DatasetCard, DatasetCardData

    tasks = list(dict.fromkeys(row["task"] for row in table))
    data = DatasetCardData(license="apache-2.0", language=["en"], pretty_name="speechpeft leaderboard",
                           tags=[*TAGS, *tasks], configs=VIEWER_CONFIGS)  # fmt: skip
    card = DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{card_body(table, meta, repo_id)}")
    if card.data.to_dict() != data.to_dict():
        raise RuntimeError(f"the dataset card's YAML does not parse back: {card.data.to_dict()}")
    return str(card)


def card_body(table: list[dict], meta: dict, repo_id: str) -> str:
    """What the table is, its files, how it was made (machine, date, command, versions), then the report's
    table per task and backbone (without the plots and their legend: they are not uploaded)."""
    from speechpeft.leaderboard.report import LEGEND, board_markdown, boards

    intro = ("Parameter-efficient fine-tuning methods (LoRA, AdaLoRA, prefix tuning, bottleneck adapters) against "
             "the frozen backbone and full fine-tuning, on speech tasks, as `speechpeft leaderboard` measured them: "
             "each cell trains one method on one task and backbone with one seed, then scores it on a held-out "
             "split with 95 % bootstrap intervals.")  # fmt: skip
    files = ("- `results.csv`: one line per cell (task, backbone, method variant, seed): status, headline metric "
             "with its interval, every other metric, trainable parameters, adapter bytes, training and evaluation "
             "time, latency. The dataset viewer shows it.\n- `results.json`: the leaderboard rows (seeds pooled, "
             "scores per voice) and the run's metadata.")  # fmt: skip
    load = f'```python\nfrom datasets import load_dataset\n\ncells = load_dataset("{repo_id}", split="train")\n```'
    legend = "\n".join(f"- {item}" for item in LEGEND if not item.startswith("Pareto"))
    boards_md = [board_markdown(board).replace("## ", "### ", 1) for board in boards(table)]
    parts = ["# speechpeft leaderboard", intro, str(meta.get("description") or ""), "## Files", files, load,
             "## How it was made", provenance(meta), "## Results", legend, *boards_md]  # fmt: skip
    return "\n\n".join(part for part in parts if part) + "\n"


def provenance(meta: dict) -> str:
    """When and where the cells were measured, the commit, versions, when the table was written, and the command
    that reproduces the numbers."""
    from speechpeft.leaderboard.report import measured

    command = meta.get("command") or "speechpeft leaderboard"
    make = MAKE_TARGETS.get(meta.get("preset") or "", command)
    packages = ", ".join(f"{name} {version}" for name, version in (meta.get("versions") or {}).items())
    lines = [f"Measured {measured(meta)} on {meta.get('machine') or '?'}, preset `{meta.get('preset')}`, "
             f"speechpeft commit `{meta.get('git_commit') or '?'}`; this table written {meta.get('created', '?')}.",
             f"Versions: {packages or '?'}.",
             f"The numbers come from `{make}`: to reproduce them, run `{command}` in a speechpeft checkout at that "
             "commit (it synthesises the corpora, then trains and scores every cell)."]  # fmt: skip
    return "\n".join(f"- {line}" for line in lines)
