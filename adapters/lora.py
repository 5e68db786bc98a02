"""LoRA (Hu et al., 2021, https://arxiv.org/abs/2106.09685) through PEFT, on any registered backbone.

Targets come from the backbone's spec; task heads (classifier, CTC head) go to PEFT's
`modules_to_save`, so they train and are saved with the adapter. No `task_type`: PEFT's seq2seq
wrapper passes `input_ids`, which Whisper does not take (FACTS.md).
"""

from __future__ import annotations

from pathlib import Path

import peft
import torch

from speechpeft.adapters.base import AdapterMethod, AdapterOptions, register_method
from speechpeft.backbones import FrozenBackbone


def heads(backbone: FrozenBackbone) -> list[str] | None:
    return list(backbone.spec.task(backbone.task).head_modules) or None


def targets(backbone: FrozenBackbone, options: AdapterOptions, method: str) -> list[str]:
    """`options.target_modules`, else the spec's targets for `method` (attention q/v for most families)."""
    return list(options.target_modules or backbone.spec.target_modules[method])


def wrap(
    backbone: FrozenBackbone, config: peft.PeftConfig, model_class: type[peft.PeftModel] | None = None
) -> peft.PeftModel:
    """PEFT-wrap the backbone (int8 backbones are first prepared for k-bit training, as PEFT requires), in
    `model_class` when a method needs its own `PeftModel` subclass (AdaLoRA's objective)."""
    model = backbone.model
    if backbone.precision == "int8":
        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if model_class is None:
        return peft.get_peft_model(model, config)
    config.base_model_name_or_path = getattr(model, "name_or_path", None) or None  # as get_peft_model records it
    return model_class(model, config)


def attach_lora(backbone: FrozenBackbone, options: AdapterOptions) -> peft.PeftModel:
    """Wrap the frozen backbone with a trainable LoRA adapter named "default"."""
    config = peft.LoraConfig(
        r=options.rank, lora_alpha=options.alpha, lora_dropout=options.dropout,
        target_modules=targets(backbone, options, "lora"), modules_to_save=heads(backbone),
    )  # fmt: skip
    return wrap(backbone, config)


def save_peft(model: torch.nn.Module, directory: Path) -> None:
    model.save_pretrained(str(directory), safe_serialization=True)


def load_peft(
    backbone: FrozenBackbone, directory: Path, model_class: type[peft.PeftModel] = peft.PeftModel
) -> torch.nn.Module:
    return model_class.from_pretrained(backbone.model, str(directory)).eval()


register_method(AdapterMethod("lora", "low-rank updates of the attention projections (PEFT)", attach_lora,
                              save_peft, load_peft))  # fmt: skip
