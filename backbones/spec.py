"""What the project needs to know about a backbone family, as frozen data.

A spec says which transformers class serves each task, which processor prepares its
inputs, the audio sample rate and which modules each adapter method targets. Code reads
the spec; it never branches on a model id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from speechpeft.errors import InputError
from speechpeft.registry import Registry

TASK_KINDS = ("asr", "tts", "classify")


@dataclass(frozen=True)
class TaskModel:
    """How a family serves one task kind."""

    model_class: str  # a class name in `transformers`
    processor_class: str  # processor or feature extractor class name in `transformers`
    head_modules: tuple[str, ...] = ()  # task-specific layers: trained with the adapter, never quantized
    processor_hint: str = ""  # what a checkpoint whose processor does not load lacks, and the fix (in the error)


@dataclass(frozen=True)
class BackboneSpec:
    """One backbone family (Whisper, SpeechT5, wav2vec2, ...)."""

    family: str
    description: str
    model_types: tuple[str, ...]  # values of `config.model_type` this spec handles
    sample_rate: int  # Hz, of the audio the feature extractor expects
    tasks: Mapping[str, TaskModel]
    # adapter method -> module-name suffixes it attaches to (PEFT `target_modules` style)
    target_modules: Mapping[str, tuple[str, ...]]
    hub_examples: tuple[str, ...] = ()
    int8_skip_modules: tuple[str, ...] = field(default=())  # besides task heads
    # submodules whose float inputs the model builds in fp32 whatever its dtype (FastSpeech 2's length regulator):
    # `load_frozen` casts them to the submodule's own dtype when the backbone is not fp32
    cast_float_inputs: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        unknown = set(self.tasks) - set(TASK_KINDS)
        if unknown:
            raise ValueError(f"{self.family}: unknown task kinds {sorted(unknown)}; valid: {TASK_KINDS}")
        object.__setattr__(self, "tasks", MappingProxyType(dict(self.tasks)))
        object.__setattr__(self, "target_modules", MappingProxyType(dict(self.target_modules)))

    def task(self, kind: str) -> TaskModel:
        """The task model for `kind`, or an error naming the tasks this family serves."""
        try:
            return self.tasks[kind]
        except KeyError:
            raise InputError(
                f"backbone family {self.family!r} does not serve task {kind!r}; it serves: {', '.join(self.tasks)}"
            ) from None


BACKBONES: Registry[BackboneSpec] = Registry("backbone family")


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    return BACKBONES.register(spec.family, spec)


def spec_for_model_type(model_type: str) -> BackboneSpec:
    """The registered family whose spec lists `model_type` (from a checkpoint's config.json)."""
    for name in BACKBONES:
        spec = BACKBONES.get(name)
        if model_type in spec.model_types:
            return spec
    known = sorted(t for name in BACKBONES for t in BACKBONES.get(name).model_types)
    raise InputError(f"no backbone family handles model_type {model_type!r}; supported model types: {known}")
