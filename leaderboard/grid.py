"""The leaderboard's grid: corpora, tasks x backbones x method variants x seeds, from a TOML preset and flags.

A preset (`leaderboard/presets/*.toml`) names the corpora to synthesise, each task's corpus, backbones and
training settings, and the method variants with their hyper-parameters. A cell's training settings are
`speechpeft train`'s flags, layered: the task's `train` table, then the variant's table, then the task's
own override of that variant (`[tasks.asr.methods.full]`). Unknown keys fail when the preset loads, naming
the key and the flags that exist.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shlex
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from speechpeft.errors import InputError

SETTING_KEYS = frozenset(
    {"method", "steps", "batch_size", "lr", "rank", "prefix_length", "prefix_encoder", "bottleneck_style",
     "reduction_factor", "eval_every", "patience", "window_seconds", "precision", "max_utterances",
     "validation_fraction", "gradient_checkpointing", "split", "validation_split", "classifier", "lora_alpha",
     "lora_dropout", "target_modules", "modules_to_save"}
)  # fmt: skip


@dataclass(frozen=True)
class Cell:
    """One training + evaluation run of the grid."""

    task: str
    backbone: str
    variant: str  # the method variant's name in the preset (pfeiffer, houlsby, lora, ...)
    seed: int
    corpus: Path  # the synthesised corpus directory
    settings: dict[str, Any]  # speechpeft train's options for this cell (method included)
    test_split: str | None = "test"  # None: not scored on a test split (tuning reads the validation scores)
    group_by: str = "voice"  # per-group scores: the corpus column (voice) each test utterance is grouped by
    latency_utterances: int = 8
    tune: int = 0  # trials of its method's hyper-parameters on validation data (`leaderboard.tune`); 0: none

    @property
    def id(self) -> str:
        """`asr/openai--whisper-tiny.en/lora/seed-0`: the cell's directory under the grid's `cells/`."""
        return f"{self.task}/{self.backbone.replace('/', '--')}/{self.variant}/seed-{self.seed}"


@dataclass(frozen=True)
class Corpus:
    name: str
    synth: str  # `speechpeft data synth` flags, without --out

    def path(self, data_dir: Path) -> Path:
        """`DATA_DIR/NAME-HASH`: the flags' hash in the name, so a changed recipe never reuses an old corpus."""
        digest = hashlib.sha256(" ".join(shlex.split(self.synth)).encode()).hexdigest()[:8]
        return data_dir / f"{self.name}-{digest}"

    def argv(self) -> list[str]:
        return shlex.split(self.synth)


@dataclass(frozen=True)
class Grid:
    """A loaded preset, narrowed by flags."""

    name: str
    corpora: dict[str, Corpus]
    tasks: dict[str, dict[str, Any]]  # task -> {corpus, backbones, train, methods (overrides), group_by, ...}
    methods: dict[str, dict[str, Any]]  # variant -> settings (method, lr, ...)
    seeds: tuple[int, ...] = (0,)
    data_dir: Path = Path("data/leaderboard")
    latency_utterances: int = 8
    description: str = ""
    workers: int = 1  # cells run at once, each in its own process (`--workers` overrides)
    score_test: bool = True  # False (tuning presets): cells report their validation scores only
    tune: int = 0  # `--tune N`: every cell tunes its method with N trials on validation data

    def cells(self) -> list[Cell]:
        """Every cell, task by task in preset order, each task's methods in preset order, seeds innermost."""
        return [self._cell(task, backbone, variant, seed) for task, spec in self.tasks.items()
                for backbone in spec["backbones"] for variant in self.methods for seed in self.seeds]  # fmt: skip

    def _cell(self, task: str, backbone: str, variant: str, seed: int) -> Cell:
        spec = self.tasks[task]
        settings = {"method": variant, **spec.get("train", {}), **self.methods[variant],
                    **spec.get("methods", {}).get(variant, {})}  # fmt: skip
        corpus = self.corpora[spec["corpus"]].path(self.data_dir)
        test_split = spec.get("test_split", "test") if self.score_test else None
        return Cell(task, backbone, variant, seed, corpus, settings, test_split, spec.get("group_by", "voice"),
                    self.latency_utterances, self.tune)  # fmt: skip

    def narrowed(
        self, tasks: tuple[str, ...] = (), variants: tuple[str, ...] = (), backbones: tuple[str, ...] = (),
        seeds: int | None = None,
    ) -> Grid:  # fmt: skip
        """The grid restricted to `tasks` and `variants`, with `backbones` replacing every task's backbones and
        seeds 0..`seeds`-1; empty means as in the preset. Raises InputError for a task or variant it lacks."""
        _check_known(tasks, self.tasks, "task")
        _check_known(variants, self.methods, "method")
        chosen = {t: dict(s) for t, s in self.tasks.items() if not tasks or t in tasks}
        if backbones:
            chosen = {t: {**s, "backbones": list(backbones)} for t, s in chosen.items()}
        methods = {v: s for v, s in self.methods.items() if not variants or v in variants}
        return dataclasses.replace(self, tasks=chosen, methods=methods,
                                   seeds=tuple(range(seeds)) if seeds else self.seeds)  # fmt: skip


def _check_known(asked: tuple[str, ...], known: dict, what: str) -> None:
    unknown = [a for a in asked if a not in known]
    if unknown:
        raise InputError(f"unknown {what} {', '.join(unknown)}: this preset has {', '.join(known)}")


def preset_path(name: str) -> Path:
    """The TOML file of a preset shipped in the package (`default`, `quick`)."""
    return Path(str(resources.files("speechpeft.leaderboard") / "presets" / f"{name}.toml"))


def load_grid(path: Path) -> Grid:
    """Read a preset. Raises InputError naming the file and the key for anything it cannot use."""
    try:
        raw = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"no leaderboard config {path}: pass a TOML file or a preset (--quick)") from None
    except tomllib.TOMLDecodeError as error:
        raise InputError(f"{path} is not valid TOML: {error}") from None
    return _grid(raw, path)


TOP_KEYS = {"name", "description", "seeds", "data_dir", "latency_utterances", "workers", "score_test", "corpora",
            "tasks", "methods"}  # fmt: skip
TASK_KEYS = {"corpus", "backbones", "train", "methods", "test_split", "group_by"}


def _unknown(keys, known: set[str], where: str) -> None:
    extra = sorted(set(keys) - known)
    if extra:
        raise InputError(f"{where}: unknown key {', '.join(extra)}; known keys: {', '.join(sorted(known))}")


def _grid(raw: dict, path: Path) -> Grid:
    _unknown(raw, TOP_KEYS, str(path))
    for task, spec in raw.get("tasks", {}).items():
        _unknown(spec, TASK_KEYS, f"{path}: [tasks.{task}]")
    for name, spec in raw.get("corpora", {}).items():
        _unknown(spec, {"synth"}, f"{path}: [corpora.{name}]")
        if "synth" not in spec:
            raise InputError(f'{path}: [corpora.{name}] needs synth = "<speechpeft data synth flags>"')
    corpora = {name: Corpus(name, spec["synth"]) for name, spec in raw.get("corpora", {}).items()}
    methods = {variant: dict(settings) for variant, settings in raw.get("methods", {}).items()}
    tasks = {task: dict(spec) for task, spec in raw.get("tasks", {}).items()}
    if not tasks or not methods:
        raise InputError(f"{path} needs at least one [tasks.NAME] and one [methods.NAME] table")
    for where, settings in _all_settings(tasks, methods):
        _check_settings(settings, f"{path}: {where}")
    for task, spec in tasks.items():
        if spec.get("corpus") not in corpora:
            raise InputError(f"{path}: [tasks.{task}] corpus {spec.get('corpus')!r} is not one of [corpora.*]: "
                             f"{', '.join(corpora) or 'none defined'}")  # fmt: skip
        spec["backbones"] = list(spec.get("backbones") or [_default_backbone(task)])
    return Grid(raw.get("name", Path(path).stem), corpora, tasks, methods, tuple(raw.get("seeds", [0])),
                Path(raw.get("data_dir", "data/leaderboard")), int(raw.get("latency_utterances", 8)),
                raw.get("description", ""), int(raw.get("workers", 1)), bool(raw.get("score_test", True)))  # fmt: skip


def _all_settings(tasks: dict, methods: dict):
    for variant, settings in methods.items():
        yield f"[methods.{variant}]", settings
    for task, spec in tasks.items():
        yield f"[tasks.{task}.train]", spec.get("train", {})
        for variant, settings in spec.get("methods", {}).items():
            yield f"[tasks.{task}.methods.{variant}]", settings


def _check_settings(settings: dict, where: str) -> None:
    unknown = sorted(set(settings) - SETTING_KEYS)
    if unknown:
        raise InputError(f"{where}: unknown setting {', '.join(unknown)}; settings are `speechpeft train`'s "
                         f"options: {', '.join(sorted(SETTING_KEYS))}")  # fmt: skip


def _default_backbone(task: str) -> str:
    from speechpeft.backbones.builtin import default_backbone

    return default_backbone(task)
