"""`load_frozen`: the one place where backbone weights are loaded, cast and frozen."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import transformers
from huggingface_hub import constants as hub_constants

from speechpeft.backbones.builtin import resolve_source
from speechpeft.backbones.spec import BackboneSpec, TaskModel, spec_for_model_type
from speechpeft.backbones.window import check_window, length_adaptive_encoder
from speechpeft.errors import InputError, MissingInputError, UserError

Precision = Literal["fp32", "bf16", "int8", "auto"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8", "auto")
logger = logging.getLogger(__name__)


class BackboneNotFoundError(UserError, OSError):
    """A backbone id that is neither a local directory nor loadable from the Hub or its cache."""


@dataclass
class FrozenBackbone:
    """A loaded backbone whose every parameter has `requires_grad=False`."""

    model: transformers.PreTrainedModel
    processor: Any  # a transformers processor or feature extractor, per the task's spec
    spec: BackboneSpec
    task: str
    precision: str  # resolved: fp32 | bf16 | int8
    source: str  # local directory or Hub id it was loaded from
    device: torch.device
    window_seconds: float | None = None  # Whisper: a shorter encoder window for clips that fit (backbones.window)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def input_dtype(self) -> torch.dtype:
        """The dtype float inputs must have: that of the model's first float weights (its audio front-end).

        Read from the model rather than the precision: preparing an int8 model for training casts its
        unquantised layers to fp32.
        """
        return next(p.dtype for p in self.model.parameters() if p.is_floating_point())

    def autocast(self) -> torch.autocast:
        """The context every forward runs in: bf16 autocast for a bf16 backbone (its trainable parameters stay
        fp32, see `adapters.base.trainables_in_fp32`), a no-op for fp32 and int8."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _indexed(device: torch.device) -> torch.device:
    """`cuda` as the current process's own GPU (`cuda:N`): bitsandbytes' device_map refuses a bare `cuda`."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def resolve_precision(precision: str, device: torch.device) -> str:
    """`auto` means bf16 on CUDA and fp32 on the CPU (bf16 is opt-in there: it changes numerics)."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def hub_offline() -> bool:
    return hub_constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "0").upper() in {"1", "ON", "YES", "TRUE"}


def load_frozen(
    name_or_path: str | os.PathLike,
    task: str,
    precision: Precision = "auto",
    *,
    device: str | torch.device | None = None,
    cache_dir: str | os.PathLike | None = None,
    labels: Sequence[str] | None = None,
    window_seconds: float | None = None,
) -> FrozenBackbone:
    """Load a backbone for `task` at `precision` from a built-in name, a local directory or a Hub id; freeze it.

    `labels` sizes a classification head (and names its outputs): the head starts random and trains with the adapter.
    `window_seconds` (Whisper only) runs clips that fit it through a shorter encoder window (`backbones.window`);
    InputError when the backbone is not Whisper or the window is not a multiple of 0.02 s up to its own.
    """
    device = _indexed(torch.device(device) if device is not None else default_device())
    resolved = resolve_precision(precision, device)
    source = resolve_source(str(name_or_path), cache_dir)
    hub_kwargs = _hub_kwargs(source, cache_dir)
    config = _load_config(source, hub_kwargs)
    if labels is not None:
        config.num_labels = len(labels)
        config.id2label, config.label2id = dict(enumerate(labels)), {name: i for i, name in enumerate(labels)}
    spec = spec_for_model_type(config.model_type)
    task_model = spec.task(task)
    processor = _load_processor(source, task, task_model, hub_kwargs)  # first: it fails in a moment, weights do not
    model_class = getattr(transformers, task_model.model_class)
    with _quiet_transformers():  # we report newly initialised weights ourselves, below
        model, info = model_class.from_pretrained(
            source, config=config, use_safetensors=True, output_loading_info=True,
            ignore_mismatched_sizes=labels is not None,  # a checkpoint's own classifier may have other labels
            **hub_kwargs, **_precision_kwargs(resolved, device, spec, task_model),
        )  # fmt: skip
    _warn_random_weights(source, task_model, info.get("missing_keys", ()))
    if resolved != "int8":  # bitsandbytes places the model itself, through device_map
        model.to(device)
    if resolved != "fp32":
        cast_float_inputs(model, spec.cast_float_inputs)
    freeze(model)
    if window_seconds is not None:
        check_window(window_seconds, model)
        length_adaptive_encoder(model)
    return FrozenBackbone(model, processor, spec, task, resolved, source, device, window_seconds)


def _load_processor(source: str, task: str, task_model: TaskModel, hub_kwargs: dict[str, Any]) -> Any:
    """The task's processor, or an error naming what the checkpoint lacks for `task` and what to do."""
    try:
        return getattr(transformers, task_model.processor_class).from_pretrained(source, **hub_kwargs)
    except (OSError, TypeError, ValueError) as error:
        raise MissingInputError(
            f"backbone {source!r} cannot serve task {task!r}: its {task_model.processor_class} does not load "
            f"({type(error).__name__}: {error}). {task_model.processor_hint}".rstrip()
        ) from error


def freeze(model: torch.nn.Module) -> None:
    """Switch off gradients for every parameter and put the model in eval mode."""
    for param in model.parameters():
        param.requires_grad_(False)
    model.eval()
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert not trainable, f"parameters still trainable after freezing: {trainable[:5]}"


def cast_float_inputs(model: torch.nn.Module, names: Iterable[str]) -> None:
    """Cast the float tensors each named submodule receives to that submodule's dtype, at every call.

    For models that build an intermediate tensor in fp32 whatever their own dtype (FastSpeech 2's length regulator
    allocates the mel decoder's input with `dtype=torch.float`): a bf16 or fp16 LayerNorm on the CPU refuses it.
    """
    for name in names:
        model.get_submodule(name).register_forward_pre_hook(_to_own_dtype, with_kwargs=True)


def _to_own_dtype(module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    dtype = next(p.dtype for p in module.parameters() if p.is_floating_point())

    def cast(value: Any) -> Any:
        return value.to(dtype) if isinstance(value, torch.Tensor) and value.is_floating_point() else value

    return tuple(cast(a) for a in args), {k: cast(v) for k, v in kwargs.items()}


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    level = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(level)


def _warn_random_weights(source: str, task: TaskModel, missing: Iterable[str]) -> None:
    """A task head is expected to start random; any other missing weight means a partly random backbone."""
    missing = sorted(missing)
    heads = [k for k in missing if k.split(".")[0] in task.head_modules]
    if heads:
        logger.info("%s: task head %s starts from random weights (it trains with the adapter)", source, heads)
    others = [k for k in missing if k not in heads]
    if others:
        logger.warning(
            "%s has no weights for %d backbone parameters (%s%s); they were randomly initialised. "
            "Is this checkpoint meant for %s?",
            source, len(others), ", ".join(others[:4]), ", ..." if len(others) > 4 else "", task.model_class,
        )  # fmt: skip


def _hub_kwargs(source: str, cache_dir: str | os.PathLike | None) -> dict[str, Any]:
    """What every `from_pretrained` of a backbone gets: never a checkpoint's own Python code (said explicitly, so no
    default of a library version can turn it on), and no network for a local directory or offline."""
    local = Path(source).is_dir()
    return {"cache_dir": cache_dir, "local_files_only": local or hub_offline(), "trust_remote_code": False}


def _load_config(source: str, hub_kwargs: dict[str, Any]) -> transformers.PretrainedConfig:
    try:
        return transformers.AutoConfig.from_pretrained(source, **hub_kwargs)
    except (OSError, ValueError) as error:
        raise BackboneNotFoundError(_not_found_message(source, hub_kwargs, error)) from error


def _not_found_message(source: str, hub_kwargs: dict[str, Any], error: Exception) -> str:
    if Path(source).is_dir():
        return f"{source!r} is a directory but holds no loadable config.json ({error})"
    if Path(source).exists() or source.startswith((".", "/", "~")):
        return f"backbone path {source!r} does not exist or is not a directory"
    cache = hub_kwargs["cache_dir"] or hub_constants.HF_HUB_CACHE
    why = "the Hub is offline (HF_HUB_OFFLINE=1)" if hub_offline() else "the Hub could not be reached"
    return (
        f"backbone {source!r} is not a local directory and not in the Hugging Face cache ({cache}), and {why}. "
        f"Download it where there is network (`hf download {source}`) and pass the local directory instead, "
        f"e.g. --backbone /path/to/{source.rsplit('/', 1)[-1]}. Set HF_HUB_OFFLINE=1 to skip trying the network."
    )


def _precision_kwargs(precision: str, device: torch.device, spec: BackboneSpec, task: TaskModel) -> dict[str, Any]:
    if precision == "fp32":
        return {"dtype": torch.float32}
    if precision == "bf16":
        return {"dtype": torch.bfloat16}
    skip = [*task.head_modules, *spec.int8_skip_modules] or None  # None keeps transformers' default skips
    quantization = transformers.BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    # LLM.int8 kernels run activations in fp16 on CUDA; on the CPU the unquantized rest stays fp32.
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    return {"quantization_config": quantization, "device_map": {"": str(device)}, "dtype": dtype}
