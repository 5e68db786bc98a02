"""LoRA (Hu et al., 2021, https://arxiv.org/abs/2106.09685) through PEFT, on any registered backbone.

Targets come from the backbone's spec; task heads (classifier, CTC head) go to PEFT's
`modules_to_save`, so they train and are saved with the adapter. No `task_type`: PEFT's seq2seq
wrapper passes `input_ids`, which Whisper does not take (FACTS.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import peft

from speechpeft.backbones import FrozenBackbone


@dataclass(frozen=True)
class LoraOptions:
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05

    def __post_init__(self) -> None:
        if self.rank < 1 or self.alpha <= 0 or not 0 <= self.dropout < 1:
            raise ValueError("LoRA needs rank >= 1, alpha > 0 and 0 <= dropout < 1")


def attach_lora(backbone: FrozenBackbone, options: LoraOptions = LoraOptions()) -> peft.PeftModel:
    """Wrap the frozen backbone with a trainable LoRA adapter named "default"."""
    heads = list(backbone.spec.task(backbone.task).head_modules)
    config = peft.LoraConfig(
        r=options.rank, lora_alpha=options.alpha, lora_dropout=options.dropout,
        target_modules=list(backbone.spec.target_modules["lora"]), modules_to_save=heads or None,
    )  # fmt: skip
    model = backbone.model
    if backbone.precision == "int8":
        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return peft.get_peft_model(model, config)
