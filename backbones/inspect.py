"""Describe a checkpoint without loading its weights: family, config and parameter count."""

from __future__ import annotations

import math
from pathlib import Path

from safetensors import safe_open

from speechpeft.backbones.builtin import resolve_source
from speechpeft.backbones.loading import _hub_kwargs, _load_config
from speechpeft.backbones.spec import spec_for_model_type


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
    if Path(name_or_path).is_dir():
        info["parameters"] = count_safetensors_parameters(Path(name_or_path))
    return info
