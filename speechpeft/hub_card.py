"""The model card `speechpeft publish` uploads: Hub metadata (YAML, with `model-index` results the Hub renders)
and a body with the adapter's measured results, a usage snippet that runs as written, its training and limits.

Metadata follows the Hub's model card spec (https://huggingface.co/docs/hub/model-cards) through
`huggingface_hub.ModelCardData`; results come from `hub_results.gather` and keep the scale the evaluation
reports (WER 0.12 is 12 %).
"""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from speechpeft.hub_results import METRIC_NAMES, Evaluation, card_metrics, dataset_label, gather
from speechpeft.hub_usage import PEFT_METHODS, usage

PIPELINE_TAGS = {"asr": "automatic-speech-recognition", "tts": "text-to-speech", "classify": "audio-classification"}
METHOD_NAMES = {"lora": "LoRA", "adalora": "AdaLoRA", "prefix": "prefix-tuning", "bottleneck": "bottleneck-adapter",
                "frozen": "linear-probe (trained head only)", "full": "full fine-tune"}  # fmt: skip
METHOD_TAGS = {"lora": "lora", "adalora": "adalora", "prefix": "prefix-tuning", "bottleneck": "adapter",
               "frozen": "linear-probe", "full": "full-fine-tune"}  # fmt: skip
# licenses of the backbones' own Hub repositories; an adapter is a derivative of its backbone's weights
BACKBONE_LICENSES = {"whisper": "apache-2.0", "speecht5": "mit"}


def build_card(adapter: Path, record: dict, repo_id: str, task_kind: str, *, license: str | None = None,
               leaderboard: dict | None = None) -> ModelCard:  # fmt: skip
    """The model card for the adapter at `adapter` (its `speechpeft.json` `record`) published as `repo_id`.

    `leaderboard` is a published leaderboard's `published.json` (repo_id, url), linked from the card.
    """
    evaluations = gather(adapter, record)
    data = ModelCardData(
        base_model=None if is_builtin(record["backbone"]) else record["backbone"],
        library_name="peft" if record["method"] in PEFT_METHODS else "speechpeft",
        pipeline_tag=PIPELINE_TAGS[task_kind], license=license or BACKBONE_LICENSES.get(record["family"], "other"),
        tags=_tags(record, task_kind), datasets=_hub_datasets(evaluations) or None, model_name=repo_id,
        eval_results=_eval_results(record["task"], task_kind, evaluations) or None,
    )  # fmt: skip
    body = "\n\n".join(
        [f"# {repo_id.split('/')[-1]}", _summary(record, task_kind), _results(record, evaluations, leaderboard),
         usage(record, repo_id, task_kind), _training(record), _limitations(record, evaluations)]
    )  # fmt: skip
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}\n")


def _tags(record: dict, task_kind: str) -> list[str]:
    tags = ["speechpeft", METHOD_TAGS.get(record["method"], record["method"]), record["task"], record["family"]]
    return list(dict.fromkeys([*tags, "peft"] if record["method"] in PEFT_METHODS else tags))


def _hub_datasets(evaluations: list[Evaluation]) -> list[str]:
    return list(dict.fromkeys(hub for e in evaluations if (hub := dataset_label(e.dataset)[1])))


def _eval_results(task: str, task_kind: str, evaluations: list[Evaluation]) -> list[EvalResult]:
    """One `model-index` entry per (evaluation, reported metric); the utterance count rides in the dataset's args."""
    results = []
    for evaluation in evaluations:
        name, hub_id = dataset_label(evaluation.dataset)
        for metric in card_metrics(task, evaluation.metrics):
            results.append(EvalResult(
                task_type=PIPELINE_TAGS[task_kind], dataset_type=hub_id or name, dataset_name=name,
                dataset_split=evaluation.split, dataset_args={"utterances": evaluation.utterances},
                metric_type=metric, metric_name=METRIC_NAMES.get(metric, metric),
                metric_value=float(evaluation.metrics[metric]),
            ))  # fmt: skip
    return results


def _summary(record: dict, task_kind: str) -> str:
    size = record.get("trainable_parameters")
    task = {"asr": "speech recognition", "tts": "text-to-speech", "classify": "spoken classification"}[task_kind]
    labels = f" over {len(record['labels'])} labels" if record.get("labels") else ""
    return (
        f"A **{METHOD_NAMES.get(record['method'], record['method'])}** adapter for {task} "
        f"(`{record['task']}`{labels}) on {_backbone_link(record['backbone'])}, trained with "
        f"speechpeft: {size:,} trainable parameters; the backbone "
        "stays frozen and is loaded separately."
        if size is not None
        else f"A **{record['method']}** adapter for {task} on `{record['backbone']}`, trained with speechpeft."
    )


def _backbone_link(backbone: str) -> str:
    if is_builtin(backbone):
        return f"`{backbone}` (a small backbone shipped inside speechpeft)"
    return f"[`{backbone}`](https://huggingface.co/{backbone})"


def is_builtin(backbone: str) -> bool:
    from speechpeft.backbones.builtin import BUILTIN_BACKBONES

    return backbone.lower() in BUILTIN_BACKBONES


def _results(record: dict, evaluations: list[Evaluation], leaderboard: dict | None) -> str:
    lines = ["## Results", ""]
    if not evaluations:
        lines.append("Not evaluated: run `speechpeft eval --adapter ADAPTER --split test` before publishing.")
    else:
        lines += ["| dataset | split | utterances | metric | value | 95 % interval |", "|---|---|---|---|---|---|"]
        for e in evaluations:
            for metric in card_metrics(record["task"], e.metrics):
                low, high = e.intervals.get(metric, (None, None))
                interval = f"{low:.4f} to {high:.4f}" if low is not None else "-"
                name, value = METRIC_NAMES.get(metric, metric), e.metrics[metric]
                lines.append(f"| {dataset_label(e.dataset)[0]} | {e.split} | {e.utterances} | {name} | {value:.4f} "
                             f"| {interval} |")  # fmt: skip
        if {"wer", "cer"} & {m for e in evaluations for m in e.metrics}:
            lines += ["", "WER and CER are fractions (0.12 = 12 %), after the English normaliser speechpeft pins."]
    if leaderboard:
        lines += ["", f"Compared with the other methods on the same data: the leaderboard "
                  f"[{leaderboard['repo_id']}]({leaderboard['url']}) (a Hub dataset)."]  # fmt: skip
    return "\n".join(lines)


def _training(record: dict) -> str:
    data, options = record.get("data", {}), record.get("options", {})
    shown = {k: v for k, v in options.items() if k not in ("out", "name", "store", "dataset") and v is not None}
    return "\n".join([
        "## Training", "",
        f"- data: `{data.get('dataset')}`, split `{data.get('split')}`, {data.get('train_utterances')} utterances "
        f"({data.get('validation_utterances')} held out for validation)",
        f"- best step {record.get('best_step')} of {options.get('steps')}, {record.get('train_seconds')} s, "
        f"precision {record.get('precision')}",
        f"- backbone weights: `{record.get('backbone_fingerprint')}`",
        f"- versions: {', '.join(f'{k} {v}' for k, v in record.get('versions', {}).items())}",
        "", "Full configuration:", "", "```json", json.dumps(shown, indent=1), "```",
    ])  # fmt: skip


def _limitations(record: dict, evaluations: list[Evaluation]) -> str:
    lines = ["## Limitations", ""]
    counts = [e.utterances for e in evaluations if e.utterances]
    if counts:
        scored = f"{min(counts)} to {max(counts)}" if min(counts) != max(counts) else str(min(counts))
        lines.append(f"- Scored on {scored} utterances: small test sets give wide intervals.")
    dataset = record.get("data", {}).get("dataset") or ""
    if dataset and dataset_label(dataset)[1] is None:
        lines.append(f"- Trained on `{Path(dataset).name}`, a local corpus (speechpeft synthesises its corpora with "
                     "speech engines): expect lower scores on other voices, accents and recordings.")  # fmt: skip
    window = record.get("options", {}).get("window_seconds")
    if window:
        lines.append(f"- Trained and scored with a {window} s Whisper encoder window (speechpeft's "
                     "`--window-seconds`); plain transformers runs the full 30 s window.")  # fmt: skip
    if record["task"] == "tts":
        lines.append("- The MOS proxy is DNSMOS, a neural predictor of listener ratings, not a listening test.")
    lines.append(f"- Only meaningful on `{record['backbone']}`'s own weights; other weights of the same architecture "
                 "load with a warning.")  # fmt: skip
    return "\n".join(lines)
