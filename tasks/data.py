"""Speech datasets for every task: the synthetic corpus, a Hub-format folder of audio files, or a Hub id.

A dataset is named as on the Hub: an id or folder, a config (Common Voice "en", FLEURS "en_us") and split names
as it has them ("train.clean.100", "validated"). A large one is streamed: its first N rows of a split are read
and kept as a map-style Dataset, so everything below works on them as on a loaded split.

A task names the roles it needs ("audio", "text", "intent", ...); `select_columns` finds each role among
the column names that common Hub datasets use (LibriSpeech `text`, Common Voice `sentence`, FLEURS
`transcription`, ...) and renames it to the role; `at_sample_rate` casts the audio to the backbone's
sampling rate, so datasets' decoder resamples on the fly. `task_rows` and `usable_rows` leave out the rows a
task cannot use whole and count them by reason (`speechpeft.tasks.rows`).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import datasets
from datasets.exceptions import DatasetNotFoundError
from datasets.table import embed_table_storage
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from tqdm.auto import tqdm

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


DEFAULT_CORPUS = Path("data/corpus")  # `speechpeft train`'s default --dataset, which `make corpus` writes
Splits = datasets.DatasetDict | datasets.IterableDatasetDict


class DatasetColumnError(InputError):
    """A dataset lacks a column a task needs; the message lists what was looked for."""


def load_speech_dataset(source: str | os.PathLike, config: str | None = None, streaming: bool = False) -> Splits:
    """The splits of a `save_to_disk` directory, a Hub-format folder (audio files + metadata) or a Hub id, in the
    dataset's `config` (Common Voice "en", FLEURS "en_us"); streamed (`IterableDataset`s) when `streaming`.

    Raises MissingInputError for a dataset that is neither here nor a Hub id (naming `make corpus` for the default
    corpus), and InputError naming --dataset-config for a config the dataset lacks, or none where it has several.
    """
    path = Path(source)
    if (path / "dataset_dict.json").exists():
        if config is not None:
            raise InputError(f"--dataset-config {config}: {source} is a saved dataset (`save_to_disk`), which has no "
                             "configs: leave --dataset-config out")  # fmt: skip
        saved = datasets.load_from_disk(str(path))
        if streaming:  # already on disk: streamed only so that --streaming means the same everywhere
            return datasets.IterableDatasetDict({k: v.to_iterable_dataset() for k, v in saved.items()})
        return saved
    if not path.is_dir():
        _check_hub_id(source)
    cache_dir = _prepared_copy_dir(path) if path.is_dir() and not streaming else None
    try:  # a folder: audiofolder / parquet layout, configs and all, exactly as in a Hub repo
        return datasets.load_dataset(str(source), config, streaming=streaming, cache_dir=cache_dir)
    except DatasetNotFoundError as error:
        raise MissingInputError(f"dataset {str(source)!r} is not a directory here, and {error} Pass a dataset folder "
                                "or a Hub id you can read") from None  # fmt: skip
    except ConnectionError as error:  # offline (HF_HUB_OFFLINE=1) and not in the datasets cache, or no network
        raise MissingInputError(f"dataset {str(source)!r} is not a directory here, and {error}: load it once online "
                                "to cache it, or pass a dataset folder") from None  # fmt: skip
    except ValueError as error:
        _raise_if_no_such_config(str(source), config, error)
        raise
    except RuntimeError as error:
        if "Dataset scripts are no longer supported" in str(error):  # e.g. an older Common Voice or FLEURS release
            raise InputError(f"dataset {str(source)!r} is a loading script ({error}): datasets "
                             f"{datasets.__version__} reads data files only (parquet, audio files with metadata); "
                             "pass a release or copy of it stored so") from None  # fmt: skip
        raise


def _check_hub_id(source: str | os.PathLike) -> None:
    """Raise MissingInputError unless `source`, no directory here, may be a Hub id (`OWNER/NAME` or `NAME`)."""
    path = Path(source)
    if path.exists():
        raise MissingInputError(f"dataset {str(source)!r} is not a directory; pass a dataset folder or a Hub id")
    if path.absolute() == DEFAULT_CORPUS.absolute():  # `data/corpus` is also a well-formed Hub id: not looked up
        raise MissingInputError(f"no corpus at {source}: build it with `make corpus` (in a clone of speechpeft) or "
                                f"`speechpeft data synth --utterances 2000 --out {source}`, or pass --dataset ID (a "
                                "Hub dataset) or --dataset DIR")  # fmt: skip
    try:
        validate_repo_id(str(source))
    except HFValidationError:  # more than one `/`, a leading `.`, `/` or `~`: a path, and not here
        raise MissingInputError(f"dataset {str(source)!r} is not here, and not a Hub id (OWNER/NAME): pass a dataset "
                                "folder or a Hub id") from None  # fmt: skip


def _prepared_copy_dir(folder: Path) -> str:
    """The datasets cache for a local folder's prepared copy, one per state of its files (path, size, mtime).

    datasets 5 keys the copy of a folder whose README declares `configs:` by the folder's name and the configs' file
    patterns only: the same name elsewhere, or an edited metadata.csv, would be read back as first prepared.
    """
    paths = [f for f in sorted(folder.rglob("*")) if f.is_file() and ".git" not in f.relative_to(folder).parts]
    files = [(str(f.relative_to(folder)), stat.st_size, stat.st_mtime_ns) for f in paths for stat in [f.stat()]]
    key = hashlib.sha256(json.dumps([str(folder.resolve()), files]).encode()).hexdigest()[:16]
    return str(Path(datasets.config.HF_DATASETS_CACHE) / "speechpeft-folders" / key)


def _raise_if_no_such_config(source: str, config: str | None, error: ValueError) -> None:
    """InputError listing the dataset's configs when `error` came of a `config` it lacks, or of none given where it
    has several (datasets says so in a ValueError, naming its own function rather than the flag)."""
    if "Couldn't find cache" in str(error):  # offline, from datasets' cache: it names the configs it holds
        raise InputError(f"--dataset-config {config}: offline (HF_HUB_OFFLINE=1), {source} is read from the datasets "
                         f"cache: {' '.join(str(error).split())}") from error  # fmt: skip
    configs = datasets.get_dataset_config_names(source)
    if config is not None and configs == ["default"]:  # a folder or repo that declares no configs
        raise InputError(f"--dataset-config {config}: {source} declares no configs (its README has no `configs:`): "
                         "leave it out") from error  # fmt: skip
    if config is None and len(configs) > 1 and datasets.get_dataset_default_config_name(source) is None:
        raise InputError(f"{source} has configs {', '.join(configs)}: pick one with --dataset-config NAME") from error
    if config is not None and config not in configs:
        raise InputError(f"--dataset-config {config}: {source} has no such config; its configs: "
                         f"{', '.join(configs)}") from error  # fmt: skip


def pick_split(dataset: Splits, split: str, max_rows: int | None = None, flag: str = "--split") -> datasets.Dataset:
    """`dataset[split]` as a map-style Dataset: a streamed split is read up to its first `max_rows` rows.

    Raises InputError naming `flag` (the option that chose the split) and the dataset's splits when it lacks one."""
    if split not in dataset:
        raise InputError(f"{flag} {split}: split {split!r} not in the dataset; its splits: {', '.join(dataset)}")
    rows = dataset[split]
    return streamed_rows(rows, max_rows, split) if isinstance(rows, datasets.IterableDataset) else rows


def load_split(source: str | os.PathLike, split: str, config: str | None = None, streaming: bool = False,
               max_utterances: int | None = None) -> datasets.Dataset:  # fmt: skip
    """One split of a dataset (see `load_speech_dataset`), map-style; streamed, it holds the first `max_utterances`
    rows only."""
    return pick_split(load_speech_dataset(source, config, streaming), split, max_utterances)


def streamed_rows(stream: datasets.IterableDataset, limit: int | None, split: str) -> datasets.Dataset:
    """The first `limit` rows of a streamed split as a map-style Dataset with its features, so that audio is decoded
    (and cast) lazily as for a loaded split. Audio files on the Hub are fetched now: the rows need no network later.
    """
    features = stream.features
    if features is not None:
        stream = stream.decode(False)  # paths and bytes; the Audio feature decodes them when a row is read
    if limit is not None:
        stream = stream.take(limit)
    read = list(tqdm(stream, total=limit, desc=f"stream {split}", unit=" rows"))
    rows = datasets.Dataset.from_list(read, features=features)
    embed = partial(embed_table_storage, local_files=False)  # hf:// and https:// files' bytes into the rows
    rows = rows.with_format("arrow").map(embed, batched=True, keep_in_memory=True, desc="fetch streamed audio")
    rows = rows.with_format(None)
    cap = f" (--max-utterances {limit})" if limit is not None else ""
    print(f"streamed {len(rows)} rows of split {split!r}{cap}", file=sys.stderr)
    return rows


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
