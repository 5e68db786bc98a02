"""`speechpeft train`: one adapter, one task, one frozen backbone, read top to bottom.

An explicit loop rather than a Trainer: what happens each step is visible here, methods that need a
per-step hook (AdaLoRA's rank allocation) get one, and `accelerate launch` runs it multi-process
unchanged. Validation every `eval_every` steps; the best adapter is saved each time it improves, so
an interrupted run keeps its best; training stops early after `patience` validations without progress.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from itertools import count
from pathlib import Path
from typing import Literal

import datasets
import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from speechpeft.adapter_dir import save_adapter
from speechpeft.adapters.base import AdapterMethod, trainable_parameters, trainables_in_fp32
from speechpeft.adapters.catalog import METHODS, check_supported
from speechpeft.backbones import FrozenBackbone, load_frozen
from speechpeft.backbones.fingerprint import local_weights_dir, weights_fingerprint
from speechpeft.errors import InputError
from speechpeft.evaluation import evaluate_task, shown, use_normalizer
from speechpeft.tasks import data
from speechpeft.tasks.catalog import TASKS, Task, TaskEntry
from speechpeft.tasks.rows import LeftOut
from speechpeft.train_options import TrainOptions

MAX_GRAD_NORM = 1.0


@dataclass
class Run:
    """Everything one training run works with, built once by `prepare_run`."""

    options: TrainOptions
    entry: TaskEntry
    method: AdapterMethod
    task: Task
    model: torch.nn.Module
    train_rows: datasets.Dataset
    validation_rows: datasets.Dataset
    record: dict
    on_validation: Callable[[int, dict[str, float]], None] | None = None


def prepare_rows(
    options: TrainOptions, entry: TaskEntry
) -> tuple[datasets.Dataset, datasets.Dataset, dict[str, LeftOut]]:
    """Training and validation rows with the task's columns (audio not yet decoded), and the rows left out of
    each ("train", "validation") for an empty label or transcript. A validation slice held out of the training
    split has its left-out rows counted under "train"."""
    dataset = data.load_speech_dataset(options.dataset, options.dataset_config, options.streaming)
    cap = options.max_utterances if options.streaming else None  # streamed: each split read is cut to its first rows
    rows, left_out = data.task_rows(data.pick_split(dataset, options.split, cap), entry.roles, entry.context)
    if options.max_utterances is not None:
        rows = rows.shuffle(seed=options.seed).select(range(min(options.max_utterances, len(rows))))
    if options.validation_split is None:
        return *data.hold_out(rows, options.validation_fraction, options.seed), {"train": left_out, "validation": {}}
    validation, validation_left_out = data.task_rows(
        data.pick_split(dataset, options.validation_split, cap, "--validation-split"), entry.roles, entry.context
    )
    return rows, validation, {"train": left_out, "validation": validation_left_out}


def prepare_run(options: TrainOptions, device: torch.device | None = None) -> Run:
    """Rows, the frozen backbone on `device` (its head sized by the label map), the task, and the method attached
    with every trainable parameter in fp32."""
    entry, method = TASKS.get(options.task), METHODS.get(options.method)
    train_rows, validation_rows, left_out = prepare_rows(options, entry)
    both = datasets.concatenate_datasets([train_rows, validation_rows])
    labels = data.label_names(both, options.task) if entry.kind == "classify" else None
    kind = options.backbone_kind(entry.kind)
    head = labels if kind == "classify" else None  # a decoder classifier has no head to size
    backbone = load_frozen(options.backbone, kind, options.precision, device=device, labels=head,
                           window_seconds=options.window_seconds)  # fmt: skip
    task = entry.build(backbone, labels)
    use_normalizer(task, options.normalizer)
    train_rows, left_out["train"] = data.usable_rows(task, train_rows, left_out["train"], "training", training=True)
    validation_rows, left_out["validation"] = data.usable_rows(
        task, validation_rows, left_out["validation"], "validation"
    )
    if not len(train_rows) or not len(validation_rows):
        usable = f"{len(train_rows)} training and {len(validation_rows)} validation rows"
        raise InputError(f"{usable} are usable for task {options.task!r} in {options.dataset}: more data is needed")
    check_supported(options.method, backbone.spec.family)
    if options.gradient_checkpointing:  # non-reentrant: works with frozen inputs and with PEFT's wrappers
        backbone.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = method.attach(backbone, options.adapter_options())
    trainables_in_fp32(model)
    record = _record(options, backbone, labels, trainable_parameters(model), len(train_rows), len(validation_rows))
    record["data"].update(train_left_out=left_out["train"], validation_left_out=left_out["validation"])
    return Run(options, entry, method, task, model, train_rows, validation_rows, record)


def train(
    options: TrainOptions, progress: bool = True, on_validation: Callable[[int, dict[str, float]], None] | None = None
) -> dict:
    """Train, keep the best adapter in `options.out`, and return its record.

    `on_validation(step, metrics)` is called after each scored validation (a tuner reports to its pruner there;
    an exception it raises stops the run, the best adapter so far kept)."""
    set_seed(options.seed)
    ddp = DistributedDataParallelKwargs()
    # before loading: each process loads onto its own device (an int8 model cannot be moved afterwards)
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), kwargs_handlers=[ddp])
    run = prepare_run(options, accelerator.device)
    run.on_validation = on_validation
    # LayerDrop (wav2vec2, HuBERT, WavLM, SpeechT5 configs) skips whole layers at random, so some trainable
    # parameters get no gradient in a step; DDP must look for them or it waits for their reduction forever
    ddp.find_unused_parameters = skips_layers(run.task.backbone.model)
    run.record["processes"] = accelerator.num_processes
    if run.record["trainable_parameters"] == 0:  # zero-shot: nothing to train, score and save as it is
        _validate(run, accelerator, run.model, step=0, best=None, started=time.perf_counter())
        run.record["steps_run"] = 0
        return run.record
    return _loop(run, accelerator, progress)


def _loop(run: Run, accelerator: Accelerator, progress: bool) -> dict:
    options = run.options
    loader = torch.utils.data.DataLoader(
        run.train_rows, batch_size=options.batch_size, shuffle=True, collate_fn=run.task.collate,
        generator=torch.Generator().manual_seed(options.seed),
    )  # fmt: skip
    optimizer = torch.optim.AdamW([p for p in run.model.parameters() if p.requires_grad], lr=options.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / options.steps)
    model, optimizer, loader = accelerator.prepare(run.model, optimizer, loader)
    best, stale, started, batches = None, 0, time.perf_counter(), _forever(loader)
    with tqdm(total=options.steps, desc=f"train {options.task}/{options.method}", disable=not progress) as bar:
        for step in count(1):
            loss = _step(run, accelerator, model, optimizer, next(batches), step)
            schedule.step()
            bar.update(), bar.set_postfix(loss=f"{loss:.3f}")
            if step % options.eval_every == 0 or step == options.steps:
                # DDP hands out rank 0's buffers before each forward, not after the last one: a trained batch
                # norm's running statistics differ per process until synced here, so all score what rank 0 saves
                for buffer in model.buffers() if accelerator.num_processes > 1 else ():
                    torch.distributed.broadcast(buffer, src=0)
                verdict, best = _validate(run, accelerator, model, step, best, started)
                # rank 0's verdict (it saves): a process whose scores differ (kernels that are not deterministic)
                # must stop at the same step, or the others wait for it in their next all-reduce for ever
                decided = [verdict]
                if accelerator.num_processes > 1:
                    torch.distributed.broadcast_object_list(decided, src=0)
                stale = {"improved": 0, "stale": stale + 1, "pending": stale}[decided[0]]
            if step >= options.steps or stale >= options.patience:
                break
    run.record["steps_run"] = step
    return run.record


def _step(run: Run, accelerator: Accelerator, model, optimizer, batch: dict, step: int) -> float:
    train_mode(model)
    with run.task.backbone.autocast():
        loss = run.task.loss(model, batch)
    accelerator.backward(loss)
    accelerator.clip_grad_norm_(model.parameters(), MAX_GRAD_NORM)
    optimizer.step()
    if run.method.after_step is not None:  # e.g. AdaLoRA: reads this step's gradients, so before zero_grad
        run.method.after_step(accelerator.unwrap_model(model), step)
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


Verdict = Literal["improved", "stale", "pending"]


def _validate(run: Run, accelerator, model, step: int, best: dict | None, started: float) -> tuple[Verdict, dict]:
    """Score on the validation rows and save the adapter if it is the best so far; "pending" (nothing scored or
    saved) while the method says a model at this step is not yet the adapter it defines (AdaLoRA's ranks)."""
    pending = run.method.pending(accelerator.unwrap_model(model), step) if run.method.pending else None
    if pending is not None:
        _note_pending(run.record, step, pending)
        return "pending", best
    # every process scores the same rows with the same seed, so all of them take the same decisions
    metrics, _ = evaluate_task(run.task, accelerator.unwrap_model(model), run.validation_rows, run.options.batch_size)
    tqdm.write(f"step {step}: " + ", ".join(f"{k} {shown(v)}" for k, v in metrics.items()))
    verdict: Verdict = "stale"
    if run.entry.better(metrics, best):
        run.record.update(best_step=step, validation=metrics, train_seconds=round(time.perf_counter() - started, 1))
        run.record.update(getattr(run.task, "provenance", dict)())  # TTS: the listener that scored the CER column
        if accelerator.is_main_process:
            save_adapter(accelerator.unwrap_model(model), run.options.out, run.record, run.method.save)
        verdict, best = "improved", metrics
    if run.on_validation is not None:  # after the save: a tuner that stops the run keeps its best adapter
        run.on_validation(step, metrics)
    return verdict, best


def _note_pending(record: dict, step: int, reason: str) -> None:
    """Say on the terminal (once) and in the record which validations were skipped, and why."""
    skipped = record.setdefault("selection", {"skipped_steps": [], "reason": reason})["skipped_steps"]
    if not skipped:
        tqdm.write(f"step {step}: not validated, no adapter kept until then: {reason}")
    skipped.append(step)


def skips_layers(model: torch.nn.Module) -> bool:
    """Whether the model drops whole layers at random in training (LayerDrop: any `*layerdrop` > 0 in its config)."""
    config = getattr(model, "config", None)
    return any("layerdrop" in key and value for key, value in vars(config or object()).items())


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


def reference(name: str) -> tuple[str, Literal["builtin", "directory", "hub"]]:
    """How a record names a backbone or dataset so that it means the same from any directory, and how it was
    resolved: a built-in backbone's name ("builtin"), a local directory's absolute path ("directory"), else the Hub
    id as given ("hub"); what the user typed is recorded beside it."""
    from speechpeft.backbones.builtin import is_builtin

    if is_builtin(name):
        return name, "builtin"
    if Path(name).exists():
        return str(Path(name).resolve()), "directory"
    return name, "hub"


def _record(options: TrainOptions, backbone: FrozenBackbone, labels, trainable: int, train: int, valid: int) -> dict:
    weights = local_weights_dir(backbone.source)
    (backbone_ref, backbone_how), (dataset_ref, dataset_how) = reference(options.backbone), reference(options.dataset)
    return {
        "backbone": backbone_ref, "backbone_resolved_as": backbone_how, "backbone_as_given": options.backbone,
        "backbone_source": reference(backbone.source)[0],
        "backbone_fingerprint": weights_fingerprint(weights) if weights else None,
        "family": backbone.spec.family, "task": options.task, "task_kind": backbone.task, "method": options.method,
        "labels": labels, "precision": backbone.precision, "trainable_parameters": trainable,
        "data": {"dataset": dataset_ref, "dataset_resolved_as": dataset_how, "dataset_as_given": str(options.dataset),
                 "config": options.dataset_config, "split": options.split,
                 "streamed_max_rows": options.max_utterances if options.streaming else None, "train_utterances": train,
                 "validation_split": options.validation_split, "validation_utterances": valid},
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()},
    }  # fmt: skip
