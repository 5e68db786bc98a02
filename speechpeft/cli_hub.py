"""The `publish` and `pull` commands' flags (the work is in `speechpeft.hub`)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from speechpeft.errors import InputError
from speechpeft.hub_client import ENDPOINT_HELP, TOKEN_HELP, check_repo_id

STORE_HELP = "adapter store directory (default: $SPEECHPEFT_ADAPTERS, else ~/.local/share/speechpeft/adapters)"


def add_hub_commands(groups: argparse._SubParsersAction) -> None:
    _add_publish(groups)
    _add_pull(groups)


def _add_publish(groups: argparse._SubParsersAction) -> None:
    publish = groups.add_parser(
        "publish", help="upload an adapter to the Hugging Face Hub with a model card of its measured results",
        description="Upload an adapter's files (safetensors and JSON: PEFT's for LoRA/AdaLoRA, ours otherwise, "
        "speechpeft.json) and a generated model card (README.md: metadata with model-index results from the "
        "adapter's evaluations, a usage snippet, its training and limitations) to a model repo, in one commit. "
        "Evaluate first (`speechpeft eval --adapter ADAPTER --split test`); leaderboard cells carry their evaluation.",
    )  # fmt: skip
    publish.add_argument("adapter", metavar="ADAPTER", help="adapter name in the store, or an adapter directory")
    publish.add_argument("repo_id", metavar="REPO_ID", type=repo_id, help="model repo to create or update, OWNER/NAME")
    publish.add_argument("--private", action="store_true", help="create the repo private (an existing repo keeps "
                         "its visibility)")  # fmt: skip
    publish.add_argument("--license", type=license_id, help="the card's license (default: the backbone's: "
                         "apache-2.0 for Whisper, mit for SpeechT5, else other)")  # fmt: skip
    publish.add_argument("--force", action="store_true", help="replace what the repo holds even when it is not "
                         "this kind of adapter (other method, task or backbone, or not speechpeft)")  # fmt: skip
    publish.add_argument("--leaderboard", metavar="REPO_ID", type=repo_id, help="leaderboard dataset repo the "
                         "card links to (default: the one `speechpeft leaderboard --publish` recorded)")  # fmt: skip
    _add_common(publish, "write")
    publish.set_defaults(command="publish")


def _add_pull(groups: argparse._SubParsersAction) -> None:
    pull = groups.add_parser(
        "pull", help="download an adapter from the Hugging Face Hub into the local store",
        description="Download an adapter repo's safetensors and JSON files (a repo holding pickled files is refused) "
        "into the store, after checking its backbone: another architecture is refused, other weights of the same "
        "backbone only warn.",
    )  # fmt: skip
    pull.add_argument("repo_id", metavar="REPO_ID", type=repo_id, help="model repo, OWNER/NAME (or hf://OWNER/NAME)")
    pull.add_argument("--revision", help="branch, tag or commit (default: main)")
    pull.add_argument("--name", help="store name (default: REPO_ID lower-cased)")
    pull.add_argument(
        "--force",
        action="store_true",
        help="replace a store adapter of that name pulled from another repo or trained here",
    )
    _add_common(pull, "read (private repos)")
    pull.set_defaults(command="pull")


def _add_common(parser: argparse.ArgumentParser, access: str) -> None:
    parser.add_argument("--token", help=TOKEN_HELP.format(access=access))
    parser.add_argument("--endpoint", help=ENDPOINT_HELP)
    parser.add_argument("--store", type=Path, default=None, help=STORE_HELP)


def repo_id(value: str) -> str:
    """argparse `type` for a Hub repo id, so a bad one is refused before any heavy import."""
    from speechpeft.hub_client import HUB_PREFIX

    try:
        return check_repo_id(value.removeprefix(HUB_PREFIX))
    except InputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def license_id(value: str) -> str:
    """argparse `type` for a card's license: a Hub license id (lowercase, e.g. apache-2.0, mit, cc-by-4.0, other)."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9.+-]*", value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a license id: use a Hub one such as apache-2.0, mit, "
                                         "cc-by-4.0, or `other`")  # fmt: skip
    return value
