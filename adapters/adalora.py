"""AdaLoRA (Zhang et al., 2023, https://arxiv.org/abs/2303.10512) through PEFT.

Starts every targeted matrix at 1.5 x the target rank and, from `tinit` to `total - tfinal` steps,
prunes singular values by importance until the average rank is the target. The pruning lives in
`update_and_allocate`, which must run every optimisation step; HF Trainer does not call it, our loop
does (`after_step`). The method's objective is the task loss plus the orthogonality regulariser of
P and Q (`orth_reg_weight` x mean ||P P^T - I||_F), which PEFT adds in `AdaLoraModel.forward`.
"""

from __future__ import annotations

from functools import partial

import peft
import torch

from speechpeft.adapters.base import AdapterMethod, AdapterOptions, register_method
from speechpeft.adapters.lora import LORA_OPTIONS, load_peft, save_peft, saved_modules, targets, wrap
from speechpeft.backbones import FrozenBackbone
from speechpeft.errors import InputError


class AdaLoraPeftModel(peft.PeftModel):
    """A `PeftModel` that trains on AdaLoRA's objective.

    `PeftModel.forward` calls the wrapped transformers model directly and so skips `AdaLoraModel.forward`,
    where the orthogonality regulariser is added to the loss: a plain `PeftModel` trains AdaLoRA without it.
    In train mode this forward goes through `AdaLoraModel.forward` (inside DDP's forward too, so layers that
    LayerDrop skipped still reach the regulariser); in eval mode the loss is the task's alone, so validation
    and a reloaded (rank-pruned) adapter report the same number. A reloaded adapter (PEFT's inference mode) has
    no trainable adapter, hence no regulariser, in train mode either: FastSpeech 2 reads its duration labels only
    in train mode, so teacher-forced evaluation runs it there.
    """

    def forward(self, *args, **kwargs):
        if not self.training or self.peft_config[self.active_adapter].inference_mode:
            return super().forward(*args, **kwargs)
        return self.base_model(*args, **kwargs)


def attach_adalora(backbone: FrozenBackbone, options: AdapterOptions) -> AdaLoraPeftModel:
    warmup, final = max(1, options.steps // 10), max(1, options.steps // 5)  # budget schedule: 10 % / 20 %
    config = peft.AdaLoraConfig(
        init_r=max(options.rank + 1, options.rank * 3 // 2), target_r=options.rank, lora_alpha=options.alpha,
        lora_dropout=options.dropout, tinit=warmup, tfinal=final, deltaT=max(1, options.steps // 50),
        total_step=max(options.steps, warmup + final + 1),
        target_modules=targets(backbone, options, "adalora"), modules_to_save=saved_modules(backbone, options),
    )  # fmt: skip
    if config.total_step - config.tfinal > options.steps:
        raise InputError(f"AdaLoRA needs --steps {config.total_step - config.tfinal} or more to reach its rank "
                         f"budget (got {options.steps})")  # fmt: skip
    return wrap(backbone, config, AdaLoraPeftModel)


def budget_step(model: torch.nn.Module) -> int:
    """The step at which AdaLoRA fixes its final rank pattern (`total_step - tfinal`)."""
    config = model.peft_config[model.active_adapter]
    return config.total_step - config.tfinal


def budget_pending(model: torch.nn.Module, step: int) -> str | None:
    """Why the adapter at `step` may not be kept: before `budget_step` its ranks are still being pruned (no
    `rank_pattern` yet, every matrix at init_r), which is not the adapter the method defines."""
    final = budget_step(model)
    if step >= final:
        return None
    config = model.peft_config[model.active_adapter]
    return f"AdaLoRA fixes its ranks (average r {config.target_r}, from init_r {config.init_r}) at step {final}"


def allocate_ranks(model: torch.nn.Module, step: int) -> None:
    """Rank allocation reads every LoRA gradient; a layer that LayerDrop skipped this step (wav2vec2 and
    SpeechT5 configs enable it) has none, and counts as zero sensitivity rather than crashing PEFT."""
    for name, param in model.named_parameters():
        if param.requires_grad and param.grad is None and "lora_" in name:
            param.grad = torch.zeros_like(param)
    model.base_model.update_and_allocate(step)


register_method(AdapterMethod("adalora", "LoRA whose ranks are reallocated by importance during training (PEFT)",
                              attach_adalora, save_peft, partial(load_peft, model_class=AdaLoraPeftModel),
                              after_step=allocate_ranks, pending=budget_pending, reads=LORA_OPTIONS))  # fmt: skip
