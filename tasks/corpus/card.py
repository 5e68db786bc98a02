"""The dataset card written next to a synthesised corpus: what is in it and how to make it again."""

from __future__ import annotations

import json
import platform
import subprocess
from collections import Counter
from pathlib import Path

import datasets

from speechpeft import __version__
from speechpeft.tasks.corpus.voices import VOICES

ENGINE_VERSION_ARGS = {
    "espeak-ng": ["espeak-ng", "--version"],
    "flite": ["flite", "--version"],
    "sox": ["sox", "--version"],
}


def engine_versions() -> dict[str, str]:
    versions = {}
    for name, argv in ENGINE_VERSION_ARGS.items():
        try:
            result = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            versions[name] = (result.stdout or result.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            versions[name] = "not installed"
    return versions


def write_card(out: Path, corpus: datasets.DatasetDict, summary: dict) -> None:
    """Write README.md (the card) and synth.json (the same facts, for programs)."""
    stats = {split: _split_stats(ds) for split, ds in corpus.items()}
    facts = {**summary, "splits": stats, "engines": engine_versions(), "speechpeft": __version__,
             "datasets": datasets.__version__, "machine": f"{platform.machine()} {platform.system()}"}  # fmt: skip
    (out / "synth.json").write_text(json.dumps(facts, indent=2) + "\n")
    (out / "README.md").write_text(_card_text(facts))


def _split_stats(ds: datasets.Dataset) -> dict:
    columns = ds.select_columns(["voice", "engine", "kind", "intent", "duration"]).to_dict()
    return {
        "utterances": len(ds),
        "hours": round(sum(columns["duration"]) / 3600, 3),
        "voices": dict(sorted(Counter(columns["voice"]).items())),
        "engines": dict(sorted(Counter(columns["engine"]).items())),
        "kinds": dict(sorted(Counter(columns["kind"]).items())),
        "intents": len({i for i in columns["intent"] if i}),
    }


def _card_text(facts: dict) -> str:
    options = facts["options"]
    size = f"--utterances {options['utterances']}" if options["utterances"] else f"--hours {options['hours']}"
    lines = [
        "---", "language: [en]", "pretty_name: speechpeft synthetic speech corpus",
        "task_categories: [automatic-speech-recognition, text-to-speech, audio-classification]", "---", "",
        "# speechpeft synthetic speech corpus", "",
        "English sentences (Debian `fortunes`), templated spoken commands with intent and slot labels, and "
        "ten keywords, spoken by Debian's speech engines and stored as 16 kHz mono FLAC.", "",
        f"Made by speechpeft {facts['speechpeft']}: `speechpeft data synth {size} --seed {options['seed']}` "
        f"in {facts['seconds']} s on {facts['machine']}.", "",
        "## Splits", "",
        "Splits are by voice: *pretrain* uses only the pretraining voices, *adapt* only the adaptation voices "
        "(never used in pretraining), and *test* uses both on sentences and commands that neither of the others "
        "contains (the ten keywords cannot be held out; the `voice_group` column says which group a test speaker "
        "belongs to).", "",
        "| split | utterances | hours | voices | engines | sentences / commands / keywords |",
        "|---|---|---|---|---|---|",
    ]  # fmt: skip
    for split, s in facts["splits"].items():
        kinds = " / ".join(str(s["kinds"].get(k, 0)) for k in ("sentence", "command", "keyword"))
        lines.append(
            f"| {split} | {s['utterances']} | {s['hours']} | {len(s['voices'])} | {len(s['engines'])} | {kinds} |"
        )
    lines += ["", "## Voices", "", "| voice | engine | group | utterances |", "|---|---|---|---|"]
    counts = Counter()
    for s in facts["splits"].values():
        counts.update(s["voices"])
    lines += [f"| {v.id} | {v.engine} | {v.group} | {counts.get(v.id, 0)} |" for v in VOICES if counts.get(v.id)]
    lines += ["", "## Columns", "", COLUMNS_DOC, "", "## Engines", ""]
    lines += [f"- {name}: {version}" for name, version in facts["engines"].items()]
    return "\n".join(lines) + "\n"


COLUMNS_DOC = """\
`audio` (16 kHz mono), `text` (transcript: lowercase words and apostrophes), `kind` (sentence, command,
keyword), `intent` and `slots` (JSON) for commands, `keyword` for keywords, `voice`, `engine`,
`voice_group` (pretrain or adapt), `split`, `rate` and `pitch` (multipliers of the engine's defaults),
`duration` (seconds), `id`."""
