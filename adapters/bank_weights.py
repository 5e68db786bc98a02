"""An adapter directory's tensors, as the bank's layers use them: per module path, whatever the method.

Read straight from `adapter_model.safetensors` (never unpickled), with the method's own file layout:

- `lora` (PEFT): `base_model.model.<path>.lora_A.weight` (rank, in) and `lora_B.weight` (out, rank), scaling
  `alpha / rank` (`alpha / sqrt(rank)` with rsLoRA), per-module rank and alpha from `rank_pattern` /
  `alpha_pattern` as PEFT reads them.
- `adalora` (PEFT): `lora_A`, `lora_E` (singular values), `lora_B`, pruned to `rank_pattern` when saved. PEFT
  computes `x (A * E)^T B^T * alpha / (ranknum + 1e-5)` with `ranknum` the initial rank `init_r`, so an
  AdaLoRA matrix is exactly a LoRA one with A' = A * E and scaling alpha / (init_r + 1e-5) (`LoraDelta.divisor`).
- `bottleneck` (ours): `model.<path>.bottleneck_{down,up}.default.{weight,bias}`.
- `prefix` (ours): `<path>.speechpeft_prefix.default`, [2 (keys, values), length, width].
- task heads (PEFT's `modules_to_save`, or our methods' trained head tensors, `frozen` included): every other
  tensor, under its module path in the backbone.

`full` is a whole model, not an adapter: the bank refuses it. So does it refuse files that do not hold together:
a weights file that is unreadable or differs from the tensors its record (or our config) lists, a config of
another method, a LoRA matrix without its pair, a head tensor the config does not declare.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from speechpeft.adapter_dir import (
    CONFIG_FILE,
    CorruptAdapterError,
    check_adapter,
    check_config_method,
    check_tensors,
    read_config,
    read_record,
)
from speechpeft.adapters.bank_layers import Bottleneck, LoraDelta
from speechpeft.adapters.base import read_tensors
from speechpeft.errors import InputError

BANKABLE = ("lora", "adalora", "prefix", "bottleneck", "frozen")


@dataclass(eq=False)
class AdapterWeights:
    """One adapter's tensors by module path (see the module docstring); identity, not value, tells two apart."""

    lora: dict[str, LoraDelta] = field(default_factory=dict)
    bottleneck: dict[str, Bottleneck] = field(default_factory=dict)
    prefix: dict[str, torch.Tensor] = field(default_factory=dict)  # path -> [2, length, width]
    heads: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)  # path -> parameter name -> tensor

    def tensors(self) -> list[torch.Tensor]:
        found = [t for d in self.lora.values() for t in (d.A, d.B)]
        found += [t for b in self.bottleneck.values() for t in (b.down, b.down_bias, b.up, b.up_bias)]
        return found + list(self.prefix.values()) + [t for h in self.heads.values() for t in h.values()]

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors())

    def paths(self) -> set[str]:
        """The module paths this adapter changes (prefix paths are attention modules, the rest wrapped layers)."""
        return set(self.lora) | set(self.bottleneck) | set(self.heads)


def read_weights(directory: Path, method: str, device: torch.device) -> AdapterWeights:
    """The adapter in `directory` (saved by `method`) as bank tensors on `device`, fp32 as trained.

    Raises InputError for a method the bank cannot host (`full`) or a PEFT option it does not implement,
    CorruptAdapterError for files that do not hold together (see the module docstring).
    """
    if method not in BANKABLE:
        raise InputError(f"adapter {directory} is a {method!r} model, not an adapter the bank can hot-swap "
                         f"({', '.join(BANKABLE)}): serve it as its own backbone")  # fmt: skip
    directory = Path(directory)
    found = check_adapter(directory, read_record(directory))
    config = read_config(directory)
    check_config_method(config, method, directory)
    if "tensors" in config:  # our own files name their tensors (shapes: the record's, checked above)
        listed = {name: found.get(name, []) for name in config["tensors"]}
        check_tensors(directory, found, listed, f"the tensors its {CONFIG_FILE} lists")
    tensors = {k: v.to(device) for k, v in read_tensors(directory).items()}
    try:
        return _READERS[method](tensors, config)
    except CorruptAdapterError as error:
        raise CorruptAdapterError(f"adapter {directory}: {error}") from None


def _lora(tensors: dict[str, torch.Tensor], config: dict) -> AdapterWeights:
    _check_plain_lora(config)
    weights, rest = AdapterWeights(), _strip(tensors, "base_model.model.")
    for key in [k for k in rest if k.endswith(".lora_A.weight")]:
        path = key.removesuffix(".lora_A.weight")
        A, B = _take(rest, key).float(), _take(rest, f"{path}.lora_B.weight").float()
        _check_pair(path, A, B)
        alpha = _pattern(config.get("alpha_pattern") or {}, path, config["lora_alpha"])
        rank = A.shape[0]
        scaling = alpha / math.sqrt(rank) if config.get("use_rslora") else alpha / rank
        if rank:
            weights.lora[path] = LoraDelta(A, B, scaling)
    weights.heads = _declared_heads(rest, config)
    return weights


def _check_plain_lora(config: dict) -> None:
    unsupported = {"use_dora": True, "fan_in_fan_out": True, "lora_bias": True}
    found = [k for k, v in unsupported.items() if config.get(k) == v]
    found += ["bias"] if config.get("bias", "none") != "none" else []
    if found:
        raise InputError(f"the bank runs plain LoRA; this adapter uses {', '.join(found)}: load it with PEFT")


def _adalora(tensors: dict[str, torch.Tensor], config: dict) -> AdapterWeights:
    weights, rest = AdapterWeights(), _strip(tensors, "base_model.model.")
    alpha = config["lora_alpha"] if config["lora_alpha"] > 0 else None
    for key in [k for k in rest if k.endswith(".lora_A")]:
        path = key.removesuffix(".lora_A")
        A, E, B = (_take(rest, f"{path}.lora_{m}").float() for m in "AEB")
        _check_pair(path, A, B, E)
        if A.shape[0]:  # a matrix pruned to rank 0 adds nothing
            scaling = alpha if alpha is not None else float(A.shape[0])
            weights.lora[path] = LoraDelta(A * E, B, scaling, float(config["init_r"]) + 1e-5)
    weights.heads = _declared_heads(rest, config)
    return weights


def _bottleneck(tensors: dict[str, torch.Tensor], config: dict) -> AdapterWeights:
    weights, rest = AdapterWeights(), _strip(tensors, "model.")
    for key in [k for k in rest if k.endswith(".bottleneck_down.default.weight")]:
        path = key.removesuffix(".bottleneck_down.default.weight")
        parts = [
            _take(rest, f"{path}.bottleneck_{m}.default.{p}").float()
            for m in ("down", "up")
            for p in ("weight", "bias")
        ]
        weights.bottleneck[path] = Bottleneck(*parts)
    weights.heads = _heads(rest)
    return weights


def _prefix(tensors: dict[str, torch.Tensor], config: dict) -> AdapterWeights:
    weights, rest = AdapterWeights(), dict(tensors)
    for key in [k for k in rest if k.endswith(".speechpeft_prefix.default")]:
        weights.prefix[key.removesuffix(".speechpeft_prefix.default")] = rest.pop(key).float()
    weights.heads = _heads(rest)
    return weights


def _take(tensors: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    """Pop `key`; CorruptAdapterError when the weights lack it (the other half of a pair is there)."""
    if key not in tensors:
        raise CorruptAdapterError(f"its weights lack {key}, which the tensors beside it need")
    return tensors.pop(key)


def _check_pair(path: str, A: torch.Tensor, B: torch.Tensor, E: torch.Tensor | None = None) -> None:
    """A LoRA matrix's factors must multiply: A [rank, in], B [out, rank] (and AdaLoRA's E [rank, 1])."""
    rank = A.shape[0] if A.dim() == 2 else -1
    if rank < 0 or B.dim() != 2 or B.shape[1] != rank or (E is not None and tuple(E.shape) != (rank, 1)):
        shapes = ", ".join(
            f"lora_{n} {list(t.shape)}" for n, t in zip("ABE", (A, B, E), strict=False) if t is not None
        )
        raise CorruptAdapterError(f"{path}: {shapes} do not make one LoRA matrix")


def _declared_heads(tensors: dict[str, torch.Tensor], config: dict) -> dict[str, dict[str, torch.Tensor]]:
    """`_heads`, each of which must be a module the PEFT config trains (`modules_to_save`, matched at the end of its
    path as PEFT matches it): any other tensor would overwrite a backbone weight no adapter of this kind changes."""
    heads, declared = _heads(tensors), config.get("modules_to_save") or []
    undeclared = [p for p in sorted(heads) if not any(p == name or p.endswith(f".{name}") for name in declared)]
    if undeclared:
        raise CorruptAdapterError(f"its weights hold tensors of {', '.join(undeclared[:3])}, which its config "
                                  f"neither targets nor saves (modules_to_save: {declared})")  # fmt: skip
    return heads


def _frozen(tensors: dict[str, torch.Tensor], config: dict) -> AdapterWeights:
    return AdapterWeights(heads=_heads(dict(tensors)))


def _strip(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k.removeprefix(prefix): v for k, v in tensors.items()}


def _heads(tensors: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """Head tensors by module path: `classifier.weight` -> {"classifier": {"weight": ...}} (PEFT's
    `modules_to_save` infix dropped, if a PEFT version kept it)."""
    heads: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        path, name = key.replace(".modules_to_save.default", "").replace(".modules_to_save", "").rsplit(".", 1)
        heads.setdefault(path, {})[name] = tensor.float() if tensor.is_floating_point() else tensor
    return heads


def _pattern(patterns: dict[str, float], path: str, default: float) -> float:
    """PEFT's per-module override: a pattern matching the end of the module's path (as `get_pattern_key`)."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", path):
            return value
    return default


_READERS: dict[str, Callable[[dict, dict], AdapterWeights]] = {
    "lora": _lora, "adalora": _adalora, "bottleneck": _bottleneck, "prefix": _prefix, "frozen": _frozen,
}  # fmt: skip
