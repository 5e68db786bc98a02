"""Publish adapters to the Hugging Face Hub with a model card that carries their measured results
(`hub_pull` brings them back).

What goes up, in one commit: the adapter's safetensors and JSON files (PEFT's `adapter_config.json` +
`adapter_model.safetensors` for LoRA/AdaLoRA, our own files otherwise, the head, `speechpeft.json` without this
machine's paths) and a generated `README.md`. A repo that holds something else (another kind of adapter, or no
speechpeft adapter) is not overwritten without `force`.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from speechpeft.adapter_dir import RECORD, read_record
from speechpeft.errors import InputError
from speechpeft.hub_client import check_repo_id, hub_api, hub_errors
from speechpeft.hub_pull import DOWNLOADED, backbone_architecture

if TYPE_CHECKING:
    from huggingface_hub import HfApi, ModelCard, ModelInfo

LOCAL_OPTIONS = ("out", "store", "name")  # where the adapter was written here: not for the Hub
PUBLISHED = "published.json"  # written by `speechpeft leaderboard --publish` in the run's directory
SAME_KIND = ("backbone", "task", "method")  # a repo holding an adapter that differs in these is not replaced


class PublishWarning(UserWarning):
    """Publishing goes ahead, but something about it is not what the user may expect."""


def publish_adapter(adapter: str | Path, repo_id: str, *, private: bool = False, token: str | None = None,
                    endpoint: str | None = None, license: str | None = None, store: str | Path | None = None,
                    leaderboard: str | None = None, force: bool = False) -> dict:  # fmt: skip
    """Upload the adapter (a store name or directory) to the model repo `repo_id` in one commit, with its card.

    Returns {"url", "commit", "files", "changed"}. Raises InputError for a bad repo id, a missing token or adapter,
    an adapter with nothing to publish (`full`, or no trained weights), or a repo holding something else (unless
    `force`); UserError when the Hub fails (messages never hold the token).
    """
    from speechpeft.store import resolve_adapter

    check_repo_id(repo_id)
    directory = resolve_adapter(adapter, store)
    record = read_record(directory)
    _check_publishable(record, directory)
    _warn_about_evidence(directory, record)
    api = hub_api(token, endpoint, write=True)
    with hub_errors(token, f"the model repo {repo_id}", api.endpoint):
        before = _existing(api, repo_id, record, force, private)
        linked = _leaderboard_link(api, directory, leaderboard)
        with tempfile.TemporaryDirectory(prefix="speechpeft-publish-") as stage:
            files = _stage(directory, record, repo_id, Path(stage), license, linked)
            url = api.create_repo(repo_id, private=private, exist_ok=True)
            message = f"speechpeft: {record['method']} adapter for {record['task']}"
            commit = api.upload_folder(repo_id=repo_id, folder_path=stage, delete_patterns=DOWNLOADED,
                                       commit_message=message)  # fmt: skip
    changed = before is None or commit.oid != before.sha
    done = f"published {directory} to {url}" if changed else f"{url} already holds these files"
    print(f"{done} (commit {commit.oid[:12]}: {', '.join(files)})", file=sys.stderr)
    return {"url": str(url), "commit": commit.oid, "files": files, "changed": changed}


def _check_publishable(record: dict, directory: Path) -> None:
    if record["method"] == "full":
        raise InputError(f"{directory} is a full fine-tune (a whole model, not an adapter): share it with "
                         "transformers' `push_to_hub`; publish adapters of the other methods here")  # fmt: skip
    if not record.get("trainable_parameters"):
        raise InputError(f"{directory} has no trained weights (a {record['method']} baseline with nothing trained): "
                         "there is nothing to publish")  # fmt: skip


def _warn_about_evidence(directory: Path, record: dict) -> None:
    """Say when the card's numbers are weaker than a complete test evaluation (none, validation only, partial)."""
    from speechpeft.hub_results import gather

    evaluations = gather(directory, record)
    if not evaluations:
        problem = "has no evaluation: its card will say so"
    elif all("validation" in e.split for e in evaluations):
        problem = "has only its validation scores (the slice that picked the checkpoint): the card reports those"
    elif any(e.partial for e in evaluations):
        problem = "was evaluated on the first N utterances of a split only: the card reports those"
    else:
        return
    warnings.warn(f"{directory} {problem}; run `speechpeft eval --adapter {directory} --split test` first for "
                  "test scores", PublishWarning, stacklevel=3)  # fmt: skip


def _existing(api: HfApi, repo_id: str, record: dict, force: bool, private: bool) -> ModelInfo | None:
    """The repo's current state (None when it does not exist yet), after refusing to replace another kind of
    content and warning that `private` does not change an existing repo's visibility."""
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        info = api.model_info(repo_id)
    except RepositoryNotFoundError:
        return None
    files = sorted(s.rfilename for s in info.siblings or [] if s.rfilename != ".gitattributes")
    held = _held_record(api, repo_id, info.sha) if RECORD in files else None
    if files and not force:
        if held is None:
            raise InputError(f"{repo_id} already holds files that are not a speechpeft adapter ({', '.join(files[:4])}"
                             f"{', ...' if len(files) > 4 else ''}): publish to another repo, or pass --force to "
                             "replace them")  # fmt: skip
        if any(held.get(k) != record.get(k) for k in SAME_KIND):
            raise InputError(f"{repo_id} holds a {held.get('method')} adapter for {held.get('task')} on "
                             f"{held.get('backbone')}: publish this {record['method']} adapter to another repo, or "
                             "pass --force to replace it")  # fmt: skip
    if private and not info.private:
        warnings.warn(f"{repo_id} already exists and is public: --private applies to new repos only; change its "
                      "visibility in the repo's settings on the Hub", PublishWarning, stacklevel=3)  # fmt: skip
    return info


def _held_record(api: HfApi, repo_id: str, revision: str) -> dict:
    return json.loads(Path(api.hf_hub_download(repo_id, RECORD, revision=revision)).read_text())


def _stage(directory: Path, record: dict, repo_id: str, stage: Path, license: str | None,
           leaderboard: dict | None) -> list[str]:  # fmt: skip
    """Copy what is uploaded into `stage` and write the card; the file names, sorted."""
    from speechpeft.hub_card import build_card
    from speechpeft.tasks.catalog import TASKS

    for path in sorted(directory.glob("*")):
        if path.is_file() and path.suffix in (".safetensors", ".json"):
            shutil.copy2(path, stage / path.name)
    published = published_record(record)
    _point_config_at_backbone(stage / "adapter_config.json", published["backbone"])
    (stage / RECORD).write_text(json.dumps(published, indent=1) + "\n")
    card = build_card(directory, record, repo_id, TASKS.get(record["task"]).kind, license=license,
                      leaderboard=leaderboard)  # fmt: skip
    _check_card(card)
    card.save(stage / "README.md")
    return sorted(p.name for p in stage.iterdir())


def published_record(record: dict) -> dict:
    """The record as the Hub gets it: the backbone's architecture added, this machine's paths (`*_source`, where
    the adapter was written; a local backbone's or dataset's absolute path, replaced by the name as typed) left
    out."""
    options = {k: v for k, v in record.get("options", {}).items() if k not in LOCAL_OPTIONS}
    kept = {k: v for k, v in record.items() if not k.endswith("_source")}
    if kept.get("backbone_resolved_as") == "directory":
        kept["backbone"] = kept["backbone_as_given"]
    data = dict(kept.get("data") or {})
    if data.get("dataset_resolved_as") == "directory":
        data["dataset"] = data["dataset_as_given"]
    architecture = backbone_architecture(record["backbone"])
    return {**kept, "data": data, "options": options, "backbone_architecture": architecture}


def _check_card(card: ModelCard) -> None:
    """The card's YAML must parse back to the same metadata (the Hub renders `model-index` from it)."""
    from huggingface_hub import ModelCard

    parsed = ModelCard(str(card))
    results = len(parsed.data.eval_results or []), len(card.data.eval_results or [])
    if parsed.data.to_dict() != card.data.to_dict() or results[0] != results[1]:
        raise RuntimeError("the generated model card does not parse back to its own metadata")


def _point_config_at_backbone(config_path: Path, backbone: str) -> None:
    """PEFT's config names the base model by the local path it was trained from; the Hub copy names its id."""
    if config_path.exists():
        config = json.loads(config_path.read_text())
        if "base_model_name_or_path" in config:
            config["base_model_name_or_path"] = backbone
            config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _leaderboard_link(api: HfApi, directory: Path, repo_id: str | None) -> dict | None:
    """The leaderboard dataset to link: `repo_id` (it must exist), else the `published.json` of the run the adapter
    came from (cells/<task>/<backbone>/<variant>/seed-k/adapter)."""
    from huggingface_hub.errors import RepositoryNotFoundError

    if repo_id:
        try:
            info = api.dataset_info(check_repo_id(repo_id))
        except RepositoryNotFoundError:
            raise InputError(f"--leaderboard {repo_id}: no such dataset repo at {api.endpoint} (publish it with "
                             "`speechpeft leaderboard --report-only --publish REPO_ID`)") from None  # fmt: skip
        return {"repo_id": info.id, "url": f"{api.endpoint.rstrip('/')}/datasets/{info.id}"}
    for parent in list(directory.resolve().parents)[:7]:
        if (parent / PUBLISHED).exists():
            return json.loads((parent / PUBLISHED).read_text())
    return None
