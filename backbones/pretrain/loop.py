"""The training loop both pretraining recipes share: read top to bottom, resume-safe, with progress.

A recipe supplies its modules, a loss function of the step, a learning-rate schedule, an evaluation
(lower `score` is better) and an export that writes the model whenever the score improves.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from speechpeft.backbones.pretrain.curves import CurveLog
from speechpeft.backbones.pretrain.options import PretrainOptions
from speechpeft.backbones.pretrain.state import META_FILE, STATE_FILE, load_state, save_state
from speechpeft.directories import recover_directory, replace_directory, staging_directory
from speechpeft.errors import OutputExistsError

LOG_EVERY = 10  # steps
MAX_GRAD_NORM = 1.0
CHECKPOINT_SECONDS = 600.0  # between evaluations too, so a killed run loses at most this much work


@dataclass
class Recipe:
    name: str
    modules: dict[str, torch.nn.Module]
    losses: Callable[[int], dict[str, torch.Tensor]]  # step -> {"loss": what to minimise, other parts...}
    learning_rate: Callable[[int], float]
    evaluate: Callable[[], dict[str, float]]
    score: str  # the metric of `evaluate` that picks the best step; lower is better
    export: Callable[[], None]  # writes the current model as the best one
    options: dict  # recorded with every checkpoint


def resumable(checkpoint: Path) -> bool:
    """A full checkpoint to resume from (one a crash mid-swap set aside is put back first).

    The record of a finished run without its weights (`state.json` and the curves, as the repository keeps them, and
    no exported `model/` beside them: a fresh clone) is not one: the run starts over, saying so, and replaces the
    record as it goes. Raises OutputExistsError (a FileExistsError) when that record has its exported model here: a
    finished run to keep, not to overwrite.
    """
    recover_directory(checkpoint)
    if (checkpoint / STATE_FILE).exists():
        return True
    if (checkpoint / META_FILE).exists():
        if (checkpoint.parent / "model").exists():
            raise OutputExistsError(
                f"{checkpoint.parent} holds a finished run and its model, but not its weights and optimizer state "
                f"(only {META_FILE}): pretrain into a new --out directory, or delete {checkpoint.parent} to start "
                "it over"
            )
        finished = json.loads((checkpoint / META_FILE).read_text()).get("step")
        tqdm.write(f"{checkpoint.parent} holds the record of a run finished at step {finished}, without its "
                   "weights or model (as the repository keeps it): training it again from step 0, replacing that "
                   "record", file=sys.stderr)  # fmt: skip
    return False


def train(recipe: Recipe, out: Path, steps: int, eval_every: int, bf16: bool) -> dict | None:
    """Run `recipe` to `steps`, resuming from `out/checkpoint`; evaluate and checkpoint every `eval_every` steps,
    and checkpoint every `CHECKPOINT_SECONDS` of wall time between them.

    SIGTERM, SIGINT or SIGHUP finish the current step (and an evaluation under way), save the checkpoint and raise
    SystemExit(128 + signal number): running the same command again resumes exactly there."""
    params = [p for module in recipe.modules.values() for p in module.parameters()]
    optimizer = torch.optim.AdamW(params, lr=recipe.learning_rate(0), weight_decay=0.01, betas=(0.9, 0.98))
    checkpoint, curves = out / "checkpoint", CurveLog(out)
    meta = load_state(checkpoint, recipe.modules, optimizer) if resumable(checkpoint) else {"step": 0}
    step, best = meta["step"], meta.get("best")
    if step == 0:  # curves of an earlier attempt (one stopped before its first checkpoint, or a record) go
        curves.path.unlink(missing_ok=True)
    saved = {"step": step, "at": time.monotonic()}

    def save() -> None:
        save_state(checkpoint, recipe.modules, optimizer, step, {"best": best, "options": recipe.options})
        saved.update(step=step, at=time.monotonic())

    with tqdm(total=steps, initial=step, desc=f"pretrain {recipe.name}", unit="step") as bar, _stop_signals() as stop:
        while step < steps and not stop:
            started = time.perf_counter()
            values = _step(recipe, optimizer, params, step, bf16)
            step += 1
            bar.update()
            bar.set_postfix(loss=f"{values['loss']:.3f}")
            if step % LOG_EVERY == 0:
                curves.log(step, **values, seconds_per_step=time.perf_counter() - started)
            if step % eval_every == 0 or step == steps:
                best = _evaluate(recipe, curves, step, best)
                save()
            elif time.monotonic() - saved["at"] >= CHECKPOINT_SECONDS:
                save()
        if saved["step"] != step:  # stopped by a signal between checkpoints
            save()
    if stop and step < steps:
        tqdm.write(f"stopped by {stop[0].name} at step {step}/{steps}; checkpoint saved: rerun the command to resume")
        raise SystemExit(128 + stop[0])
    return best


@contextmanager
def _stop_signals() -> Iterator[list[signal.Signals]]:
    """A list that the first SIGTERM, SIGINT or SIGHUP fills (instead of killing the process) while the block runs;
    a second one acts as it would have (Ctrl-C twice stops an evaluation that hangs). Signals the process
    ignores (SIGINT of a background job) stay ignored."""
    caught: list[signal.Signals] = []
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    handlers = {sig: handler for sig, handler in handlers.items() if handler not in (signal.SIG_IGN, None)}

    def handle(number: int, _frame) -> None:
        caught.append(signal.Signals(number))
        if len(caught) > 1:
            signal.signal(number, handlers[number])
            signal.raise_signal(number)

    for sig in handlers:
        signal.signal(sig, handle)
    try:
        yield caught
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _evaluate(recipe: Recipe, curves: CurveLog, step: int, best: dict | None) -> dict:
    metrics = recipe.evaluate()
    curves.log(step, **metrics)
    tqdm.write(f"step {step}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    if best is None or metrics[recipe.score] < best[recipe.score]:
        recipe.export()
        return {"step": step, **metrics}
    return best


def _step(recipe: Recipe, optimizer: torch.optim.Optimizer, params: list, step: int, bf16: bool) -> dict[str, float]:
    for module in recipe.modules.values():
        module.train()
    for group in optimizer.param_groups:
        group["lr"] = recipe.learning_rate(step)
    with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        losses = recipe.losses(step)
    losses["loss"].backward()
    norm = torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {
        **{k: v.item() for k, v in losses.items()},
        "grad_norm": norm.item(),
        "lr": optimizer.param_groups[0]["lr"],
    }


def warmup_cosine(options: PretrainOptions, step: int) -> float:
    """Linear warm-up to `options.lr`, then cosine decay to a tenth of it at `options.steps`."""
    if step < options.warmup:
        return options.lr * (step + 1) / options.warmup
    progress = min(1.0, (step - options.warmup) / max(1, options.steps - options.warmup))
    return options.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def options_record(options: PretrainOptions) -> dict:
    """The options as JSON-ready values, stored with every checkpoint and read by the model card."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(options).items()}


def export_half(model, processor, directory: Path) -> None:
    """Save a float16 copy of `model` (the training copy stays fp32) with its processor (None: a model that has
    none, like a vocoder), atomically."""
    tmp = staging_directory(directory)
    half = type(model)(model.config)
    half.load_state_dict(model.state_dict())
    if getattr(model, "generation_config", None) is not None:  # FastSpeech2ConformerModel does not generate
        half.generation_config = model.generation_config
    half.to(torch.float16).save_pretrained(tmp)
    if processor is not None:
        processor.save_pretrained(tmp)
    replace_directory(tmp, directory)
