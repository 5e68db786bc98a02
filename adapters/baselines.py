"""The leaderboard's two baselines on the same backbone: `frozen` (nothing of the backbone trains) and `full`.

`frozen` trains only what the task cannot do without, the task head (a classifier, a new CTC head), and
is zero-shot where the task has no head (Whisper ASR, SpeechT5 TTS). `full` fine-tunes every weight; its
"adapter" is the whole model, the yardstick the small methods are measured against.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import peft
import torch

from speechpeft.adapters.base import AdapterMethod, AdapterOptions, load_trainable, register_method, save_trainable
from speechpeft.backbones import FrozenBackbone
from speechpeft.errors import InputError


def attach_frozen(backbone: FrozenBackbone, options: AdapterOptions) -> torch.nn.Module:
    head_names = backbone.spec.task(backbone.task).head_modules
    model = backbone.model
    if backbone.precision == "int8":  # casts the unquantised layers (the head among them) to fp32 for AdamW
        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    for name, param in model.named_parameters():
        param.requires_grad_(name.split(".")[0] in head_names)
    return model


def attach_full(backbone: FrozenBackbone, options: AdapterOptions) -> torch.nn.Module:
    if backbone.precision == "int8":
        raise InputError("full fine-tuning cannot update int8 weights: use --precision fp32 or bf16")
    for param in backbone.model.parameters():
        param.requires_grad_(True)
    return backbone.model


def load_into(backbone: FrozenBackbone, directory: Path) -> torch.nn.Module:
    return load_trainable(backbone.model, directory)


register_method(AdapterMethod("frozen", "baseline: the backbone as it is; only a task head trains",
                              attach_frozen, partial(save_trainable, method="frozen"), load_into))  # fmt: skip
register_method(AdapterMethod("full", "baseline: every weight of the backbone fine-tuned",
                              attach_full, partial(save_trainable, method="full"), load_into))  # fmt: skip
