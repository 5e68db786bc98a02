"""`AdapterBank`: one frozen backbone in memory, many resident adapters of any method, a different one per sample.

    bank = AdapterBank()
    bank.load("asr/lora-awb"); bank.load("asr/prefix-slt")
    bank.transcribe([clip_a, clip_b, clip_c], adapter=["asr/lora-awb", "asr/prefix-slt", BASE])

Each backbone (name x model kind x Whisper window) loads once, on the first adapter that needs it. An adapter
loads from the local store or a directory into its own tensors (`bank_weights`), and the backbone's modules it
touches are wrapped once (`bank_backbone`); switching adapters between requests, or between the samples of one
batch, is only a different `Route` (`routing`), so LoRA, AdaLoRA, prefix and bottleneck adapters mix in one
forward pass. PEFT keeps one active adapter per model (or per-sample adapters within the LoRA family only)
and walks every module on `set_adapter`; here nothing is walked.

Resident adapters form an LRU bounded by `max_bytes` of adapter tensors; pinned ones are never evicted. A name
that is not resident loads on first use. Every method is thread-safe; a call in flight keeps the adapters it
started with even if they are unloaded meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from speechpeft.adapters import bank_tasks, routing
from speechpeft.adapters.bank_backbone import BackboneKey, ResidentBackbone
from speechpeft.adapters.bank_weights import AdapterWeights, read_weights
from speechpeft.audio_input import check_clip
from speechpeft.errors import InputError, MissingInputError, UserError
from speechpeft.hub_client import HUB_PREFIX, looks_like_repo_id
from speechpeft.text_input import clean_text

logger = logging.getLogger(__name__)

BASE = "__base__"  # the backbone with no adapter, as PEFT's mixed batches name it
SAMPLE_RATE = 16_000  # Hz: audio in and out


class UnknownAdapterError(MissingInputError):
    """A name that is neither resident, nor in the store, nor an adapter directory."""


@dataclass(frozen=True)
class AdapterInfo:
    name: str
    path: str
    task: str
    kind: str  # the task kind: asr | tts | classify
    method: str
    backbone: str
    bytes: int  # adapter tensors held in memory
    pinned: bool
    labels: tuple[str, ...] | None


@dataclass(eq=False)
class Resident:
    info: AdapterInfo
    weights: AdapterWeights
    backbone: ResidentBackbone
    record: dict


class AdapterBank:
    """Resident backbones and adapters; `transcribe`, `classify`, `synthesize` route each sample to its adapter."""

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        store: str | os.PathLike | None = None,
        *,
        device: str | torch.device | None = None,
        precision: str = "auto",
        max_bytes: int = 1 << 30,
        default_backbone: str | None = None,
    ) -> None:
        """`max_bytes`: the budget of resident adapter tensors; `default_backbone`: the backbone `BASE` samples
        use when nothing else says which (a name as `speechpeft train --backbone` takes)."""
        if max_bytes <= 0:
            raise InputError("--max-bytes must be positive")
        self.store, self.device, self.precision, self.max_bytes = store, device, precision, max_bytes
        self.default_backbone = default_backbone
        self._adapters: OrderedDict[str, Resident] = OrderedDict()  # least recently used first
        self._backbones: dict[BackboneKey, ResidentBackbone] = {}
        self._lock, self._loading = threading.RLock(), threading.Lock()
        self._counts = {"loads": 0, "unloads": 0, "evictions": 0}

    # -- adapters -------------------------------------------------------------------------------------------

    def load(self, name_or_path: str | os.PathLike, *, name: str | None = None, pin: bool = False) -> AdapterInfo:
        """Make an adapter resident (a store name, an adapter directory, or a Hub repo id: `owner/name` found
        nowhere locally, or `hf://owner/name`, pulled into the store first) under `name` (default: its store name,
        the repo id as given, else the directory's name) and return its info; already resident: mark it used
        (and pinned if `pin`).

        Raises UnknownAdapterError when it is nowhere, InputError when it cannot be hosted (a `full` model, a
        backbone of another architecture, or one larger than `max_bytes`), CorruptAdapterError (an InputError)
        when its files do not hold together or its tensors do not fit the backbone's modules; warns
        (BackboneWeightsWarning) for an adapter trained on other weights of its backbone.
        """
        directory, key = self._locate(name_or_path, name)
        with self._lock:
            if key in self._adapters:
                return self._touch(key, pin=pin or None).info
        resident = self._read(directory, key, pin)
        with self._lock:
            if key not in self._adapters:  # another thread may have loaded it meanwhile
                self._admit(resident)
            return self._touch(key, pin=pin or None).info

    def unload(self, name: str) -> None:
        """Drop a resident adapter (calls in flight finish with it). UnknownAdapterError when not resident."""
        with self._lock:
            if name not in self._adapters:
                raise UnknownAdapterError(f"adapter {name!r} is not resident; resident: {self._names()}")
            del self._adapters[name]
            self._counts["unloads"] += 1

    def pin(self, name: str, pinned: bool = True) -> None:
        """Keep (or stop keeping) a resident adapter out of LRU eviction."""
        with self._lock:
            if name not in self._adapters:
                raise UnknownAdapterError(f"adapter {name!r} is not resident; resident: {self._names()}")
            self._touch(name, pin=pinned)

    def resident(self) -> list[AdapterInfo]:
        """Resident adapters, least recently used first."""
        with self._lock:
            return [r.info for r in self._adapters.values()]

    def stored(self) -> list[dict]:
        """The local store's adapters (`speechpeft adapters list`)."""
        from speechpeft.store import list_adapters

        return list_adapters(self.store)

    def backbones(self) -> list[str]:
        with self._lock:
            return sorted({key.name for key in self._backbones})

    def stats(self) -> dict:
        with self._lock:
            resident_bytes = sum(r.info.bytes for r in self._adapters.values())
            return {**self._counts, "resident": len(self._adapters), "resident_bytes": resident_bytes,
                    "max_bytes": self.max_bytes, "backbones": len(self._backbones)}  # fmt: skip

    # -- inference ------------------------------------------------------------------------------------------

    def transcribe(
        self, audio: np.ndarray | Sequence[np.ndarray], adapter: str | Sequence[str] = BASE, *,
        backbone: str | None = None, num_beams: int = 1,
    ) -> str | list[str]:  # fmt: skip
        """Transcripts of 1-D float32 clips at 16 kHz (one clip, or a list), each through its adapter (one name
        for all, or one per clip; `BASE` for none), as one mixed batch per backbone. `num_beams` > 1: beam search.

        A clip longer than the backbone's window (Whisper's; 30 s for others) is transcribed in pieces, joined
        (`speechpeft.audio_input.split_clips`); clips over 2 h, empty or with NaN/inf samples raise AudioInputError.
        """
        clips, single = _clips(audio)
        rows = self._rows(adapter, len(clips), "asr", backbone)
        texts = bank_tasks.transcribe(self, rows, clips, num_beams)
        return texts[0] if single else texts

    def classify(self, audio: np.ndarray | Sequence[np.ndarray], adapter: str | Sequence[str]) -> dict | list[dict]:
        """Each clip's label through its classification adapter: {"label", "confidence", "scores" (label -> p)}.
        AudioInputError for a clip longer than the backbone's window (Whisper's; 30 s for others)."""
        clips, single = _clips(audio)
        rows = self._rows(adapter, len(clips), "classify", None)
        results = bank_tasks.classify(self, rows, clips)
        return results[0] if single else results

    def synthesize(
        self, text: str | Sequence[str], adapter: str | Sequence[str] = BASE, *, backbone: str | None = None
    ) -> np.ndarray | list[np.ndarray]:
        """Speech (1-D float32 at 16 kHz) for each text through its TTS adapter, one utterance at a time.

        Texts are cleaned and checked (`speechpeft.text_input`: TextInputError for empty text, control characters,
        more than 4096 characters, or characters the backbone cannot spell); a text longer than the backbone speaks
        at once is spoken in pieces, joined.
        """
        texts, single = ([text], True) if isinstance(text, str) else (list(text), False)
        if not texts:
            raise InputError("synthesize needs at least one text")
        texts = [clean_text(t, "text" if single else f"text {i}") for i, t in enumerate(texts)]
        rows = self._rows(adapter, len(texts), "tts", backbone)
        speech = bank_tasks.synthesize(self, rows, texts)
        return speech[0] if single else speech

    @contextlib.contextmanager
    def route(
        self, adapters: Sequence[str], backbone: str | None = None, kind: str = "asr"
    ) -> Iterator[torch.nn.Module]:
        """The backbone's model with sample `i` of the next forward passes routed to `adapters[i]`, for callers that
        run the model themselves (`model.generate(...)`); holds the backbone for the body."""
        rows = self._rows(list(adapters), len(adapters), kind, backbone, check_kind=False)
        if len({id(b) for b, _ in rows}) > 1:
            raise InputError("route() takes adapters of one backbone; transcribe() splits mixed backbones itself")
        with rows[0][0].lock, routing.routed(bank_tasks.route_of(r for _, r in rows)):
            yield rows[0][0].model

    # -- internals ------------------------------------------------------------------------------------------

    def _rows(
        self, adapter: str | Sequence[str], count: int, kind: str, backbone: str | None, check_kind: bool = True
    ) -> list[tuple[ResidentBackbone, Resident | None]]:
        """(backbone, resident adapter or None for `BASE`) per sample: names resolved (loading any not resident),
        each checked to be an adapter for a `kind` task unless not `check_kind`."""
        names = [adapter] * count if isinstance(adapter, str) else list(adapter)
        if len(names) != count:
            raise InputError(f"{len(names)} adapter names for {count} inputs: give one name, or one per input")
        residents = [None if n == BASE else self._use(n) for n in names]
        for name, resident in zip(names, residents, strict=True):
            if resident is not None and check_kind and resident.info.kind != kind:
                info = resident.info
                raise InputError(f"adapter {name!r} was trained for task {info.task!r} ({info.kind}), not {kind}: "
                                 f"use it with the {info.kind} call")  # fmt: skip
        base = self._base_backbone(residents, kind, backbone) if None in residents else None
        return [(base, None) if r is None else (r.backbone, r) for r in residents]

    def _base_backbone(self, residents: list[Resident | None], kind: str, backbone: str | None) -> ResidentBackbone:
        others = {r.backbone.key for r in residents if r is not None}
        if backbone is None and len(others) == 1:
            return self._backbones[next(iter(others))]
        name = backbone or self.default_backbone
        if name is None:
            raise InputError(f"{BASE!r} (no adapter) needs a backbone: pass backbone=..., or start the bank with one")
        if kind == "classify":
            raise InputError(f"{BASE!r} cannot classify: a backbone alone has no trained head; name an adapter")
        return self._backbone(BackboneKey(name, kind), labels=None)

    def _use(self, name: str) -> Resident:
        with self._lock:
            if name.removeprefix(HUB_PREFIX) in self._adapters:
                return self._touch(name.removeprefix(HUB_PREFIX))
        name = self.load(name).name
        with self._lock:
            if name not in self._adapters:  # unloaded, or evicted by concurrent loads, as soon as it loaded
                raise InputError(
                    f"adapter {name!r} left the bank while this call loaded it (unloaded, or evicted by other "
                    "loads: if `stats` counts many evictions, raise max_bytes); try again"
                )
            return self._adapters[name]

    def _touch(self, name: str, pin: bool | None = None) -> Resident:
        resident = self._adapters[name]
        if pin is not None and pin != resident.info.pinned:
            resident.info = replace(resident.info, pinned=pin)
        self._adapters.move_to_end(name)
        return resident

    def _locate(self, name_or_path: str | os.PathLike, name: str | None) -> tuple[Path, str]:
        from speechpeft.store import resolve_adapter, store_root

        resident = str(name_or_path).removeprefix(HUB_PREFIX)
        if name is None and resident in self._adapters:
            return Path(self._adapters[resident].info.path), resident
        try:
            directory = resolve_adapter(name_or_path, self.store)
        except MissingInputError as error:
            directory = self._pull(str(name_or_path), error)
            name = name or str(name_or_path).removeprefix(HUB_PREFIX)
        if name is None:
            root, resolved = store_root(self.store).resolve(), directory.resolve()
            name = resolved.relative_to(root).as_posix() if resolved.is_relative_to(root) else directory.name
        if name == BASE or not name.strip() or any(c.isspace() for c in name):
            raise InputError(f"adapter name {name!r}: use a name without spaces, other than {BASE!r}")
        return directory, name

    def _pull(self, repo_id: str, missing: MissingInputError) -> Path:
        """A Hub repo id: pulled into the store (`hub.pull_adapter`); else UnknownAdapterError."""
        from speechpeft.hub_pull import pull_adapter

        if not (repo_id.startswith(HUB_PREFIX) or looks_like_repo_id(repo_id)):
            raise UnknownAdapterError(str(missing))
        try:
            return pull_adapter(repo_id, store=self.store)
        except UserError as error:
            if repo_id.startswith(HUB_PREFIX):
                raise
            raise UnknownAdapterError(f"{missing}; nor could it be pulled from the Hub: {error}") from None

    def _read(self, directory: Path, name: str, pin: bool) -> Resident:
        """Read an adapter's record and tensors and prepare its backbone (outside the bank's lock: seconds)."""
        from speechpeft.adapter_dir import check_adapter, read_record
        from speechpeft.backbones.fingerprint import warn_other_weights
        from speechpeft.tasks.catalog import TASKS
        from speechpeft.train_options import backbone_kind

        record = read_record(directory)
        check_adapter(directory, record)  # the files hold together, before a backbone loads for them
        task_kind = TASKS.get(record["task"]).kind
        model_kind = backbone_kind(task_kind, record.get("options", {}).get("classifier"))
        window = record.get("options", {}).get("window_seconds")
        labels = record.get("labels") if model_kind == "classify" else None
        backbone = self._backbone(BackboneKey(record["backbone"], model_kind, window), labels)
        warn_other_weights(record, backbone.frozen.source, directory)
        weights = read_weights(directory, record["method"], backbone.frozen.device)
        backbone.check(weights, name)
        if weights.nbytes() > self.max_bytes:
            raise InputError(f"adapter {name!r} holds {weights.nbytes()} bytes, more than the bank's budget of "
                             f"{self.max_bytes}: raise max_bytes")  # fmt: skip
        backbone.install(weights)
        labels = tuple(record["labels"]) if record.get("labels") else None
        info = AdapterInfo(name, str(directory), record["task"], task_kind, record["method"], record["backbone"],
                           weights.nbytes(), pin, labels)  # fmt: skip
        return Resident(info, weights, backbone, record)

    def _admit(self, resident: Resident) -> None:
        """Add a read adapter, evicting least recently used unpinned ones to stay within `max_bytes`."""
        held = sum(r.info.bytes for r in self._adapters.values())
        for name in [n for n, r in self._adapters.items() if not r.info.pinned]:
            if held + resident.info.bytes <= self.max_bytes:
                break
            held -= self._adapters.pop(name).info.bytes
            self._counts["evictions"] += 1
            logger.info("evicted adapter %s (least recently used) to load %s", name, resident.info.name)
        if held + resident.info.bytes > self.max_bytes:
            raise InputError(f"adapter {resident.info.name!r} does not fit: pinned adapters hold {held} of "
                             f"{self.max_bytes} bytes; unpin some or raise max_bytes")  # fmt: skip
        self._adapters[resident.info.name] = resident
        self._counts["loads"] += 1

    def _backbone(self, key: BackboneKey, labels: Sequence[str] | None) -> ResidentBackbone:
        """The resident backbone for `key`, loaded (once, whichever thread asks first) if it is not."""
        with self._loading:
            if key not in self._backbones:
                from speechpeft.backbones import load_frozen

                frozen = load_frozen(key.name, key.kind, self.precision, device=self.device, labels=labels,
                                     window_seconds=key.window_seconds)  # fmt: skip
                frozen.model.eval()
                with self._lock:
                    self._backbones[key] = ResidentBackbone(key, frozen)
            return self._backbones[key]

    def _names(self) -> str:
        return ", ".join(self._adapters) or "none"


def _clips(audio: np.ndarray | Sequence[np.ndarray]) -> tuple[list[np.ndarray], bool]:
    """A list of 1-D float32 clips, and whether one clip was given; InputError naming the fix otherwise (an
    AudioInputError for no samples, NaN/inf samples or more than 2 h: `audio_input.check_clip`)."""
    single = isinstance(audio, np.ndarray)
    if single and audio.ndim != 1:
        raise InputError(f"audio of shape {audio.shape}: give one 1-D clip (mono samples: mix channels down, e.g. "
                         "samples.mean(axis=0) for [channels, samples]), or a list of clips")  # fmt: skip
    clips = [audio] if single else list(audio)
    if not clips:
        raise InputError("no audio given")
    for index, clip in enumerate(clips):
        if not isinstance(clip, np.ndarray) or clip.ndim != 1 or not np.issubdtype(clip.dtype, np.floating):
            raise InputError(f"audio {index}: give 1-D float samples at {SAMPLE_RATE} Hz (mono), e.g. from "
                             f"speechpeft.audio_input.decode_audio(path, {SAMPLE_RATE}).samples")  # fmt: skip
    return [check_clip(c, SAMPLE_RATE, "audio" if single else f"audio {i}") for i, c in enumerate(clips)], single
