"""The adapter directory: PEFT's files plus `speechpeft.json`, the record of what the adapter is.

    adapter_config.json        PEFT's config (or ours, for methods PEFT lacks)
    adapter_model.safetensors  trainable weights only, task head included
    speechpeft.json            backbone id + weight fingerprint, task, method, label map, metrics, data, versions

Writes go to a temporary directory renamed into place, so a crash never leaves half an adapter.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from speechpeft.directories import recover_directory, replace_directory, staging_directory
from speechpeft.errors import MissingInputError

if TYPE_CHECKING:  # only annotations: the CLI's store commands import this module without torch
    import torch

RECORD = "speechpeft.json"
VERSIONED = ("speechpeft", "torch", "transformers", "peft", "accelerate", "datasets", "bitsandbytes")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {**versions, "python": platform.python_version()}


def save_adapter(
    model: torch.nn.Module, directory: Path, record: dict, save: Callable[[torch.nn.Module, Path], None]
) -> None:
    """The method's files (trainable weights only, through `save`) and the record, atomically."""
    directory = directory.resolve()
    tmp = staging_directory(directory)
    save(model, tmp)
    (tmp / RECORD).write_text(json.dumps({**record, "versions": package_versions()}, indent=1) + "\n")
    replace_directory(tmp, directory)


def read_record(directory: Path) -> dict:
    """The adapter's record (an adapter a crash mid-save set aside is put back first).

    Raises MissingInputError (a FileNotFoundError) when `directory` holds no record.
    """
    recover_directory(Path(directory))
    path = Path(directory) / RECORD
    if not path.exists():
        raise MissingInputError(
            f"{directory} is not a speechpeft adapter (no {RECORD}); train one with `speechpeft train`"
        )
    return json.loads(path.read_text())
