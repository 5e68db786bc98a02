"""Adapters with random weights, saved exactly as training saves them: for tests and benchmarks of loading,
hot-swapping and serving, where what an adapter computes must differ between adapters but need not be useful.

A fresh adapter is the identity (LoRA's B, a bottleneck's up-projection start at zero), so every trainable
tensor is redrawn from a seeded normal distribution: one attach, then one redraw and save per adapter. An
AdaLoRA adapter also gets a random final rank pattern, as a finished rank budget leaves one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from speechpeft.adapter_dir import save_adapter
from speechpeft.adapters.base import AdapterOptions, trainable_parameters
from speechpeft.adapters.catalog import METHODS
from speechpeft.backbones import FrozenBackbone
from speechpeft.backbones.fingerprint import local_weights_dir, weights_fingerprint


def save_random_adapters(
    backbone: FrozenBackbone,
    method: str,
    outs: Sequence[Path],
    *,
    task: str,
    options: AdapterOptions | None = None,
    labels: Sequence[str] | None = None,
    classifier: str | None = None,
    scale: float = 0.05,
    seed: int = 0,
    backbone_name: str | None = None,
) -> list[Path]:
    """Attach `method` to `backbone` (which it modifies) once, then save one adapter per directory of `outs`,
        each with every trainable tensor drawn from N(0, scale^2) under seed `seed + i`.

        The record (`speechpeft.json`) is what `speechpeft train` writes, with `data.dataset` None and a `random_init`
        entry saying how the weights were drawn; `backbone_name` is the name it records for the backbone (as given to
    `load_frozen`; by default its resolved source). Returns `outs` as paths.
    """
    model = METHODS.get(method).attach(backbone, options or AdapterOptions())
    weights = local_weights_dir(backbone.source)
    record = {
        "backbone": backbone_name or backbone.source, "backbone_source": backbone.source,
        "backbone_fingerprint": weights_fingerprint(weights) if weights else None,
        "family": backbone.spec.family, "task": task, "task_kind": "classify" if labels else backbone.task,
        "method": method, "labels": list(labels) if labels else None, "precision": backbone.precision,
        "trainable_parameters": trainable_parameters(model), "data": {"dataset": None},
        "options": {"classifier": classifier, "window_seconds": backbone.window_seconds},
    }  # fmt: skip
    for index, out in enumerate(outs):
        generator = torch.Generator().manual_seed(seed + index)
        with torch.no_grad():
            for param in model.parameters():
                if param.requires_grad:
                    draw = torch.randn(param.shape, generator=generator) * scale
                    param.copy_(draw.to(param.dtype))
        if method == "adalora":
            _final_rank_pattern(model, generator)
        save_adapter(model, Path(out), {**record, "random_init": {"seed": seed + index, "scale": scale}},
                     METHODS.get(method).save)  # fmt: skip
    return [Path(out) for out in outs]


def _final_rank_pattern(model: torch.nn.Module, generator: torch.Generator, keep: float = 0.6) -> None:
    """A rank pattern as AdaLoRA's budget leaves it (each singular value kept with probability `keep`), which PEFT
    saves pruned and reloads at the pruned ranks."""
    adapter = model.active_adapter
    values = {n.removesuffix(f".{adapter}"): p for n, p in model.base_model.model.named_parameters() if "lora_E" in n}
    model.peft_config[adapter].rank_pattern = {
        name: (torch.rand(param.shape[0], generator=generator) < keep).tolist() for name, param in values.items()
    }
