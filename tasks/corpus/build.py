"""`build_corpus`: plan, synthesise, and save a Hugging Face `DatasetDict` with a dataset card."""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import datasets
import soundfile

from speechpeft.errors import MissingInputError, OutputExistsError
from speechpeft.tasks.corpus import plan, render, text
from speechpeft.tasks.corpus.card import write_card
from speechpeft.tasks.corpus.options import SynthOptions, parse_weights
from speechpeft.tasks.corpus.voices import missing_programs

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


def build_corpus(options: SynthOptions, progress: bool = True) -> datasets.DatasetDict:
    """Synthesise the corpus into `options.out`, resuming a matching partial build found there; a finished one built
    with the same options (its synth.json says) is loaded as it is, saying so."""
    if not options.overwrite and _built_alike(options):
        print(f"{options.out} already holds this corpus (its synth.json records the same options): kept as it is",
              file=sys.stderr)  # fmt: skip
        return datasets.load_from_disk(str(options.out))
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


def _built_alike(options: SynthOptions) -> bool:
    """Whether `options.out` holds a finished corpus whose synth.json records these options."""
    facts = options.out / "synth.json"
    if not (options.out / "dataset_dict.json").exists() or not facts.exists():
        return False
    return json.loads(facts.read_text()).get("options") == json.loads(json.dumps(options.plan_key()))


def _prepare_output(options: SynthOptions) -> Path:
    missing = missing_programs(options.selected_voices())
    if missing:
        raise MissingInputError(f"missing programs {missing}: run `make setup` (it installs them with apt-get)")
    out, work = options.out, options.out / ".work"
    finished = (out / "dataset_dict.json").exists()
    ours = finished or work.exists() or not out.exists() or not any(out.iterdir())
    if not ours:
        raise OutputExistsError(f"{out} is not empty and holds no speechpeft corpus: choose an empty or new --out")
    if options.overwrite and out.exists():
        shutil.rmtree(out)
    elif finished:
        raise OutputExistsError(
            f"{out} already holds a dataset built with other options (see its synth.json): pass --overwrite to "
            "replace it, or choose another --out"
        )
    work.mkdir(parents=True, exist_ok=True)
    return work


def _load_or_make_plan(options: SynthOptions, work: Path) -> list[plan.Utterance]:
    key_path, plan_path = work / "plan-options.json", work / "plan.jsonl"
    if plan_path.exists():
        if json.loads(key_path.read_text()) != options.plan_key():
            raise OutputExistsError(
                f"{options.out} holds a partial build made with other options ({key_path}): rerun with those, "
                "or pass --overwrite to start again"
            )
        return plan.read_plan(plan_path)
    sentences = text.read_text_file(options.text_file) if options.text_file else _fortunes()
    pools = plan.build_pools(sentences, options.test_fraction)
    kinds = parse_weights(options.kinds, plan.KINDS, "--kinds")
    splits = parse_weights(options.splits, plan.SPLITS, "--splits")
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
