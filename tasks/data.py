"""Speech datasets for every task: the synthetic corpus, a Hub-format folder of audio files, or a Hub id.

A task names the roles it needs ("audio", "text", "intent", ...); `select_columns` finds each role among
the column names that common Hub datasets use (LibriSpeech `text`, Common Voice `sentence`, FLEURS
`transcription`, ...) and renames it to the role; `at_sample_rate` casts the audio to the backbone's
sampling rate, so datasets' decoder resamples on the fly. `task_rows` and `usable_rows` leave out the rows a
task cannot use whole and count them by reason (`speechpeft.tasks.rows`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import datasets

from speechpeft.errors import InputError, MissingInputError, UserError
from speechpeft.tasks.rows import LeftOut, combine, empty, sift, warn_left_out

if TYPE_CHECKING:
    from speechpeft.tasks.base import Task

# Candidate source columns for each role, first match wins.
ROLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "audio": ("audio", "speech", "file"),
    "text": ("text", "sentence", "transcription", "raw_transcription", "normalized_text", "transcript"),
    "intent": ("intent", "intent_class", "label"),
    "keyword": ("keyword", "label", "word"),
    "speaker": ("voice", "speaker_id", "speaker", "client_id"),
}


class DatasetColumnError(InputError):
    """A dataset lacks a column a task needs; the message lists what was looked for."""


def load_speech_dataset(source: str | os.PathLike) -> datasets.DatasetDict:
    """A DatasetDict from a `save_to_disk` directory, a Hub-format folder (audio files + metadata) or a Hub id."""
    path = Path(source)
    if (path / "dataset_dict.json").exists():
        return datasets.load_from_disk(str(path))
    if path.is_dir():
        return datasets.load_dataset(str(path))  # audiofolder / parquet layout, exactly as in a Hub repo
    if path.exists() or str(source).startswith((".", "/", "~")):
        raise MissingInputError(f"dataset {str(source)!r} is not a directory; pass a dataset folder or a Hub id")
    return datasets.load_dataset(str(source))


def pick_split(dataset: datasets.DatasetDict, split: str) -> datasets.Dataset:
    if split not in dataset:
        raise InputError(f"split {split!r} not in the dataset; its splits: {', '.join(dataset)}")
    return dataset[split]


def find_column(columns: list[str], role: str) -> str:
    for candidate in ROLE_COLUMNS[role]:
        if candidate in columns:
            return candidate
    raise DatasetColumnError(
        f"the dataset has no {role} column: looked for {', '.join(ROLE_COLUMNS[role])} among its columns "
        f"({', '.join(columns)}); rename the right column to {role!r}"
    )


def select_columns(dataset: datasets.Dataset, roles: tuple[str, ...], context: tuple[str, ...] = (),
                   sources: dict[str, str] | None = None) -> datasets.Dataset:  # fmt: skip
    """Keep one column per role, named after the role (`sources` names a role's column outright; otherwise the first
    of `ROLE_COLUMNS[role]` the dataset has), and the `context` columns the dataset has, under their own names
    (also when a role reads the same column)."""
    chosen = {role: (sources or {}).get(role) or find_column(dataset.column_names, role) for role in roles}
    extra = [c for c in context if c in dataset.column_names]
    dataset = dataset.select_columns(list(dict.fromkeys([*chosen.values(), *extra])))
    dataset = dataset.rename_columns({src: role for role, src in chosen.items() if src != role and src not in extra})
    for role, src in chosen.items():
        if src != role and src in extra:  # a context column a role reads too: the role gets a copy
            dataset = dataset.add_column(role, dataset[src])
    return dataset


def task_rows(dataset: datasets.Dataset, roles: tuple[str, ...], context: tuple[str, ...] = (),
              sources: dict[str, str] | None = None) -> tuple[datasets.Dataset, LeftOut]:  # fmt: skip
    """The rows a task can use (its role columns, and the `context` columns it reads when present: see
    `select_columns`), and the rows left out: those whose label or transcript is missing, empty or punctuation
    only, counted as `empty_<role>`."""
    rows = select_columns(dataset, roles, context, sources)
    return sift(rows, [empty(role) for role in roles if role != "audio"])


def at_sample_rate(rows: datasets.Dataset, sample_rate: int) -> datasets.Dataset:
    """Decode (and resample) the audio column at the backbone's rate, lazily, row by row."""
    return rows.cast_column("audio", datasets.Audio(sampling_rate=sample_rate))


def usable_rows(task: Task, rows: datasets.Dataset, left_out: LeftOut, what: str,
                training: bool = False) -> tuple[datasets.Dataset, LeftOut]:  # fmt: skip
    """The rows `task` can use whole, audio at its backbone's rate, and every row left out so far (`left_out`,
    from `task_rows`, plus the task's own), named by reason in one warning about the `what` rows. `training` rows
    must also be rows the task can learn from (its `trainable`, when it has one: FastSpeech 2 TTS)."""
    try:
        kept, unusable = task.usable(at_sample_rate(rows, task.backbone.spec.sample_rate))
        if training and hasattr(task, "trainable"):
            kept, untrainable = task.trainable(kept)
            unusable = combine(unusable, untrainable)
    except (RuntimeError, ValueError) as error:  # FFmpeg could not open a row's audio, or something else failed
        if not isinstance(error, UserError):
            _raise_if_unreadable(rows, what, error)
        raise
    left_out = combine(left_out, unusable)
    warn_left_out(left_out, len(kept), what)
    return kept, left_out


def _raise_if_unreadable(rows: datasets.Dataset, what: str, error: Exception) -> None:
    """AudioInputError naming the files of `rows` FFmpeg cannot open as audio, if any (the cause of `error`)."""
    from speechpeft.audio_input import AudioInputError, open_error

    files = rows.cast_column("audio", datasets.Audio(decode=False))["audio"]
    reasons = [(f["path"] or "a clip's bytes", open_error(f["bytes"] or f["path"])) for f in files]
    unreadable = [f"{path} ({reason})" for path, reason in reasons if reason]
    if unreadable:
        raise AudioInputError(f"{len(unreadable)} of the {len(rows)} {what} rows hold files that are not audio FFmpeg "
                              f"can open: {'; '.join(unreadable[:5])}: fix or remove them") from error  # fmt: skip


def hold_out(rows: datasets.Dataset, fraction: float, seed: int) -> tuple[datasets.Dataset, datasets.Dataset]:
    """(train, validation): a seeded random slice of `rows` for model selection, at least one row each."""
    if len(rows) < 2:
        raise InputError(f"{len(rows)} usable rows: need at least 2 to hold out a validation slice")
    size = min(len(rows) - 1, max(1, round(len(rows) * fraction)))
    parts = rows.train_test_split(test_size=size, seed=seed)
    return parts["train"], parts["test"]


def label_names(rows: datasets.Dataset, role: str) -> list[str]:
    """The sorted label set of a classification column (the label map saved with the adapter)."""
    return sorted({str(v) for v in rows[role]})
