"""One frozen backbone in the bank: loaded once, its adapted modules wrapped in `BankLayer`s as adapters need them.

Forward passes and module surgery on one backbone take turns (`lock`): a forward never sees a module half
replaced, and the hooks some families' prefixes use keep per-call state on the modules. Different backbones
run in parallel.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import torch

from speechpeft.adapter_dir import CorruptAdapterError
from speechpeft.adapters import prefix, routing
from speechpeft.adapters.bank_layers import BankLayer
from speechpeft.adapters.bank_weights import AdapterWeights
from speechpeft.adapters.bottleneck import output_width
from speechpeft.backbones import FrozenBackbone
from speechpeft.errors import InputError


@dataclass(frozen=True)
class BackboneKey:
    """What a loaded model is: the backbone's name, the model kind (`asr`, `tts`, `classify`), Whisper's window."""

    name: str
    kind: str
    window_seconds: float | None = None


@dataclass(eq=False)
class ResidentBackbone:
    key: BackboneKey
    frozen: FrozenBackbone
    lock: threading.RLock = field(default_factory=threading.RLock)
    originals: dict[str, torch.nn.Module] = field(default_factory=dict)  # module paths before any wrapping
    wrapped: set[str] = field(default_factory=set)
    prefixed: set[str] = field(default_factory=set)
    tasks: dict[Any, Any] = field(default_factory=dict)  # task objects built for this backbone, by a caller's key

    def __post_init__(self) -> None:
        self.originals = dict(self.frozen.model.named_modules())
        if hasattr(self.frozen.model, "_get_input_segment"):
            _follow_whisper_batch_reduction(self.frozen.model)

    @property
    def model(self) -> torch.nn.Module:
        return self.frozen.model

    def check(self, weights: AdapterWeights, adapter: str) -> None:
        """Every module the adapter changes exists in this backbone at the widths its tensors need.

        Raises InputError naming the first module this backbone lacks, or a prefix on a module that is no
        attention; CorruptAdapterError naming the first tensors whose shapes do not fit their module.
        """
        for path in sorted(weights.paths() | set(weights.prefix)):
            if path not in self.originals:
                raise InputError(f"adapter {adapter} changes {path!r}, which {self.key.name} ({self.key.kind}) "
                                 "does not have: was it trained on another backbone or architecture?")  # fmt: skip
            if path in weights.prefix and prefix.route_of(self.originals[path]) is None:
                raise InputError(f"adapter {adapter}: {path!r} is not an attention module, it cannot take a prefix")
        misfits = shape_misfits(weights, self.originals)
        if misfits:
            more = f" and {len(misfits) - 3} more" if len(misfits) > 3 else ""
            raise CorruptAdapterError(f"adapter {adapter} does not fit {self.key.name}: {'; '.join(misfits[:3])}"
                                      f"{more} (trained on another backbone, or edited?)")  # fmt: skip

    def install(self, weights: AdapterWeights) -> None:
        """Wrap the modules `weights` needs that are not yet wrapped, and route prefixes into their attention."""
        with self.lock:
            for path in sorted(weights.paths() - self.wrapped):
                self._wrap(path)
            new = sorted(set(weights.prefix) - self.prefixed)
            for path in new:
                self._route_prefix(path)
            if new and self._hooks_route():
                self._positions_hooks()

    def _wrap(self, path: str) -> None:
        parent_path, _, child = path.rpartition(".")
        parent = self.originals[parent_path] if parent_path else self.model
        setattr(parent, child, BankLayer(self.originals[path], path))
        self.wrapped.add(path)

    def _route_prefix(self, path: str) -> None:
        module = self.originals[path]
        prefix.route(module)
        setattr(module, prefix.BANK_PATH, path)
        self.prefixed.add(path)

    def _hooks_route(self) -> bool:
        return any(prefix.route_of(self.originals[p]) == "hooks" for p in self.prefixed)

    def _positions_hooks(self) -> None:
        """SpeechT5's text prenet numbers positions from the cache length: show it the length without the prefix
        (read from the first prefixed decoder attention, as training does)."""
        decoders = [self.originals[p] for p in sorted(self.prefixed) if getattr(self.originals[p], "is_decoder", 0)]
        if decoders and not getattr(self.model, "speechpeft_positions_hooked", False):
            prefix._route_prenet_positions(self.model, decoders[0])
            self.model.speechpeft_positions_hooked = True

    def mixes_prefixes(self) -> bool:
        """Whether one forward may hold samples with different prefixes (the attention-interface and relative routes
        may; the hooks route takes one prefix per batch, so the bank splits such batches)."""
        return not self._hooks_route()


def shape_misfits(weights: AdapterWeights, modules: dict[str, torch.nn.Module]) -> list[str]:
    """Each adapter tensor whose shape does not fit the module it changes, as `path: found, module's`.

    LoRA: A (rank, in_features) and B (out_features, rank) against the layer; bottleneck: down (k, d) and
    up (d, k) against the sub-block's output width d; prefix: (2, length, width) against the attention's key
    width; heads: every dimension but the first (a classifier's label count may differ) against the module's own
    parameter or buffer of that name.
    """
    misfits = []
    for path, delta in weights.lora.items():
        layer = modules[path]
        wanted = (getattr(layer, "out_features", None), getattr(layer, "in_features", None))
        if None not in wanted and (delta.B.shape[0], delta.A.shape[1]) != wanted:
            misfits.append(f"{path}: LoRA {delta.B.shape[0]}x{delta.A.shape[1]}, layer {wanted[0]}x{wanted[1]}")
    for path, block in weights.bottleneck.items():
        width = _output_width(modules, path)
        if width is not None and (block.down.shape[1], block.up.shape[0]) != (width, width):
            misfits.append(f"{path}: bottleneck width {block.down.shape[1]}, sub-block {width}")
    for path, prefix_tensor in weights.prefix.items():
        width = prefix.key_projection(modules[path]).out_features
        if prefix_tensor.dim() != 3 or prefix_tensor.shape[0] != 2 or prefix_tensor.shape[2] != width:
            misfits.append(f"{path}: prefix {list(prefix_tensor.shape)}, attention [2, length, {width}]")
    return misfits + [m for path, head in weights.heads.items() for m in _head_misfits(path, head, modules[path])]


def _output_width(modules: dict[str, torch.nn.Module], path: str) -> int | None:
    """The output width of the sub-block at `path` as `bottleneck.output_width` finds it, from the modules before
    the bank wrapped any (a wrapped projection hides its `out_features`); None when it has none."""
    return output_width(m for name, m in modules.items() if name == path or name.startswith(f"{path}."))


def _head_misfits(path: str, head: dict[str, torch.Tensor], module: torch.nn.Module) -> list[str]:
    own = dict(module.named_parameters(recurse=False)) | dict(module.named_buffers(recurse=False))
    misfits = []
    for name, tensor in head.items():
        if name not in own:
            misfits.append(f"{path}.{name}: {type(module).__name__} has no {name!r}")
        elif tensor.dim() != own[name].dim() or tensor.shape[1:] != own[name].shape[1:]:
            misfits.append(f"{path}.{name}: {list(tensor.shape)}, module's {list(own[name].shape)}")
    return misfits


def _follow_whisper_batch_reduction(model: torch.nn.Module) -> None:
    """Keep the route in step with Whisper's `generate`, which may decode a second segment for only some clips.

    When a transcript ends on a timestamp before the end of the window (an adapter can write one even with
    timestamps off), `WhisperGenerationMixin.generate` seeks on from there in a smaller batch of the clips not done
    (`batch_idx_map` says which). Its `_get_input_segment` cuts each segment's rows: this instance's copy narrows the
    active route to those clips first, relative to the route the call started with.
    """
    cut = model._get_input_segment  # a staticmethod: (input_features, seek, seek_num_frames, frames, cur_bsz, map)

    def get_input_segment(input_features, seek, seek_num_frames, num_segment_frames, cur_bsz, batch_idx_map):
        route = routing.active()
        if route is not None:
            start = getattr(route, "whisper_start", route)
            narrowed = start.subset(batch_idx_map[:cur_bsz])
            narrowed.whisper_start = start
            routing.replace_active(narrowed)
        return cut(input_features, seek, seek_num_frames, num_segment_frames, cur_bsz, batch_idx_map)

    model._get_input_segment = get_input_segment
