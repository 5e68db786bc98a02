"""`build_corpus`: plan, synthesise, and save a Hugging Face `DatasetDict` with a dataset card."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import datasets
import soundfile

from speechpeft.tasks.corpus import plan, render, text
from speechpeft.tasks.corpus.card import write_card
from speechpeft.tasks.corpus.voices import VOICES, Voice, missing_programs

FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "audio": datasets.Audio(sampling_rate=render.SAMPLE_RATE),
        "text": datasets.Value("string"),
        "kind": datasets.Value("string"),
        "intent": datasets.Value("string"),
        "slots": datasets.Value("string"),
        "keyword": datasets.Value("string"),
        "voice": datasets.Value("string"),
        "engine": datasets.Value("string"),
        "voice_group": datasets.Value("string"),
        "split": datasets.Value("string"),
        "rate": datasets.Value("float32"),
        "pitch": datasets.Value("float32"),
        "duration": datasets.Value("float32"),
    }
)


@dataclass(frozen=True)
class SynthOptions:
    """Options of `speechpeft data synth`; each field's comment is its --help text."""

    out: Path = field(metadata={"help": "output directory (loadable with datasets.load_from_disk)"})
    utterances: int | None = field(default=None, metadata={"help": "number of utterances to synthesise"})
    hours: float | None = field(default=None, metadata={"help": "or: estimated hours of audio to synthesise"})
    seed: int = field(default=0, metadata={"help": "seed for texts, voices, rates and splits"})
    voices: tuple[str, ...] = field(
        default=(), metadata={"help": "voice ids or groups (pretrain, adapt) to use; default: all"}
    )
    kinds: tuple[str, ...] = field(default=("sentence=0.6", "command=0.3", "keyword=0.1"), metadata={
        "help": "share of each text kind, as kind=weight"})  # fmt: skip
    splits: tuple[str, ...] = field(default=("pretrain=0.7", "adapt=0.2", "test=0.1"), metadata={
        "help": "share of each split, as split=weight"})  # fmt: skip
    test_fraction: float = field(default=0.1, metadata={"help": "fraction of texts held out for the test split"})
    text_file: Path | None = field(
        default=None, metadata={"help": "sentences to speak, one per line (default: fortunes)"}
    )
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1, metadata={"help": "parallel engine processes"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing dataset or partial build in --out"})
    keep_clips: bool = field(default=False, metadata={"help": "keep the per-utterance FLAC files after saving"})

    def __post_init__(self) -> None:
        if (self.utterances is None) == (self.hours is None):
            raise ValueError("give exactly one of --utterances N or --hours H")
        if (self.utterances is not None and self.utterances < 1) or (self.hours is not None and self.hours <= 0):
            raise ValueError("--utterances and --hours must be positive")
        if self.jobs < 1:
            raise ValueError("--jobs must be at least 1")
        if not 0 < self.test_fraction < 1:
            raise ValueError("--test-fraction must be between 0 and 1")
        _parse_weights(self.kinds, plan.KINDS, "--kinds")
        _parse_weights(self.splits, plan.SPLITS, "--splits")
        self.selected_voices()

    def selected_voices(self) -> tuple[Voice, ...]:
        if not self.voices:
            return VOICES
        chosen = [v for v in VOICES if v.id in self.voices or v.group in self.voices]
        unknown = set(self.voices) - {v.id for v in VOICES} - {"pretrain", "adapt"}
        if unknown or not chosen:
            valid = ", ".join(["pretrain", "adapt", *(v.id for v in VOICES)])
            raise ValueError(f"unknown voices {sorted(unknown)} in --voices; valid: {valid}")
        return tuple(chosen)

    def plan_key(self) -> dict:
        """Everything the plan depends on: a partial build resumes only if this matches."""
        keys = ("utterances", "hours", "seed", "voices", "kinds", "splits", "test_fraction", "text_file")
        return json.loads(json.dumps({k: asdict(self)[k] for k in keys}, default=str))


def _parse_weights(items: tuple[str, ...], valid: tuple[str, ...], flag: str) -> dict[str, float]:
    weights = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            weights[name] = float(value)
        except ValueError:
            raise ValueError(f"{flag} expects name=weight, got {item!r}") from None
        if name not in valid or weights[name] < 0:
            raise ValueError(f"{flag}: {item!r} must be one of {valid} with a weight >= 0")
    if sum(weights.values()) <= 0:
        raise ValueError(f"{flag}: at least one weight must be positive")
    return weights


def build_corpus(options: SynthOptions, progress: bool = True) -> datasets.DatasetDict:
    """Synthesise the corpus into `options.out`, resuming a matching partial build found there."""
    started = time.monotonic()
    work = _prepare_output(options)
    utterances = _load_or_make_plan(options, work)
    rendered = render.render_all(utterances, work / "clips", options.jobs, progress)
    corpus = _assemble(utterances, work)
    corpus.save_to_disk(str(options.out))
    summary = {
        "options": options.plan_key(),
        "rendered_now": rendered,
        "seconds": round(time.monotonic() - started, 1),
    }
    write_card(options.out, corpus, summary)
    if not options.keep_clips:
        shutil.rmtree(work)
    return corpus


def _prepare_output(options: SynthOptions) -> Path:
    missing = missing_programs(options.selected_voices())
    if missing:
        raise FileNotFoundError(f"missing programs {missing}: run `make setup` (it installs them with apt-get)")
    out, work = options.out, options.out / ".work"
    finished = (out / "dataset_dict.json").exists()
    if options.overwrite and out.exists():
        shutil.rmtree(out)
    elif finished:
        raise FileExistsError(
            f"{out} already holds a dataset: pass --overwrite to replace it, or choose another --out"
        )
    work.mkdir(parents=True, exist_ok=True)
    return work


def _load_or_make_plan(options: SynthOptions, work: Path) -> list[plan.Utterance]:
    key_path, plan_path = work / "plan-options.json", work / "plan.jsonl"
    if plan_path.exists():
        if json.loads(key_path.read_text()) != options.plan_key():
            raise FileExistsError(
                f"{options.out} holds a partial build made with other options ({key_path}): rerun with those, "
                "or pass --overwrite to start again"
            )
        return plan.read_plan(plan_path)
    sentences = text.read_text_file(options.text_file) if options.text_file else _fortunes()
    pools = plan.build_pools(sentences, options.test_fraction)
    kinds = _parse_weights(options.kinds, plan.KINDS, "--kinds")
    splits = _parse_weights(options.splits, plan.SPLITS, "--splits")
    stream = plan.plan_utterances(pools, options.selected_voices(), kinds, splits, options.seed)
    utterances = plan.take(stream, options.utterances, options.hours)
    plan.write_plan(plan_path, utterances)
    key_path.write_text(json.dumps(options.plan_key()))
    return utterances


def _fortunes() -> list[str]:
    return text.speakable_sentences(text.fortune_entries(), text.load_dictionary())


def _assemble(utterances: list[plan.Utterance], work: Path) -> datasets.DatasetDict:
    splits = sorted({u.split for u in utterances}, key=plan.SPLITS.index)
    return datasets.DatasetDict({s: _split_dataset([u for u in utterances if u.split == s], work) for s in splits})


def _split_dataset(utterances: list[plan.Utterance], work: Path) -> datasets.Dataset:
    kwargs = {"utterances": utterances, "clips": work / "clips"}
    return datasets.Dataset.from_generator(_rows, features=FEATURES, cache_dir=str(work / "cache"), gen_kwargs=kwargs)


def _rows(utterances: list[plan.Utterance], clips: Path) -> Iterator[dict]:
    for utterance in utterances:
        path = render.clip_path(clips, utterance)
        duration = soundfile.info(str(path)).duration
        audio = {"bytes": path.read_bytes(), "path": path.name}
        yield {**asdict(utterance), "audio": audio, "duration": duration}
