"""LoRA (Hu et al., 2021, https://arxiv.org/abs/2106.09685) through PEFT, on any registered backbone.

Targets come from the backbone's spec, or from `--target-modules` (checked against the backbone first, or PEFT's
`all-linear`); task heads (classifier, CTC head) and `--modules-to-save` go to PEFT's `modules_to_save`, so they
train and are saved with the adapter. No `task_type`: PEFT's seq2seq wrapper passes `input_ids`, which Whisper
does not take (FACTS.md).
"""

from __future__ import annotations

import re
from pathlib import Path

import peft
import torch
from transformers.pytorch_utils import Conv1D

from speechpeft.adapter_dir import CONFIG_FILE, FIX, CorruptAdapterError, check_tensors, read_config, weights_manifest
from speechpeft.adapters.base import ALL_LINEAR, AdapterMethod, AdapterOptions, register_method
from speechpeft.backbones import FrozenBackbone
from speechpeft.errors import InputError

LORA_OPTIONS = frozenset({"rank", "alpha", "dropout", "target_modules", "modules_to_save"})
LINEAR_LAYERS = (torch.nn.Linear, Conv1D)  # what `all-linear` takes (int8 layers are `nn.Linear`s too)


def heads(backbone: FrozenBackbone) -> list[str] | None:
    return list(backbone.spec.task(backbone.task).head_modules) or None


def saved_modules(backbone: FrozenBackbone, options: AdapterOptions) -> list[str] | None:
    """PEFT's `modules_to_save`: the task head, and `options.modules_to_save` (each must name a module)."""
    names = list(dict.fromkeys([*(heads(backbone) or ()), *(options.modules_to_save or ())]))
    found = [name for name, _ in backbone.model.named_modules()]
    # PEFT saves every module whose path ends with a name (`layer_norm` takes `final_layer_norm` too)
    missing = [m for m in options.modules_to_save or () if not any(key.endswith(m) for key in found)]
    if missing:
        tops = ", ".join(name for name, _ in backbone.model.named_children())
        raise InputError(
            f"--modules-to-save {' '.join(missing)}: no module of {backbone.source} is called that "
            f"(its top-level modules: {tops}; a name matches the modules whose path ends with it)"
        )
    return names or None


def targets(backbone: FrozenBackbone, options: AdapterOptions, method: str) -> list[str] | str:
    """`options.target_modules` (checked against the backbone: see `check_targets`), else the spec's targets for
    `method` (attention q/v for most families)."""
    if options.target_modules == (ALL_LINEAR,):
        return ALL_LINEAR  # every linear layer not trained in full (PEFT leaves out `modules_to_save`)
    if options.target_modules is None:
        chosen = list(backbone.spec.target_modules[method])
    else:
        check_targets(backbone, options.target_modules, saved_modules(backbone, options) or [])
        chosen = list(options.target_modules)
    check_not_saved(backbone, chosen, options.modules_to_save or ())
    return chosen


def check_not_saved(backbone: FrozenBackbone, chosen: list[str], saved: tuple[str, ...]) -> None:
    """Raise InputError when a `--modules-to-save` name takes in a module LoRA would adapt: PEFT would train that
    module in full instead, silently (it saves every module whose path, or an ancestor's, ends with the name)."""
    for key, _ in backbone.model.named_modules():
        target = next((t for t in chosen if _names(key, t)), None)
        ancestors = [key[:i] for i, c in enumerate(key) if c == "."] + [key]
        taken = next((m for m in saved if any(a.endswith(m) for a in ancestors)), None)
        if target and taken:
            raise InputError(f"--modules-to-save {taken} takes in {key}, which LoRA adapts (target {target}): a "
                             "module is adapted or trained in full, not both; drop it from --modules-to-save or "
                             "give --target-modules without it")  # fmt: skip


def check_targets(backbone: FrozenBackbone, wanted: tuple[str, ...], saved: list[str]) -> None:
    """Each name in `wanted` must match (as PEFT matches: the whole path, or its end after a '.') at least one
    module of the backbone outside `saved` (trained in full already), and only linear layers; else InputError
    listing the names of the linear layers there are."""
    modules = [(key, m) for key, m in backbone.model.named_modules() if not any(_within(key, s) for s in saved)]
    linear = sorted({key.rsplit(".", 1)[-1] for key, m in modules if isinstance(m, LINEAR_LAYERS)})
    offer = f"the linear layers of {backbone.source} are called {', '.join(linear)} (or give {ALL_LINEAR})"
    for name in wanted:
        matched = [(key, m) for key, m in modules if _names(key, name)]
        if not matched:
            raise InputError(f"--target-modules {name}: {backbone.source} has no such module outside the task "
                             f"head and --modules-to-save; {offer}")  # fmt: skip
        other = next(((key, m) for key, m in matched if not isinstance(m, LINEAR_LAYERS)), None)
        if other is not None:
            raise InputError(f"--target-modules {name} takes {other[0]}, a {type(other[1]).__name__}: LoRA adapts "
                             f"linear layers here; {offer}")  # fmt: skip


def _names(key: str, name: str) -> bool:
    """Whether `name` names the module at path `key`, as PEFT matches a target: the whole path or its end."""
    return key == name or key.endswith("." + name)


def _within(key: str, name: str) -> bool:
    """Whether the module at `key` is, or is inside, a module `name` names (PEFT leaves those untargeted)."""
    return re.match(rf"(^|.*\.){re.escape(name)}($|\..*)", key) is not None


def wrap(
    backbone: FrozenBackbone, config: peft.PeftConfig, model_class: type[peft.PeftModel] | None = None
) -> peft.PeftModel:
    """PEFT-wrap the backbone (int8 backbones are first prepared for k-bit training, as PEFT requires), in
    `model_class` when a method needs its own `PeftModel` subclass (AdaLoRA's objective)."""
    model = backbone.model
    if backbone.precision == "int8":
        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    try:
        if model_class is None:
            return peft.get_peft_model(model, config)
        config.base_model_name_or_path = getattr(model, "name_or_path", None) or None  # as get_peft_model records it
        return model_class(model, config)
    except peft.NoMatchingPeftModuleError as error:  # e.g. --modules-to-save takes in every layer LoRA would adapt
        raise InputError(f"--target-modules / --modules-to-save leave LoRA nothing to adapt: {error}") from None


def attach_lora(backbone: FrozenBackbone, options: AdapterOptions) -> peft.PeftModel:
    """Wrap the frozen backbone with a trainable LoRA adapter named "default"."""
    config = peft.LoraConfig(
        r=options.rank, lora_alpha=options.alpha, lora_dropout=options.dropout,
        target_modules=targets(backbone, options, "lora"), modules_to_save=saved_modules(backbone, options),
    )  # fmt: skip
    return wrap(backbone, config)


def save_peft(model: torch.nn.Module, directory: Path) -> None:
    model.save_pretrained(str(directory), safe_serialization=True)


def load_peft(
    backbone: FrozenBackbone, directory: Path, model_class: type[peft.PeftModel] = peft.PeftModel
) -> torch.nn.Module:
    """The PEFT adapter in `directory` on the backbone, as `PeftModel.from_pretrained` builds it, with its weights
    checked first: they must hold exactly the tensors, at the shapes, that PEFT saves for this config attached to
    this backbone (PEFT would only warn, or fail on a missing head, and leave the rest at their initial values).

    Raises CorruptAdapterError for a malformed config, one whose targets this backbone lacks, or weights that
    do not match.
    """
    model = _attach_saved(backbone, directory, model_class)
    found, (plain, embedded) = weights_manifest(directory), (_saved_shapes(model, e) for e in (False, True))
    # PEFT adds the embeddings when it judges the vocabulary resized (asking the Hub for the base config, which a
    # load must not): they may be there or not
    expected = plain | {name: shape for name, shape in embedded.items() if name in found}
    check_tensors(directory, found, expected, "what its config attaches to this backbone")
    model.load_adapter(str(directory), "default")
    return model.eval()


def _saved_shapes(model: peft.PeftModel, embeddings: bool) -> dict[str, list[int]]:
    """The name and shape of each tensor `save_pretrained` writes for `model` (AdaLoRA's pruned by the config's rank
    pattern), with or without the embeddings. The full state is passed in, so PEFT does not warn (as for a ZeRO-3
    shard) about AdaLoRA matrices pruned to rank 0."""
    try:
        saved = peft.get_peft_model_state_dict(model, state_dict=model.state_dict(), save_embedding_layers=embeddings)
    except NotImplementedError:  # `get_input_embeddings` of a model without token embeddings (wav2vec2, HuBERT)
        if not embeddings:
            raise
        return _saved_shapes(model, embeddings=False)
    return {name: list(tensor.shape) for name, tensor in saved.items()}


def _attach_saved(backbone: FrozenBackbone, directory: Path, model_class: type[peft.PeftModel]) -> peft.PeftModel:
    """The backbone wrapped with the adapter its `adapter_config.json` describes, weights not yet loaded."""
    read_config(directory)  # a clear error for a missing or malformed file, before PEFT reads it
    try:
        config = peft.PeftConfig.from_pretrained(str(directory))
    except (TypeError, ValueError, KeyError) as error:
        raise CorruptAdapterError(f"{directory / CONFIG_FILE} is not a PEFT config ({error}): {FIX}") from None
    config.inference_mode = True
    try:
        return model_class(backbone.model, config)
    except ValueError as error:  # e.g. "Target modules {...} not found in the base model"
        raise CorruptAdapterError(f"adapter {directory} does not fit {backbone.source} ({error}); was it trained "
                                  "on another backbone?") from None  # fmt: skip


register_method(AdapterMethod("lora", "low-rank updates of the attention projections (PEFT)", attach_lora,
                              save_peft, load_peft, reads=LORA_OPTIONS))  # fmt: skip
