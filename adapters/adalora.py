"""AdaLoRA (Zhang et al., 2023, https://arxiv.org/abs/2303.10512) through PEFT.

Starts every targeted matrix at 1.5 x the target rank and, from `tinit` to `total - tfinal` steps,
prunes singular values by importance until the average rank is the target. The pruning lives in
`update_and_allocate`, which must run every optimisation step; HF Trainer does not call it, our loop
does (`after_step`).
"""

from __future__ import annotations

import peft
import torch

from speechpeft.adapters.base import AdapterMethod, AdapterOptions, register_method
from speechpeft.adapters.lora import heads, load_peft, save_peft, wrap
from speechpeft.backbones import FrozenBackbone


def attach_adalora(backbone: FrozenBackbone, options: AdapterOptions) -> peft.PeftModel:
    warmup, final = max(1, options.steps // 10), max(1, options.steps // 5)  # budget schedule: 10 % / 20 %
    config = peft.AdaLoraConfig(
        init_r=max(options.rank + 1, options.rank * 3 // 2), target_r=options.rank, lora_alpha=options.alpha,
        lora_dropout=options.dropout, tinit=warmup, tfinal=final, deltaT=max(1, options.steps // 50),
        total_step=max(options.steps, warmup + final + 1),
        target_modules=list(backbone.spec.target_modules["adalora"]), modules_to_save=heads(backbone),
    )  # fmt: skip
    return wrap(backbone, config)


def allocate_ranks(model: torch.nn.Module, step: int) -> None:
    """Rank allocation reads every LoRA gradient; a layer that LayerDrop skipped this step (wav2vec2 and
    SpeechT5 configs enable it) has none, and counts as zero sensitivity rather than crashing PEFT."""
    for name, param in model.named_parameters():
        if param.requires_grad and param.grad is None and "lora_" in name:
            param.grad = torch.zeros_like(param)
    model.base_model.update_and_allocate(step)


register_method(AdapterMethod("adalora", "LoRA whose ranks are reallocated by importance during training (PEFT)",
                              attach_adalora, save_peft, load_peft, after_step=allocate_ranks))  # fmt: skip
