"""The model card `speechpeft publish` uploads: Hub metadata (YAML, with `model-index` results the Hub renders)
and a body with the adapter's measured results, a usage snippet that runs as written, its training and limits.

Metadata follows the Hub's model card spec (https://huggingface.co/docs/hub/model-cards) through
`huggingface_hub.ModelCardData`; results come from `hub_results.gather` and keep the scale the evaluation
reports (WER 0.12 is 12 %). The body's sections are in `hub_card_body`.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from speechpeft.backbones.builtin import is_builtin
from speechpeft.hub_card_body import limitations, results, training
from speechpeft.hub_results import METRIC_NAMES, Evaluation, card_metrics, dataset_label, gather
from speechpeft.hub_usage import PEFT_METHODS, usage

PIPELINE_TAGS = {"asr": "automatic-speech-recognition", "tts": "text-to-speech", "classify": "audio-classification"}
TASK_WORDS = {"asr": "speech recognition", "tts": "text-to-speech", "classify": "spoken classification"}
METHOD_NAMES = {"lora": "LoRA", "adalora": "AdaLoRA", "prefix": "prefix-tuning", "bottleneck": "bottleneck",
                "frozen": "linear-probe (trained head only)"}  # fmt: skip
METHOD_TAGS = {"lora": "lora", "adalora": "adalora", "prefix": "prefix-tuning", "bottleneck": "adapter",
               "frozen": "linear-probe"}  # fmt: skip
# licenses of the backbones' own Hub repositories; an adapter is a derivative of its backbone's weights
BACKBONE_LICENSES = {"whisper": "apache-2.0", "speecht5": "mit"}
LANGUAGE = "en"  # every speechpeft corpus and task is English


def build_card(adapter: Path, record: dict, repo_id: str, task_kind: str, *, license: str | None = None,
               leaderboard: dict | None = None) -> ModelCard:  # fmt: skip
    """The model card for the adapter at `adapter` (its `speechpeft.json` `record`) published as `repo_id`.

    `leaderboard` is a published leaderboard's `published.json` (repo_id, url), linked from the card.
    """
    evaluations = gather(adapter, record)
    data = ModelCardData(
        base_model=None if is_builtin(record["backbone"]) else record["backbone"],
        library_name="peft" if record["method"] in PEFT_METHODS else "speechpeft", language=[LANGUAGE],
        pipeline_tag=PIPELINE_TAGS[task_kind], license=license or BACKBONE_LICENSES.get(record["family"], "other"),
        tags=_tags(record), datasets=_hub_datasets(evaluations) or None, model_name=repo_id,
        eval_results=_eval_results(record["task"], task_kind, evaluations) or None,
    )  # fmt: skip
    body = "\n\n".join([
        f"# {repo_id.split('/')[-1]}", _summary(record, task_kind),
        results(record, task_kind, evaluations, leaderboard), usage(record, repo_id, task_kind), training(record),
        limitations(record, evaluations),
    ])  # fmt: skip
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}\n")


def method_name(record: dict) -> str:
    """The method as a card names it: LoRA, AdaLoRA, prefix-tuning, Houlsby/Pfeiffer bottleneck, linear-probe."""
    if record["method"] == "bottleneck":
        return f"{record.get('options', {}).get('bottleneck_style', 'pfeiffer').capitalize()} bottleneck"
    return METHOD_NAMES.get(record["method"], record["method"])


def _tags(record: dict) -> list[str]:
    style = record.get("options", {}).get("bottleneck_style") if record["method"] == "bottleneck" else None
    tags = ["speechpeft", METHOD_TAGS.get(record["method"], record["method"]), style, record["task"],
            record["family"], "peft" if record["method"] in PEFT_METHODS else None]  # fmt: skip
    return list(dict.fromkeys(t for t in tags if t))


def _hub_datasets(evaluations: list[Evaluation]) -> list[str]:
    return list(dict.fromkeys(hub for e in evaluations if (hub := dataset_label(e.dataset)[1])))


def _eval_results(task: str, task_kind: str, evaluations: list[Evaluation]) -> list[EvalResult]:
    """One `model-index` entry per (evaluation, reported metric); the utterance count rides in the dataset's args."""
    entries = []
    for evaluation in evaluations:
        name, hub_id = dataset_label(evaluation.dataset)
        for metric in card_metrics(task, evaluation.metrics):
            entries.append(EvalResult(
                task_type=PIPELINE_TAGS[task_kind], dataset_type=hub_id or name, dataset_name=name,
                dataset_split=evaluation.split, dataset_args={"utterances": evaluation.utterances},
                metric_type=metric, metric_name=METRIC_NAMES.get(metric, metric),
                metric_value=float(evaluation.metrics[metric]),
            ))  # fmt: skip
    return entries


def _summary(record: dict, task_kind: str) -> str:
    name, size = method_name(record), record.get("trainable_parameters") or 0
    article = "An" if name[0].lower() in "aeiou" else "A"
    labels = f" over {len(record['labels'])} labels" if record.get("labels") else ""
    return (f"{article} **{name}** adapter for {TASK_WORDS[task_kind]} (`{record['task']}`{labels}) on "
            f"{_backbone_link(record['backbone'])}, trained with speechpeft: {size:,} trainable parameters. The "
            "backbone stays frozen and is loaded separately.")  # fmt: skip


def _backbone_link(backbone: str) -> str:
    if is_builtin(backbone):
        return f"`{backbone}` (a small backbone shipped inside speechpeft)"
    return f"[`{backbone}`](https://huggingface.co/{backbone})"
