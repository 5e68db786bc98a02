"""The model card's body sections: results (with their scale, the frozen baseline and scores per voice), training
and limitations. Numbers come only from `hub_results.Evaluation`s and the adapter's record."""

from __future__ import annotations

import json
from pathlib import Path

from speechpeft.hub_results import METRIC_NAMES, Evaluation, card_metrics, dataset_label, headline_metric

SCALE_NOTES = {
    "asr": "WER and CER are fractions (0.12 = 12 %), after the English normaliser speechpeft pins.",
    "tts": "DNSMOS is Microsoft's neural predictor of listener ratings (1-5, higher is better). CER is an ASR "
    "listener's transcript of the synthesised speech against the input text (a fraction; lower is more "
    "intelligible). MCD (dB, lower is better) compares it with the corpus recording of the same text.",
    "classify": "Accuracy and macro-F1 are fractions of the test utterances (macro-F1 averages the labels).",
}
# the options that shape each method; the rest of `speechpeft train`'s options apply to every method
METHOD_OPTIONS = {"lora": ("rank",), "adalora": ("rank",), "prefix": ("prefix_length", "prefix_encoder"),
                  "bottleneck": ("bottleneck_style", "reduction_factor"), "frozen": ()}  # fmt: skip
METHOD_SPECIFIC = {name for names in METHOD_OPTIONS.values() for name in names} | {"classifier"}
LOCAL = ("out", "name", "store", "dataset")


def results(record: dict, task_kind: str, evaluations: list[Evaluation], leaderboard: dict | None) -> str:
    lines = ["## Results", ""]
    if evaluations:
        lines += [*_table(record, evaluations), "", SCALE_NOTES[task_kind]]
    else:
        lines.append("Not evaluated: run `speechpeft eval --adapter ADAPTER --split test` first.")
    if record.get("labels"):
        lines += ["", f"Labels ({len(record['labels'])}): {', '.join(f'`{label}`' for label in record['labels'])}."]
    if evaluations:
        lines += _baseline(record, task_kind, evaluations[0]) + _by_voice(record, evaluations[0])
    if leaderboard:
        lines += ["", f"Compared with the other methods on the same data: the leaderboard "
                  f"[{leaderboard['repo_id']}]({leaderboard['url']}) (a Hub dataset)."]  # fmt: skip
    return "\n".join(lines)


def _table(record: dict, evaluations: list[Evaluation]) -> list[str]:
    lines = ["| dataset | split | utterances | metric | value | 95 % interval |", "|---|---|---|---|---|---|"]
    for e in evaluations:
        split = f"{e.split} (first {e.utterances} only)" if e.partial else e.split
        for metric in card_metrics(record["task"], e.metrics):
            low, high = e.intervals.get(metric, (None, None))
            interval = f"{low:.4f} to {high:.4f}" if low is not None else "-"
            lines.append(f"| {dataset_label(e.dataset)[0]} | {split} | {e.utterances} | "
                         f"{METRIC_NAMES.get(metric, metric)} | {e.metrics[metric]:.4f} | {interval} |")  # fmt: skip
    return lines


def _baseline(record: dict, task_kind: str, evaluation: Evaluation) -> list[str]:
    metric = headline_metric(record["task"])
    if evaluation.baseline is None or metric not in evaluation.metrics:
        return []
    pooled = task_kind == "classify" and record.get("options", {}).get("classifier", "pooled") == "pooled"
    what = "a trained head alone" if pooled else "no adapter"
    name, value = METRIC_NAMES[metric], evaluation.metrics[metric]
    return [
        "",
        f"The frozen backbone ({what}, the leaderboard's `frozen` cell) scores {name} "
        f"{evaluation.baseline:.4f} on the same utterances; this adapter {value:.4f}.",
    ]


def _by_voice(record: dict, evaluation: Evaluation) -> list[str]:
    if len(evaluation.groups) < 2:
        return []
    name = METRIC_NAMES.get(headline_metric(record["task"]), "score")
    lines = ["", f"{name} by voice:", "", "| voice | utterances | value | 95 % interval |", "|---|---|---|---|"]
    for voice, group in evaluation.groups.items():
        interval = f"{group['low']:.4f} to {group['high']:.4f}" if group.get("low") is not None else "-"
        lines.append(f"| {voice} | {group.get('utterances')} | {group['value']:.4f} | {interval} |")
    return lines


def training(record: dict) -> str:
    data, options = record.get("data", {}), record.get("options", {})
    return "\n".join([
        "## Training", "",
        f"- data: `{Path(data.get('dataset') or '?').name}`, split `{data.get('split')}`, "
        f"{data.get('train_utterances')} utterances ({data.get('validation_utterances')} held out for validation)",
        f"- best step {record.get('best_step')} of {options.get('steps')}, {record.get('train_seconds')} s, "
        f"precision {record.get('precision')}",
        f"- backbone weights: `{record.get('backbone_fingerprint')}`",
        f"- versions: {', '.join(f'{k} {v}' for k, v in record.get('versions', {}).items())}",
        "", "`speechpeft train` options:", "", "```json", json.dumps(_relevant(record), indent=1), "```",
    ])  # fmt: skip


def _relevant(record: dict) -> dict:
    """The training options that shaped this adapter: the method's own, the classifier for classification."""
    own = set(METHOD_OPTIONS.get(record["method"], ())) | ({"classifier"} if record.get("labels") else set())
    return {k: v for k, v in record.get("options", {}).items()
            if k not in LOCAL and v is not None and (k not in METHOD_SPECIFIC or k in own)}  # fmt: skip


def limitations(record: dict, evaluations: list[Evaluation]) -> str:
    lines = ["## Limitations", ""]
    counts = sorted({e.utterances for e in evaluations if e.utterances})
    if counts:
        lines.append(f"- Scored on {' and '.join(map(str, counts))} utterances: small test sets give wide intervals.")
    if evaluations and all("validation" in e.split for e in evaluations):
        lines.append("- These scores are on the slice held out of training to pick the checkpoint, not on an "
                     "independent test split: expect them to be optimistic.")  # fmt: skip
    lines += _data_limits(record)
    window = record.get("options", {}).get("window_seconds")
    if window:
        lines.append(f"- Trained and scored with a {window} s Whisper encoder window (speechpeft's "
                     "`--window-seconds`); plain transformers runs the full 30 s window.")  # fmt: skip
    cer = next((e.metrics.get("cer") for e in evaluations if record["task"] == "tts"), None)
    if cer is not None and cer > 0.3:
        lines.append(f"- The speech is hard to understand: the listener's CER is {cer:.2f}.")
    lines.append(f"- Only meaningful on `{record['backbone']}`'s own weights; other weights of the same architecture "
                 "load with a warning.")  # fmt: skip
    return "\n".join(lines)


def _data_limits(record: dict) -> list[str]:
    dataset = record.get("data", {}).get("dataset") or ""
    if not dataset or dataset_label(dataset)[1] is not None:
        return []
    lines = [f"- Trained on `{Path(dataset).name}`, a local corpus: expect lower scores on other voices, accents and "
             "recording conditions."]  # fmt: skip
    if (Path(dataset) / "synth.json").exists():
        lines.append("- That corpus is synthetic (speechpeft speaks its text with espeak-ng, flite and festival "
                     "voices) and split by voice: the test voices are not heard in training.")  # fmt: skip
    return lines
