"""What a task is: the data it reads, how a batch is built, its loss, its predictions and its metrics.

A task knows nothing of adapters and a backbone knows nothing of tasks (the s3prl split into upstream
and downstream): the training loop and `speechpeft eval` only call the methods below.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import datasets
import numpy as np
import torch

from speechpeft.backbones import FrozenBackbone
from speechpeft.registry import Registry
from speechpeft.tasks.rows import LeftOut


@dataclass
class Predictions:
    """Outputs of one batch: what the model said per item, the references, and the compute time it took."""

    outputs: list[Any]
    references: list[Any]
    seconds: float
    audio_seconds: float = 0.0
    extras: list[dict] = field(default_factory=list)  # per-item fields for the JSONL (e.g. an audio path)


class Task(Protocol):
    name: str  # registry key: asr, tts, intent, keyword, speaker
    kind: str  # the backbone task kind it loads: asr | tts | classify
    roles: tuple[str, ...]  # dataset columns it reads (see tasks.data.ROLE_COLUMNS)
    backbone: FrozenBackbone  # the frozen backbone it was built for

    def usable(self, rows: datasets.Dataset) -> tuple[datasets.Dataset, LeftOut]:
        """The rows this task can train and score on whole, and how many it left out, by reason.

        Nothing is cut or dropped silently: a row the task would truncate (audio longer than a fixed window,
        text longer than the model's positions) or cannot score (a reference with no words after the normaliser,
        a label outside the label map) is left out and counted (`speechpeft.tasks.rows.sift`); the callers
        print the counts and write them into the adapter record and the eval summary.
        """
        ...

    def collate(self, rows: list[dict]) -> dict[str, Any]: ...

    def loss(self, model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor: ...

    def predict(self, model: torch.nn.Module, batch: dict[str, Any]) -> Predictions: ...

    def score(self, predictions: list[Predictions]) -> tuple[dict[str, float], list[dict]]:
        """Corpus metrics, and per-item records (reference, output, item scores) for the JSONL."""
        ...


@dataclass(frozen=True)
class TaskEntry:
    """How to build a task for a loaded backbone; `labels` is the label map for classification tasks."""

    kind: str
    roles: tuple[str, ...]
    build: Callable[[FrozenBackbone, list[str] | None], Task]
    description: str
    selection: tuple[str, str]  # (metric, "min" | "max") that picks the best checkpoint
    context: tuple[str, ...] = ()  # columns some backbones' tasks read when a dataset has them (tasks.data.task_rows)

    def better(self, metrics: dict[str, float], best: dict[str, float] | None) -> bool:
        name, goal = self.selection
        if best is None:
            return True
        return metrics[name] < best[name] if goal == "min" else metrics[name] > best[name]


TASKS: Registry[TaskEntry] = Registry("task")


def decode_audio(rows: list[dict]) -> list[np.ndarray]:
    """Mono float32 samples of each row's audio (channels averaged), at the rate the dataset's Audio feature was cast
    to; AudioInputError for a truncated or corrupt file, or one with no or NaN/inf samples (`audio_input`)."""
    from speechpeft.audio_input import dataset_clip

    return [dataset_clip(row["audio"]) for row in rows]


def timed(function: Callable[[], Any]) -> tuple[Any, float]:
    """`function()` and its wall time; CUDA work is waited for, or only its launch would be timed."""
    started = time.perf_counter()
    result = function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return result, time.perf_counter() - started


@contextlib.contextmanager
def seeded(device: torch.device, seed: int) -> Iterator[None]:
    """Run the body from a fixed state of the CPU's random generator and `device`'s, both restored after.

    Only the generator of the GPU the work runs on is touched: forking every visible GPU's would create a
    CUDA context on each of them from every process.
    """
    gpus = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=gpus):
        torch.default_generator.manual_seed(seed)
        for gpu in gpus:
            with torch.cuda.device(gpu):
                torch.cuda.manual_seed(seed)
        yield


def model_inputs(batch: dict[str, Any], device: torch.device, labels: bool = True) -> dict[str, Any]:
    """The tensors of a batch on `device`, the targets only if `labels` (references and such are dropped)."""
    return {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor) and (labels or k != "labels")}
