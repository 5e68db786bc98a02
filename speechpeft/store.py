"""The local adapter store: adapters by name (`asr/lora-flite-awb`) under one directory the user can set.

The directory is `--store`, else `$SPEECHPEFT_ADAPTERS`, else `~/.local/share/speechpeft/adapters`. An
adapter's name is its path below the store; any directory holding a `speechpeft.json` is an adapter, except
what an interrupted save leaves (`NAME.tmp`, `NAME.old`: see `directories`), which is never listed. Names stay
inside the store: no `..`, no absolute paths, no links that lead out.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path

from speechpeft.adapter_dir import RECORD, CorruptAdapterError, read_config, read_record
from speechpeft.directories import (
    RESERVED_SUFFIXES,
    RETIRED_SUFFIX,
    STAGING_SUFFIX,
    recover_directory,
    staged_path,
    writer_lock,
)
from speechpeft.errors import InputError, MissingInputError

_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*(/[a-z0-9][a-z0-9_.-]*)*")  # fullmatch: `$` also matches before a newline


def store_root(store: str | os.PathLike | None = None) -> Path:
    if store is not None:
        return Path(store)
    if os.environ.get("SPEECHPEFT_ADAPTERS"):
        return Path(os.environ["SPEECHPEFT_ADAPTERS"])
    return Path.home() / ".local" / "share" / "speechpeft" / "adapters"


def adapter_path(name: str, store: str | os.PathLike | None = None) -> Path:
    """Where adapter `name` lives in the store (it need not exist yet).

    Raises InputError for a name that is not lowercase words joined by '/', with a part ending in a suffix the
    store's saves use for themselves, or that leads out of the store through a link.
    """
    if not _NAME.fullmatch(name):
        raise InputError(f"adapter name {name!r}: use lowercase words joined by '/', e.g. asr/lora-flite-awb")
    if any(part.endswith(RESERVED_SUFFIXES) for part in name.split("/")):
        raise InputError(f"adapter name {name!r}: no part may end in {', '.join(RESERVED_SUFFIXES)} (the store's "
                         "own names for saves in progress); pick another name")  # fmt: skip
    root = store_root(store)
    path = root / name
    if not path.resolve().is_relative_to(root.resolve()):
        raise InputError(f"adapter {name!r} leads out of the store {root} (to {path.resolve()}) through a link: "
                         "refusing it; move the adapter into the store")  # fmt: skip
    return path


def list_adapters(store: str | os.PathLike | None = None) -> list[dict]:
    """One summary per stored adapter, sorted by name.

    Saves interrupted between their two renames are recovered first; half-written saves are not listed, nor (with
    a warning naming it) an adapter whose record is unreadable.
    """
    root = store_root(store)
    if not root.exists():
        return []
    for retired in root.rglob(f"*{RETIRED_SUFFIX}"):
        recover_directory(retired.with_name(retired.name.removesuffix(RETIRED_SUFFIX)))
    records = [path for path in sorted(root.rglob(RECORD)) if not _leftover(path.parent.relative_to(root))]
    return list(_summaries(root, records))


def _leftover(relative: Path) -> bool:
    """Whether a directory below the store is (inside) what an interrupted save left."""
    return any(part.endswith((STAGING_SUFFIX, RETIRED_SUFFIX)) for part in relative.parts)


def _summaries(root: Path, records: list[Path]) -> Iterator[dict]:
    for path in records:
        name = path.parent.relative_to(root).as_posix()
        try:
            yield _summary(name, path.parent)
        except CorruptAdapterError as error:
            warnings.warn(f"{error}; not listed (`speechpeft adapters rm {name}` removes it)", stacklevel=2)


def _summary(name: str, directory: Path) -> dict:
    record = read_record(directory)
    size = sum(p.stat().st_size for p in directory.glob("*.safetensors"))
    described = {key: record.get(key) for key in ("task", "method", "backbone", "trainable_parameters")}
    return {"name": name, **described, "size_bytes": size, "validation": record.get("validation", {})}


def show_adapter(name: str, store: str | os.PathLike | None = None) -> dict:
    """The adapter's record, after its method's settings as its files say (`method_settings`)."""
    directory = _existing(name, store)
    record = read_record(directory)
    return {"name": name, "path": str(directory), "settings": method_settings(directory, record), **record}


def method_settings(directory: Path, record: dict) -> dict:
    """What the adapter's method was set to, from its `adapter_config.json` (so adapters trained before a setting
    was recorded show it too): for PEFT's LoRA and AdaLoRA the rank, alpha and the scaling they make, dropout,
    target modules and modules to save (and AdaLoRA's rank schedule); for our methods the options they were attached
    with (prefix length and encoder, bottleneck style and reduction factor). What is not known is left out."""
    settings = {"method": record.get("method")}
    try:
        config = read_config(directory)
    except (InputError, MissingInputError) as error:  # missing or malformed: the record is still worth showing
        return {**settings, "unreadable": str(error)}
    if "peft_type" not in config:
        options = config.get("options")
        return {**settings, **(options if isinstance(options, dict) else {})}
    return {**settings, **_peft_settings(config), **_adapted_layers(record.get("tensors"))}


_PEFT_KEYS = {"target_r": "rank", "init_r": "init_rank", "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout",
              "target_modules": "target_modules", "modules_to_save": "modules_to_save", "tinit": "tinit",
              "tfinal": "tfinal", "deltaT": "delta_t", "total_step": "total_step"}  # fmt: skip


def _peft_settings(config: dict) -> dict:
    """A PEFT LoRA-like config's settings under our flags' names, with the scaling PEFT applies: alpha / rank
    (alpha / sqrt(rank) with rsLoRA), or for AdaLoRA alpha / init_r (its `ranknum` stays the initial rank)."""
    adaptive = "init_r" in config  # AdaLoRA: `r` is LoraConfig's unused default
    settings = {} if adaptive else {"rank": config.get("r")}
    settings |= {shown: config[key] for key, shown in _PEFT_KEYS.items() if key in config}
    alpha, rank = config.get("lora_alpha"), config.get("init_r" if adaptive else "r")
    if _positive(alpha) and _positive(rank):
        divisor = math.sqrt(rank) if config.get("use_rslora") and not adaptive else rank
        settings["scaling"] = round(alpha / divisor, 6)
    if isinstance(settings.get("target_modules"), list):
        settings["target_modules"] = sorted(map(str, settings["target_modules"]))
    kept = [sum(map(bool, mask)) for mask in (config.get("rank_pattern") or {}).values() if isinstance(mask, list)]
    if kept:  # AdaLoRA's final ranks: which of init_r singular values each matrix keeps
        settings["ranks_kept"] = {"matrices": len(kept), "min": min(kept), "mean": round(sum(kept) / len(kept), 2),
                                  "max": max(kept)}  # fmt: skip
    return {key: value for key, value in settings.items() if value is not None}


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < math.inf


def _adapted_layers(tensors: object) -> dict:
    """How many layers carry a LoRA matrix, from the record's list of the weights' tensors."""
    if not isinstance(tensors, dict):
        return {}
    return {"adapted_layers": sum(1 for name in tensors if name.endswith((".lora_A.weight", ".lora_A")))}


def remove_adapter(name: str, store: str | os.PathLike | None = None) -> Path:
    """Delete adapter `name` (after any save of it in progress), and what an interrupted save of it left."""
    directory = _existing(name, store)
    with writer_lock(directory):
        shutil.rmtree(directory)
        shutil.rmtree(staged_path(directory), ignore_errors=True)
    return directory


def _existing(name: str, store: str | os.PathLike | None) -> Path:
    directory = adapter_path(name, store)
    recover_directory(directory)
    if not (directory / RECORD).exists():
        known = ", ".join(a["name"] for a in list_adapters(store)) or "none"
        raise MissingInputError(f"no adapter {name!r} in {store_root(store)}; stored adapters: {known}")
    return directory


def resolve_adapter(name_or_path: str | os.PathLike, store: str | os.PathLike | None = None) -> Path:
    """An adapter directory given as a path, or as a name in the store (see `adapter_path` for what it refuses)."""
    path = Path(name_or_path)
    if path.name:  # not '', '.', '/': no directory of those names has a retired copy to put back
        recover_directory(path)
    if (path / RECORD).exists():
        return path
    if _NAME.fullmatch(str(name_or_path)):
        stored = adapter_path(str(name_or_path), store)
        recover_directory(stored)
        if (stored / RECORD).exists():
            return stored
    raise MissingInputError(
        f"{str(name_or_path)!r} is neither an adapter directory (with {RECORD}) nor an adapter in the store "
        f"{store_root(store)}; `speechpeft adapters list` shows the stored ones"
    )
