"""The local adapter store: adapters by name (`asr/lora-flite-awb`) under one directory the user can set.

The directory is `--store`, else `$SPEECHPEFT_ADAPTERS`, else `~/.local/share/speechpeft/adapters`. An
adapter's name is its path below the store; any directory holding a `speechpeft.json` is an adapter.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from speechpeft.adapter_dir import RECORD
from speechpeft.errors import InputError, MissingInputError

_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*(/[a-z0-9][a-z0-9_.-]*)*$")


def store_root(store: str | os.PathLike | None = None) -> Path:
    if store is not None:
        return Path(store)
    if os.environ.get("SPEECHPEFT_ADAPTERS"):
        return Path(os.environ["SPEECHPEFT_ADAPTERS"])
    return Path.home() / ".local" / "share" / "speechpeft" / "adapters"


def adapter_path(name: str, store: str | os.PathLike | None = None) -> Path:
    """Where adapter `name` lives in the store (it need not exist yet)."""
    if not _NAME.match(name):
        raise InputError(f"adapter name {name!r}: use lowercase words joined by '/', e.g. asr/lora-flite-awb")
    return store_root(store) / name


def list_adapters(store: str | os.PathLike | None = None) -> list[dict]:
    """One summary per stored adapter, sorted by name."""
    root = store_root(store)
    records = sorted(root.rglob(RECORD)) if root.exists() else []
    return [_summary(root, path) for path in records]


def _summary(root: Path, record_path: Path) -> dict:
    record = json.loads(record_path.read_text())
    directory = record_path.parent
    size = sum(p.stat().st_size for p in directory.glob("*.safetensors"))
    return {"name": directory.relative_to(root).as_posix(), "task": record.get("task"),
            "method": record.get("method"), "backbone": record.get("backbone"),
            "trainable_parameters": record.get("trainable_parameters"), "size_bytes": size,
            "validation": record.get("validation", {})}  # fmt: skip


def show_adapter(name: str, store: str | os.PathLike | None = None) -> dict:
    directory = _existing(name, store)
    return {"name": name, "path": str(directory), **json.loads((directory / RECORD).read_text())}


def remove_adapter(name: str, store: str | os.PathLike | None = None) -> Path:
    directory = _existing(name, store)
    shutil.rmtree(directory)
    return directory


def _existing(name: str, store: str | os.PathLike | None) -> Path:
    directory = adapter_path(name, store)
    if not (directory / RECORD).exists():
        known = ", ".join(a["name"] for a in list_adapters(store)) or "none"
        raise MissingInputError(f"no adapter {name!r} in {store_root(store)}; stored adapters: {known}")
    return directory


def resolve_adapter(name_or_path: str | os.PathLike, store: str | os.PathLike | None = None) -> Path:
    """An adapter directory given as a path, or as a name in the store."""
    path = Path(name_or_path)
    if (path / RECORD).exists():
        return path
    if _NAME.match(str(name_or_path)) and (store_root(store) / str(name_or_path) / RECORD).exists():
        return store_root(store) / str(name_or_path)
    raise MissingInputError(
        f"{str(name_or_path)!r} is neither an adapter directory (with {RECORD}) nor an adapter in the store "
        f"{store_root(store)}; `speechpeft adapters list` shows the stored ones"
    )
