"""Frozen backbones: one spec per family, and `load_frozen`, the only place weights are loaded.

The specs are light; `load_frozen` and friends import torch and transformers, so they load on first
use (PEP 562) and `speechpeft --help` stays instant.
"""

from __future__ import annotations

import importlib
from typing import Any

from speechpeft.backbones import families as _families  # noqa: F401  (registers the built-in families)
from speechpeft.backbones.spec import BACKBONES, TASK_KINDS, BackboneSpec, TaskModel, register_backbone

_FROM_LOADING = ("PRECISIONS", "BackboneNotFoundError", "FrozenBackbone", "Precision", "freeze", "load_frozen",
                 "resolve_precision")  # fmt: skip

__all__ = ["BACKBONES", "TASK_KINDS", "BackboneSpec", "TaskModel", "register_backbone", *_FROM_LOADING]


def __getattr__(name: str) -> Any:
    if name in _FROM_LOADING:
        return getattr(importlib.import_module("speechpeft.backbones.loading"), name)
    raise AttributeError(f"module 'speechpeft.backbones' has no attribute {name!r}")
