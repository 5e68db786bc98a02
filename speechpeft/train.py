"""`speechpeft train`: one adapter, one task, one frozen backbone, read top to bottom.

An explicit loop rather than a Trainer: what happens each step is visible here, methods that need a
per-step hook (AdaLoRA's rank allocation) get one, and `accelerate launch` runs it multi-process
unchanged. Validation every `eval_every` steps; the best adapter is saved each time it improves, so
an interrupted run keeps its best; training stops early after `patience` validations without progress.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from itertools import count
from pathlib import Path

import datasets
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from speechpeft.adapter_dir import save_adapter
from speechpeft.adapters.lora import LoraOptions, attach_lora
from speechpeft.backbones import FrozenBackbone, load_frozen
from speechpeft.backbones.fingerprint import local_weights_dir, weights_fingerprint
from speechpeft.evaluation import evaluate_task
from speechpeft.tasks import data
from speechpeft.tasks.catalog import TASKS, TaskEntry
from speechpeft.train_options import TrainOptions

logger = logging.getLogger(__name__)
MAX_GRAD_NORM = 1.0


def prepare_rows(options: TrainOptions, entry: TaskEntry):
    """Training and validation rows with the task's columns (audio not yet decoded)."""
    dataset = data.load_speech_dataset(options.dataset)
    rows = data.task_rows(data.pick_split(dataset, options.split), entry.roles)
    if options.max_utterances is not None:
        rows = rows.shuffle(seed=options.seed).select(range(min(options.max_utterances, len(rows))))
    if options.validation_split is None:
        return data.hold_out(rows, options.validation_fraction, options.seed)
    return rows, data.task_rows(data.pick_split(dataset, options.validation_split), entry.roles)


def train(options: TrainOptions, progress: bool = True) -> dict:
    """Train, keep the best adapter in `options.out`, and return its record."""
    set_seed(options.seed)
    entry = TASKS.get(options.task)
    train_rows, validation_rows = prepare_rows(options, entry)
    both = datasets.concatenate_datasets([train_rows, validation_rows])
    labels = data.label_names(both, options.task) if entry.kind == "classify" else None
    backbone = load_frozen(options.backbone, entry.kind, options.precision, labels=labels)
    train_rows, validation_rows = (
        data.at_sample_rate(r, backbone.spec.sample_rate) for r in (train_rows, validation_rows)
    )
    task = entry.build(backbone, labels)
    train_rows, validation_rows = task.usable(train_rows), task.usable(validation_rows)
    if not len(train_rows) or not len(validation_rows):
        usable = f"{len(train_rows)} training and {len(validation_rows)} validation rows"
        raise ValueError(f"{usable} are usable for task {options.task!r} in {options.dataset}: more data is needed")
    model = attach_lora(backbone, LoraOptions(rank=options.rank))
    accelerator = Accelerator(cpu=backbone.device.type == "cpu")
    loader = torch.utils.data.DataLoader(
        train_rows, batch_size=options.batch_size, shuffle=True, collate_fn=task.collate,
        generator=torch.Generator().manual_seed(options.seed),
    )  # fmt: skip
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=options.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / options.steps)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    record = _record(options, backbone, labels, len(train_rows), len(validation_rows))
    return _loop(
        options, entry, task, model, optimizer, schedule, loader, validation_rows, accelerator, record, progress
    )


def _loop(options, entry, task, model, optimizer, schedule, loader, validation_rows, accelerator, record, progress):
    best, stale, started = None, 0, time.perf_counter()
    batches = _forever(loader)
    with tqdm(total=options.steps, desc=f"train {options.task}/{options.method}", disable=not progress) as bar:
        for step in count(1):
            train_mode(model)
            loss = task.loss(model, next(batches))
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
            optimizer.step(), schedule.step(), optimizer.zero_grad(set_to_none=True)
            bar.update(), bar.set_postfix(loss=f"{loss.item():.3f}")
            if step % options.eval_every and step != options.steps:
                continue
            metrics, _ = evaluate_task(task, model, validation_rows, options.batch_size)
            tqdm.write(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
            if entry.better(metrics, best):
                best, stale = metrics, 0
                record.update(
                    best_step=step, validation=metrics, train_seconds=round(time.perf_counter() - started, 1)
                )
                if accelerator.is_main_process:
                    save_adapter(accelerator.unwrap_model(model), options.out, record)
            else:
                stale += 1
            if step >= options.steps or stale >= options.patience:
                break
    record["steps_run"] = step
    return record


def train_mode(model: torch.nn.Module) -> None:
    """Train mode, except frozen batch norms: their running statistics are backbone state and must not move."""
    model.train()
    for module in model.modules():
        frozen = not any(p.requires_grad for p in module.parameters())
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and frozen:
            module.eval()


def _forever(loader):
    while True:
        yield from loader


def _record(options: TrainOptions, backbone: FrozenBackbone, labels, train_size: int, validation_size: int) -> dict:
    weights = local_weights_dir(backbone.source)
    trainable = sum(p.numel() for p in backbone.model.parameters() if p.requires_grad)
    return {
        "backbone": options.backbone, "backbone_source": backbone.source,
        "backbone_fingerprint": weights_fingerprint(weights) if weights else None,
        "family": backbone.spec.family, "task": options.task, "task_kind": backbone.task, "method": options.method,
        "labels": labels, "precision": backbone.precision, "trainable_parameters": trainable,
        "data": {"dataset": str(options.dataset), "split": options.split, "train_utterances": train_size,
                 "validation_split": options.validation_split, "validation_utterances": validation_size},
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
    }  # fmt: skip
