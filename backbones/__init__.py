"""Frozen backbones: one spec per family, and `load_frozen`, the only place weights are loaded."""

from speechpeft.backbones import families as _families  # noqa: F401  (registers the built-in families)
from speechpeft.backbones.loading import (
    PRECISIONS,
    BackboneNotFoundError,
    FrozenBackbone,
    Precision,
    freeze,
    load_frozen,
    resolve_precision,
)
from speechpeft.backbones.spec import BACKBONES, TASK_KINDS, BackboneSpec, TaskModel, register_backbone

__all__ = [
    "BACKBONES",
    "PRECISIONS",
    "TASK_KINDS",
    "BackboneNotFoundError",
    "BackboneSpec",
    "FrozenBackbone",
    "Precision",
    "TaskModel",
    "freeze",
    "load_frozen",
    "register_backbone",
    "resolve_precision",
]
