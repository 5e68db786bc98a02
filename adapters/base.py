"""The method registry: every way of adapting a frozen backbone to a task behind one small interface.

A method attaches trainable modules to a loaded `FrozenBackbone` (returning the model to train), saves
what it trained, loads it back onto a fresh backbone, and may hook each optimisation step (AdaLoRA's rank
allocation). Adding a method is one module with one `register_method` call.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from speechpeft.backbones import FrozenBackbone
from speechpeft.errors import InputError
from speechpeft.registry import Registry

WEIGHTS_FILE, CONFIG_FILE = "adapter_model.safetensors", "adapter_config.json"
BOTTLENECK_STYLES = ("pfeiffer", "houlsby")


@dataclass(frozen=True)
class AdapterOptions:
    """Knobs shared by the methods; each method reads the ones it has."""

    rank: int = 8  # LoRA rank; AdaLoRA's target average rank
    alpha: int = 16  # LoRA scaling numerator
    dropout: float = 0.05
    steps: int = 300  # the training length (AdaLoRA schedules its rank budget over it)
    prefix_length: int = 16  # prefix tuning: learned key/value positions per layer
    prefix_encoder: bool = False  # prefix tuning: the encoder's self-attention too, not only the decoder's
    bottleneck_style: str = "pfeiffer"  # bottleneck: pfeiffer (after FFN) or houlsby (after attention and FFN)
    reduction_factor: int = 16  # bottleneck: d_model / bottleneck width
    target_modules: tuple[str, ...] | None = None  # LoRA/AdaLoRA: module name suffixes; None: the backbone's spec

    def __post_init__(self) -> None:
        if self.rank < 1 or self.alpha <= 0 or not 0 <= self.dropout < 1 or self.steps < 1:
            raise InputError("adapter options need rank >= 1, alpha > 0, 0 <= dropout < 1 and steps >= 1")
        if self.prefix_length < 1 or self.reduction_factor < 1:
            raise InputError("--prefix-length and --reduction-factor must be positive")
        if self.bottleneck_style not in BOTTLENECK_STYLES:
            raise InputError(f"--bottleneck-style {self.bottleneck_style!r}: choose {' or '.join(BOTTLENECK_STYLES)}")


@dataclass(frozen=True)
class AdapterMethod:
    name: str
    description: str
    attach: Callable[[FrozenBackbone, AdapterOptions], torch.nn.Module]
    save: Callable[[torch.nn.Module, Path], None]
    load: Callable[[FrozenBackbone, Path], torch.nn.Module]
    after_step: Callable[[torch.nn.Module, int], None] | None = None  # after optimizer.step, before zero_grad
    # why the model at a step may not be kept as the result yet (e.g. AdaLoRA before its rank budget is final)
    pending: Callable[[torch.nn.Module, int], str | None] | None = None


METHODS: Registry[AdapterMethod] = Registry("adapter method")


def register_method(method: AdapterMethod) -> AdapterMethod:
    return METHODS.register(method.name, method)


def trainable_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def trainables_in_fp32(model: torch.nn.Module) -> None:
    """Cast every trainable parameter to fp32 in place, whatever the backbone's precision.

    They are AdamW's master weights: a bf16 task head (or a bf16 `full` model) would take bf16 optimizer steps,
    which round away updates smaller than 2^-8 of a weight. The forward runs under bf16 autocast instead
    (`FrozenBackbone.autocast`), as mixed-precision training does.
    """
    for param in model.parameters():
        if param.requires_grad and param.is_floating_point() and param.dtype != torch.float32:
            param.data = param.data.float()


def trained_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Trainable parameters, and the buffers of modules that own one (a trained batch norm's statistics)."""
    tensors, seen = {}, set()  # a tied weight (embeddings = output layer) is saved once, like named_parameters()
    for prefix, module in model.named_modules():
        own = {k: p for k, p in module.named_parameters(recurse=False) if id(p) not in seen}
        seen |= {id(p) for p in own.values()}
        if any(p.requires_grad for p in own.values()):
            skip = module._non_persistent_buffers_set
            buffers = {k: b for k, b in module.named_buffers(recurse=False) if k not in skip}
            named = {k: p for k, p in own.items() if p.requires_grad} | buffers
            tensors |= {f"{prefix}.{k}" if prefix else k: v.detach().cpu().contiguous() for k, v in named.items()}
    return tensors


def save_trainable(model: torch.nn.Module, directory: Path, method: str) -> None:
    """Our own adapter files, for methods PEFT lacks: the trained tensors by name, and a config naming them
    with the options the method was attached with (`model.speechpeft_options`)."""
    tensors = trained_tensors(model)
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / WEIGHTS_FILE))
    options = getattr(model, "speechpeft_options", {})
    config = {"speechpeft_method": method, "options": options, "tensors": sorted(tensors)}
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=1) + "\n")


def load_trainable(model: torch.nn.Module, directory: Path) -> torch.nn.Module:
    """Put `save_trainable`'s tensors back into `model` (same architecture); any name it lacks is an error."""
    tensors = load_file(str(directory / WEIGHTS_FILE))
    unexpected = model.load_state_dict(tensors, strict=False).unexpected_keys
    if unexpected:
        raise ValueError(f"{directory}: {len(unexpected)} saved tensors fit no parameter of the backbone, "
                         f"e.g. {unexpected[0]}: was it trained on another architecture?")  # fmt: skip
    return model.eval()


def own_files_method(
    name: str, description: str, attach: Callable[[FrozenBackbone, AdapterOptions], torch.nn.Module]
) -> AdapterMethod:
    """A method saved in our own files: loading re-attaches it with its saved options, then fills in the tensors."""

    def load(backbone: FrozenBackbone, directory: Path) -> torch.nn.Module:
        options = json.loads((directory / CONFIG_FILE).read_text()).get("options", {})
        return load_trainable(attach(backbone, AdapterOptions(**options)), directory)

    return AdapterMethod(name, description, attach, partial(save_trainable, method=name), load)
