"""The adapter directory: PEFT's files plus `speechpeft.json`, the record of what the adapter is.

    adapter_config.json        PEFT's config (or ours, for methods PEFT lacks)
    adapter_model.safetensors  trainable weights only, task head included
    speechpeft.json            backbone id + weight fingerprint, task, method, label map, metrics, data, versions,
                               and `tensors`: the name and shape of every tensor in the weights file

Writes go to a temporary directory renamed into place, so a crash never leaves half an adapter; saves of one
directory take turns. Loaders refuse what does not hold together: a weights file that is truncated or corrupt,
that differs from the tensors its record lists, a config of another method, pickled files beside them.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from speechpeft.directories import recover_directory, staged_replacement
from speechpeft.errors import InputError, MissingInputError

if TYPE_CHECKING:  # only annotations: the CLI's store commands import this module without torch
    import torch

RECORD = "speechpeft.json"
WEIGHTS_FILE, CONFIG_FILE = "adapter_model.safetensors", "adapter_config.json"
VERSIONED = ("speechpeft", "torch", "transformers", "peft", "accelerate", "datasets", "bitsandbytes")
# files that unpickle (or may) when loaded: torch.save/pickle/joblib, NumPy object arrays
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz", ".msgpack", ".h5")
FIX = "save the adapter again, or pull it again from where it came"
Shapes = dict[str, list[int]]  # tensor name -> shape


class CorruptAdapterError(InputError):
    """An adapter's files are unreadable, unsafe, or do not hold together (weights against record, config or model)."""


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
    """The method's files (trainable weights only, through `save`) and the record listing the weights' tensors,
    atomically; a concurrent save of the same directory waits for this one."""
    directory = directory.resolve()
    with staged_replacement(directory) as tmp:
        save(model, tmp)
        tensors = {"tensors": weights_manifest(tmp)} if (tmp / WEIGHTS_FILE).exists() else {}
        (tmp / RECORD).write_text(json.dumps({**record, **tensors, "versions": package_versions()}, indent=1) + "\n")


def read_record(directory: Path) -> dict:
    """The adapter's record (an adapter a crash mid-save set aside is put back first).

    Raises MissingInputError (a FileNotFoundError) when `directory` holds no record, CorruptAdapterError when it is
    not a JSON object.
    """
    recover_directory(Path(directory))
    path = Path(directory) / RECORD
    if not path.is_file():
        raise MissingInputError(
            f"{directory} is not a speechpeft adapter (no {RECORD}); train one with `speechpeft train`"
        )
    return _json_object(path)


def read_config(directory: Path) -> dict:
    """The adapter's `adapter_config.json`; MissingInputError when absent, CorruptAdapterError when malformed."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise MissingInputError(f"adapter {directory} has no {CONFIG_FILE}: {FIX}")
    return _json_object(path)


def _json_object(path: Path) -> dict:
    try:
        content = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorruptAdapterError(f"{path} is not valid JSON ({error}): {FIX}") from None
    if not isinstance(content, dict):
        raise CorruptAdapterError(f"{path} holds a JSON {type(content).__name__}, not an object: {FIX}")
    return content


def check_adapter(directory: Path, record: dict) -> Shapes:
    """What a loader checks before any model loads, and the weights file's manifest (`weights_manifest`).

    Raises CorruptAdapterError when the record does not name its backbone, task and method, the config is another
    method's, or the weights file is unreadable, beside pickled files, or unlike the tensors the record lists;
    MissingInputError when the config or the weights file is absent.
    """
    missing = [name for name in ("backbone", "task", "method") if not isinstance(record.get(name), str)]
    if missing:
        raise CorruptAdapterError(f"{Path(directory) / RECORD} does not name its {', '.join(missing)}: {FIX}")
    check_config_method(read_config(directory), record["method"], directory)
    return _check_listed(directory, record)


def check_config_method(config: dict, method: str, directory: Path) -> None:
    """Raise CorruptAdapterError unless `adapter_config.json` is `method`'s: ours name it (`speechpeft_method`),
    PEFT's by `peft_type` (`LORA` for lora)."""
    found = config.get("speechpeft_method") or str(config.get("peft_type", "")).lower()
    if found != method:
        raise CorruptAdapterError(f"{Path(directory) / CONFIG_FILE} is a config for {found or 'no known method'!r}, "
                                  f"but the record says the adapter is {method!r}: {FIX}")  # fmt: skip


def weights_manifest(directory: Path) -> Shapes:
    """The name and shape of each tensor in `directory`'s weights file, read from its header (no weights loaded).

    Raises CorruptAdapterError for pickled files in `directory` (never loaded: they can run code) or a truncated
    or corrupt weights file, MissingInputError when there is none.
    """
    from safetensors import SafetensorError, safe_open

    directory = Path(directory)
    pickled = sorted(path.name for path in directory.iterdir() if path.name.lower().endswith(PICKLE_SUFFIXES))
    if pickled:
        raise CorruptAdapterError(
            f"adapter {directory} holds pickled files ({', '.join(pickled)}), which can run "
            "code when loaded: refusing it (speechpeft loads weights from safetensors only)"
        )
    path = directory / WEIGHTS_FILE
    if not path.is_file():
        raise MissingInputError(f"adapter {directory} has no {WEIGHTS_FILE}: {FIX}")
    try:
        with safe_open(str(path), framework="pt") as weights:
            return {name: list(weights.get_slice(name).get_shape()) for name in weights.keys()}  # noqa: SIM118 (not iterable)
    except SafetensorError as error:
        raise CorruptAdapterError(f"{path} is truncated or corrupt ({error}): {FIX}") from None


def _check_listed(directory: Path, record: dict) -> Shapes:
    """The weights file's manifest, checked against the one the record lists (adapters saved before records listed
    their tensors are checked by their loaders only)."""
    found, listed = weights_manifest(directory), record.get("tensors")
    if listed is None:
        return found
    if not isinstance(listed, dict):
        raise CorruptAdapterError(f"{Path(directory) / RECORD}: `tensors` is not a name -> shape map: {FIX}")
    check_tensors(directory, found, listed, f"the tensors its {RECORD} lists")
    return found


def check_tensors(directory: Path, found: Shapes, expected: Shapes, expected_by: str) -> None:
    """Raise CorruptAdapterError when the weights `found` lack a tensor of `expected`, hold one it lacks, or hold
    one at another shape, naming the first few of each and `expected_by` (where the expectation comes from)."""
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    common = sorted(set(found) & set(expected))
    reshaped = [f"{n} {found[n]} (expected {list(expected[n])})" for n in common if found[n] != list(expected[n])]
    kinds = (("lacks", missing), ("holds unexpected", unexpected), ("has other shapes:", reshaped))
    problems = [f"{what} {_few(names)}" for what, names in kinds if names]
    if problems:
        raise CorruptAdapterError(
            f"{Path(directory) / WEIGHTS_FILE} does not match {expected_by}: it {'; '.join(problems)} "
            f"(damaged, edited, or trained on another backbone?): {FIX}"
        )


def _few(names: list[str], shown: int = 3) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
