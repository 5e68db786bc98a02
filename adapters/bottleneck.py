"""Bottleneck adapters (Houlsby et al., 2019; Pfeiffer et al., 2021) built on PEFT's public tuner classes.

An adapter is a residual down-projection / nonlinearity / up-projection, `h + up(relu(down(h)))`, on the
output of a sub-block, with `down` of width d_model / `reduction_factor`. Houlsby puts one after the
attention block and one after the feed-forward block of every layer; Pfeiffer only after the feed-forward
block. `up` starts at zero, so a fresh adapter leaves the backbone's outputs exactly as they were.

PEFT has no bottleneck adapters and only registers methods named in its closed `PeftType` enum, so this
is a `BaseTuner` (target matching, per-adapter-name `ModuleDict`s, `set_adapter`, enable/disable) used
directly, without `get_peft_model` and without patching PEFT. Its files are our own: `adapter_config.json`
(style, reduction factor, targets) and the trainable tensors in `adapter_model.safetensors`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

import peft
import torch
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer, check_target_module_exists

from speechpeft.adapters.base import BOTTLENECK_STYLES, AdapterOptions, own_files_method, register_method
from speechpeft.backbones import FrozenBackbone
from speechpeft.errors import InputError


@dataclass
class BottleneckConfig(peft.PeftConfig):
    """A PEFT config (no `peft_type`: the enum is closed) for one bottleneck adapter."""

    style: str = field(default="pfeiffer", metadata={"help": "pfeiffer: after FFN; houlsby: after attention and FFN"})
    reduction_factor: int = field(default=16, metadata={"help": "d_model / bottleneck width"})
    target_modules: list[str] = field(default_factory=list, metadata={"help": "sub-block name suffixes"})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.style not in BOTTLENECK_STYLES:
            raise InputError(f"unknown bottleneck style {self.style!r}; valid: {', '.join(BOTTLENECK_STYLES)}")
        if self.reduction_factor < 1:
            raise InputError("--reduction-factor must be >= 1")


def output_width(modules: Iterable[torch.nn.Module]) -> int | None:
    """The width of a sub-block's output, from the block followed by its submodules in registration order (as
    `module.modules()` gives them); None when none of them is a projection.

    A projection targeted itself (Whisper's fc2) gives its own output width. A block gives the input width of its
    first projection: an adapter sits where the block's output rejoins the residual stream (Houlsby et al. 2019,
    https://arxiv.org/abs/1902.00751, fig. 2), so that output is as wide as the block's input, whatever its output
    projection is called (out_proj, output_dense, linear_out, a Conv1d's conv2) and whatever else it holds
    (WavLM's gated position bias, a Conformer's relative-position projection).
    """
    modules = iter(modules)
    own = _projection_widths(next(modules))
    if own is not None:
        return own[1]
    return next((widths[0] for module in modules if (widths := _projection_widths(module)) is not None), None)


def _projection_widths(module: torch.nn.Module) -> tuple[int, int] | None:
    """(input width, output width) of a linear layer (int8 ones too) or a convolution; None for anything else."""
    for inputs, outputs in (("in_features", "out_features"), ("in_channels", "out_channels")):
        if hasattr(module, inputs) and hasattr(module, outputs):
            return getattr(module, inputs), getattr(module, outputs)
    return None


def _width(module: torch.nn.Module) -> int:
    width = output_width(module.modules())
    if width is None:
        raise ValueError(f"cannot tell the output width of {type(module).__name__} for a bottleneck adapter")
    return width


class BottleneckLayer(torch.nn.Module, BaseTunerLayer):
    """A sub-block followed by the active bottleneck adapters, added to its (first) output."""

    adapter_layer_names = ("bottleneck_down", "bottleneck_up")

    def __init__(self, base_layer: torch.nn.Module) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.bottleneck_down = torch.nn.ModuleDict()
        self.bottleneck_up = torch.nn.ModuleDict()
        self._disable_adapters = False
        self.merged_adapters = []

    def update_layer(self, adapter_name: str, reduction_factor: int) -> None:
        width = _width(self.base_layer)
        self.bottleneck_down[adapter_name] = torch.nn.Linear(width, max(1, width // reduction_factor))
        self.bottleneck_up[adapter_name] = torch.nn.Linear(max(1, width // reduction_factor), width)
        torch.nn.init.zeros_(self.bottleneck_up[adapter_name].weight)
        torch.nn.init.zeros_(self.bottleneck_up[adapter_name].bias)
        self._move_adapter_to_device_of_base_layer(adapter_name)
        for layers in (self.bottleneck_down, self.bottleneck_up):  # fp32 even on bf16 backbones, as PEFT's LoRA
            layers[adapter_name].float()
        self.set_adapter(adapter_name)

    def forward(self, *args, **kwargs):
        output = self.base_layer(*args, **kwargs)
        if self.disable_adapters:
            return output
        hidden = output[0] if isinstance(output, tuple) else output
        for name in self.active_adapters:
            if name in self.bottleneck_down:
                down, up = self.bottleneck_down[name], self.bottleneck_up[name]
                hidden = hidden + up(torch.relu(down(hidden.to(down.weight.dtype)))).to(hidden.dtype)
        return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


class BottleneckModel(BaseTuner):
    """PEFT tuner that wraps each targeted sub-block in a `BottleneckLayer`."""

    prefix = "bottleneck_"
    tuner_layer_cls = BottleneckLayer
    target_module_mapping: ClassVar[dict] = {}  # no defaults: targets always come from the backbone's spec

    @staticmethod
    def _check_target_module_exists(config: BottleneckConfig, key: str):
        return check_target_module_exists(config, key)

    def _create_and_replace(self, config, adapter_name, target, target_name, parent, current_key, **kwargs):
        if not isinstance(target, BottleneckLayer):
            target = BottleneckLayer(target)
            self._replace_module(parent, target_name, target, target.base_layer)
        target.update_layer(adapter_name, config.reduction_factor)

    def _replace_module(self, parent, child_name, new_module, child) -> None:
        setattr(parent, child_name, new_module)


def targets(backbone: FrozenBackbone, style: str) -> list[str]:
    """The spec's feed-forward targets, plus its self-attention targets for Houlsby."""
    spec = backbone.spec.target_modules
    names = list(spec.get("bottleneck_ffn", ()))
    if style == "houlsby":
        names += spec.get("bottleneck_attention", ())
    if not names:
        raise InputError(f"bottleneck adapters are not supported on the {backbone.spec.family} family")
    return names


def attach_bottleneck(backbone: FrozenBackbone, options: AdapterOptions) -> BottleneckModel:
    """Wrap the frozen backbone's sub-blocks; only adapters and the task head train. The tuner is returned
    (it forwards calls and attributes to the model) so `set_adapter` and enable/disable stay at hand."""
    config = BottleneckConfig(style=options.bottleneck_style, reduction_factor=options.reduction_factor,
                              target_modules=targets(backbone, options.bottleneck_style))  # fmt: skip
    tuner = BottleneckModel(backbone.model, config, "default")
    heads = backbone.spec.task(backbone.task).head_modules
    for name, param in tuner.model.named_parameters():
        if name.split(".")[0] in heads:
            param.requires_grad_(True)
    tuner.speechpeft_options = {"bottleneck_style": config.style, "reduction_factor": config.reduction_factor}
    return tuner


register_method(own_files_method("bottleneck", "residual bottleneck MLPs after FFN (Pfeiffer) or attention and "
                                 "FFN (Houlsby)", attach_bottleneck,
                                 frozenset({"bottleneck_style", "reduction_factor"})))  # fmt: skip
