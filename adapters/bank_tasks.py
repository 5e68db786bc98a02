"""The bank's three calls, run with the tasks' own prediction code (`tasks/`) under a per-sample route, so a
sample's output is what its adapter gives in `speechpeft eval`.

Samples are split only where one forward cannot hold them: by backbone, by label map for decoder classifiers
(each label set is its own scoring pass), and by prefix on families whose prefixes go through hooks rather
than the attention interface (SpeechT5). Text-to-speech speaks one utterance at a time, as `tasks.tts` does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from speechpeft.adapters import routing
from speechpeft.audio_input import fits_window, join_pieces, piece_samples, split_clips
from speechpeft.errors import InputError

if TYPE_CHECKING:
    from speechpeft.adapters.bank import AdapterBank, Resident
    from speechpeft.adapters.bank_backbone import ResidentBackbone

Rows = list[tuple["ResidentBackbone", "Resident | None"]]
MAX_FORWARD_SAMPLES = 16  # clips (or pieces of long clips) per forward pass: bounds memory for hour-long audio


def route_of(residents: Iterable[Resident | None]) -> routing.Route:
    return routing.Route(None if r is None else r.weights for r in residents)


def transcribe(bank: AdapterBank, rows: Rows, clips: list[np.ndarray], num_beams: int) -> list[str]:
    """Each clip's transcript (`tasks.asr`'s `predict`: greedy, or beam search with `num_beams` > 1); a clip longer
    than its backbone's window is transcribed in pieces (`audio_input.split_clips`), their transcripts joined."""
    if not isinstance(num_beams, int) or num_beams < 1:
        raise InputError(f"num_beams must be a positive integer, not {num_beams!r}")
    windows = [piece_samples(_extractor(backbone), bank.sample_rate) for backbone, _ in rows]
    pieces, owners = split_clips(clips, windows, bank.sample_rate)

    def run(backbone: ResidentBackbone, members: list[int]) -> list[str]:
        task = _task(backbone, "asr", lambda: _build(backbone, "asr", None))
        task.num_beams = num_beams if num_beams > 1 else None
        batch = task.audio_batch([pieces[i] for i in members])
        return task.predict(backbone.model, batch).outputs

    texts = _run_groups([rows[i] for i in owners], run, split=_prefix_groups)
    return join_pieces(texts, owners, len(clips))


def classify(bank: AdapterBank, rows: Rows, clips: list[np.ndarray]) -> list[dict]:
    """Each clip's label, confidence and per-label probabilities: a pooled head's softmax over the adapter's own
    labels, or a decoder classifier's softmax over its label scores (`tasks.classify_decoder`)."""
    from speechpeft.tasks.features import predict_in_exact_groups, window_inputs

    for index, (clip, (backbone, _)) in enumerate(zip(clips, rows, strict=True)):
        window = piece_samples(_extractor(backbone), bank.sample_rate)
        fits_window(clip, window, bank.sample_rate, "audio" if len(clips) == 1 else f"audio {index}", "classify")

    def run(backbone: ResidentBackbone, members: list[int]) -> list[dict]:
        labels = rows[members[0]][1].info.labels
        task = _task(backbone, labels, lambda: _build(backbone, rows[members[0]][1].info.task, labels))
        audio = [clips[i] for i in members]
        batch = {**window_inputs(backbone.frozen, task.extractor, audio), "audio": audio}
        if backbone.key.kind == "classify":  # pooled heads: logits padded to the widest label map
            score = lambda inputs: list(backbone.model(**inputs).logits.float().cpu())  # noqa: E731
        else:
            score = lambda inputs: list(task.label_log_likelihoods(backbone.model, inputs).float().cpu())  # noqa: E731
        scores, _ = predict_in_exact_groups(backbone.frozen, task.extractor, batch, score)
        return [_labelled(row, rows[i][1].info.labels) for row, i in zip(scores, members, strict=True)]

    return _run_groups(rows, run, split=_label_groups(rows))


def synthesize(bank: AdapterBank, rows: Rows, texts: Sequence[str]) -> list[np.ndarray]:
    """Each text spoken by its adapter (the TTS task's `speak_text`: spelled or phonemised as its backbone reads
    text, in pieces it holds, joined), float32 at the extractor's rate (16 kHz)."""

    def run(backbone: ResidentBackbone, members: list[int]) -> list[np.ndarray]:
        task = _task(backbone, "tts", lambda: _build(backbone, "tts", None))
        spoken = []
        for i in members:
            what = "text" if len(texts) == 1 else f"text {i}"
            with routing.rows([members.index(i)]):
                spoken.append(task.speak_text(backbone.model, texts[i], what, backbone.key.name))
        return spoken

    return _run_groups(rows, run, split=_prefix_groups)


def _run_groups(rows: Rows, run: Callable, split: Callable) -> list[Any]:
    """`run(backbone, members)` for each forward-compatible group of samples (at most MAX_FORWARD_SAMPLES), under
    the group's route, with the backbone held; the outputs back in the samples' order."""
    outputs: list[Any] = [None] * len(rows)
    for backbone, members in _by_backbone(rows):
        for group in split([rows[i][1] for i in members]):
            for start in range(0, len(group), MAX_FORWARD_SAMPLES):
                chosen = [members[g] for g in group[start : start + MAX_FORWARD_SAMPLES]]
                route = route_of(rows[i][1] for i in chosen)
                with backbone.lock, torch.no_grad(), backbone.frozen.autocast(), routing.routed(route):
                    results = run(backbone, chosen)
                for i, result in zip(chosen, results, strict=True):
                    outputs[i] = result
    return outputs


def _by_backbone(rows: Rows) -> list[tuple[ResidentBackbone, list[int]]]:
    groups: dict[int, tuple[ResidentBackbone, list[int]]] = {}
    for index, (backbone, _) in enumerate(rows):
        groups.setdefault(id(backbone), (backbone, []))[1].append(index)
    return list(groups.values())


def _prefix_groups(residents: list[Resident | None]) -> list[list[int]]:
    """All samples together, unless the backbone takes one prefix per batch: then one group per prefix (and one
    for the samples without)."""
    backbone = next((r.backbone for r in residents if r is not None), None)
    if backbone is None or backbone.mixes_prefixes():
        return [list(range(len(residents)))]
    return _grouped(residents, lambda r: id(r) if r is not None and r.weights.prefix else None)


def _label_groups(rows: Rows) -> Callable[[list[Resident | None]], list[list[int]]]:
    """Pooled heads mix any label maps (their logits are padded); decoder classifiers score one label set per pass."""

    def split(residents: list[Resident | None]) -> list[list[int]]:
        if residents[0].backbone.key.kind == "classify":
            return [list(range(len(residents)))]
        return _grouped(residents, lambda r: r.info.labels)

    return split


def _grouped(items: list, key: Callable) -> list[list[int]]:
    groups: dict[Any, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(key(item), []).append(index)
    return list(groups.values())


def _extractor(backbone: ResidentBackbone) -> Any:
    processor = backbone.frozen.processor
    return getattr(processor, "feature_extractor", processor)


def _task(backbone: ResidentBackbone, key: Any, build: Callable[[], Any]) -> Any:
    if key not in backbone.tasks:
        backbone.tasks[key] = build()
    return backbone.tasks[key]


def _build(backbone: ResidentBackbone, task: str, labels: Sequence[str] | None) -> Any:
    from speechpeft.tasks.catalog import TASKS

    return TASKS.get(task).build(backbone.frozen, list(labels) if labels else None)


def _labelled(scores: torch.Tensor, labels: Sequence[str]) -> dict:
    probabilities = scores[: len(labels)].softmax(-1)
    best = int(probabilities.argmax())
    return {"label": labels[best], "confidence": round(float(probabilities[best]), 6),
            "scores": {label: round(float(p), 6) for label, p in zip(labels, probabilities, strict=True)}}  # fmt: skip
