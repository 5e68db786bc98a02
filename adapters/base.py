"""The method registry: every way of adapting a frozen backbone to a task behind one small interface.

A method attaches trainable modules to a loaded `FrozenBackbone` (returning the model to train), saves
what it trained, loads it back onto a fresh backbone, and may hook each optimisation step (AdaLoRA's rank
allocation). Adding a method is one module with one `register_method` call.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from speechpeft.adapter_dir import (
    CONFIG_FILE,
    FIX,
    WEIGHTS_FILE,
    CorruptAdapterError,
    check_tensors,
    read_config,
    weights_manifest,
)
from speechpeft.backbones import FrozenBackbone
from speechpeft.errors import InputError
from speechpeft.registry import Registry

BOTTLENECK_STYLES = ("pfeiffer", "houlsby")
ALL_LINEAR = "all-linear"  # PEFT's shorthand: every linear layer but the output layer (and the task heads)
_MODULE_NAME = re.compile(r"[^\s.]+(\.[^\s.]+)*")  # dotted path components, as `named_modules` names them
FLAGS = {"alpha": "--lora-alpha", "dropout": "--lora-dropout"}  # options whose flag is not --<name>


@dataclass(frozen=True)
class AdapterOptions:
    """Knobs shared by the methods; each method reads the ones it has."""

    rank: int = 8  # LoRA rank; AdaLoRA's target average rank
    alpha: float = 16  # LoRA scaling numerator
    dropout: float = 0.05
    steps: int = 300  # the training length (AdaLoRA schedules its rank budget over it)
    prefix_length: int = 16  # prefix tuning: learned key/value positions per layer
    prefix_encoder: bool = False  # prefix tuning: the encoder's self-attention too, not only the decoder's
    bottleneck_style: str = "pfeiffer"  # bottleneck: pfeiffer (after FFN) or houlsby (after attention and FFN)
    reduction_factor: int = 16  # bottleneck: d_model / bottleneck width
    # LoRA/AdaLoRA: linear layers by name or name suffix, or ("all-linear",); None: the backbone spec's targets
    target_modules: tuple[str, ...] | None = None
    modules_to_save: tuple[str, ...] | None = None  # LoRA/AdaLoRA: trained in full and saved, besides the task head

    def __post_init__(self) -> None:
        """Refuse (InputError naming the field) what a flag or a stranger's adapter_config.json may hold: json reads
        NaN, Infinity, 1.5 and true, none of which is a rank."""
        for name in ("rank", "steps", "prefix_length", "reduction_factor"):
            _check_number(name, getattr(self, name), int, "a whole number, 1 or more", lambda v: v >= 1)
        _check_number("alpha", self.alpha, (int, float), "a finite number above 0", lambda v: 0 < v < math.inf)
        _check_number("dropout", self.dropout, (int, float), "a number from 0 up to (not including) 1",
                      lambda v: 0 <= v < 1)  # fmt: skip
        if self.bottleneck_style not in BOTTLENECK_STYLES:
            raise InputError(f"--bottleneck-style {self.bottleneck_style!r}: choose {' or '.join(BOTTLENECK_STYLES)}")
        for name in ("target_modules", "modules_to_save"):
            object.__setattr__(self, name, _module_names(name, getattr(self, name)))
        if self.target_modules and ALL_LINEAR in self.target_modules and len(self.target_modules) > 1:
            raise InputError(f"--target-modules {' '.join(self.target_modules)}: {ALL_LINEAR} already takes every "
                             "linear layer; give it alone, or name the layers")  # fmt: skip
        if self.modules_to_save and ALL_LINEAR in self.modules_to_save:
            raise InputError(f"--modules-to-save takes module names; {ALL_LINEAR} is for --target-modules")


def _check_number(name: str, value: object, kind: type | tuple[type, ...], rule: str, within: Callable) -> None:
    """Raise InputError unless `value` is a `kind` (a bool is not a number here) for which `within` holds."""
    if isinstance(value, bool) or not isinstance(value, kind) or not within(value):
        flag = FLAGS.get(name, "--" + name.replace("_", "-"))
        raise InputError(f"adapter option {name} ({flag}) = {value!r}: use {rule}")


def _module_names(name: str, value: object) -> tuple[str, ...] | None:
    """`value` as a tuple of module names (json gives a list); InputError for anything else, or an empty name."""
    if value is None:
        return None
    flag = "--" + name.replace("_", "-")
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
        raise InputError(f"adapter option {name} ({flag}) = {value!r}: use one or more module names")
    for module in value:
        if not isinstance(module, str) or not _MODULE_NAME.fullmatch(module):
            raise InputError(f"{flag} {module!r}: not a module name (q_proj, self_attn.q_proj, ...)")
    return tuple(value)


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
    # the `AdapterOptions` fields it reads besides `steps`: `speechpeft train` refuses a PEFT flag it would ignore
    reads: frozenset[str] = frozenset()


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
    return {name: tensor.detach().cpu().contiguous() for name, tensor in _trained(model).items()}


def _trained(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    tensors, seen = {}, set()  # a tied weight (embeddings = output layer) is saved once, like named_parameters()
    for prefix, module in model.named_modules():
        own = {k: p for k, p in module.named_parameters(recurse=False) if id(p) not in seen}
        seen |= {id(p) for p in own.values()}
        if any(p.requires_grad for p in own.values()):
            skip = module._non_persistent_buffers_set
            buffers = {k: b for k, b in module.named_buffers(recurse=False) if k not in skip}
            named = {k: p for k, p in own.items() if p.requires_grad} | buffers
            tensors |= {f"{prefix}.{k}" if prefix else k: v for k, v in named.items()}
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


def read_tensors(directory: Path) -> dict[str, torch.Tensor]:
    """The weights of the adapter in `directory`, from safetensors only (see `weights_manifest` for what it refuses).

    Raises CorruptAdapterError when the file cannot be read.
    """
    weights_manifest(directory)  # refuses pickled neighbours; a clear error for a missing or broken file
    try:
        return load_file(str(Path(directory) / WEIGHTS_FILE))
    except SafetensorError as error:
        raise CorruptAdapterError(f"{Path(directory) / WEIGHTS_FILE} is corrupt ({error}): {FIX}") from None


def load_trainable(model: torch.nn.Module, directory: Path) -> torch.nn.Module:
    """Put `save_trainable`'s tensors back into `model` (the backbone, the method attached as it was saved).

    The weights must hold exactly what the attached method trains (what `save_trainable` saved from it), or for a
    model with nothing trainable (the baselines load into the bare backbone) the tensors its config lists, at the
    model's shapes: otherwise CorruptAdapterError names the missing, unexpected or reshaped ones, so nothing is
    left at its initial value unnoticed.
    """
    state = model.state_dict()
    names = set(_trained(model)) or set(read_config(directory).get("tensors", ()))
    expected = {name: list(state[name].shape) for name in names if name in state}
    check_tensors(directory, weights_manifest(directory), expected, "what its method puts in this model")
    model.load_state_dict(read_tensors(directory), strict=False)
    return model.eval()


def saved_options(directory: Path) -> AdapterOptions:
    """The options `save_trainable` recorded; CorruptAdapterError when they are not `AdapterOptions` fields."""
    options = read_config(directory).get("options", {})
    try:
        return AdapterOptions(**options)
    except (TypeError, ValueError) as error:
        raise CorruptAdapterError(
            f"{Path(directory) / CONFIG_FILE}: options that do not fit ({error}): {FIX}"
        ) from None


def own_files_method(
    name: str,
    description: str,
    attach: Callable[[FrozenBackbone, AdapterOptions], torch.nn.Module],
    reads: frozenset[str] = frozenset(),
) -> AdapterMethod:
    """A method saved in our own files: loading re-attaches it with its saved options, then fills in the tensors."""

    def load(backbone: FrozenBackbone, directory: Path) -> torch.nn.Module:
        return load_trainable(attach(backbone, saved_options(directory)), directory)

    return AdapterMethod(name, description, attach, partial(save_trainable, method=name), load, reads=reads)
