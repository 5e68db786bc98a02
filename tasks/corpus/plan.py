"""The corpus plan: which text each utterance says, in which voice, at which rate, in which split.

Planning is pure and seeded, so the same options give the same corpus on any machine, and an
interrupted build can check that the plan on disk is the one it was asked for.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from speechpeft.errors import InputError
from speechpeft.tasks.corpus import commands, text
from speechpeft.tasks.corpus.voices import Voice

KINDS = ("sentence", "command", "keyword")
SPLITS = ("pretrain", "adapt", "test")
RATE_RANGE = (0.85, 1.15)  # speaking-rate multipliers
PITCH_RANGE = (0.8, 1.2)
FACTOR_DECIMALS = 3  # rate and pitch are rounded, so the dataset's float32 columns give back the planned values
WORDS_PER_SECOND = 2.9  # espeak-ng at 175 wpm, for sizing a corpus by hours
PAUSE_SECONDS = 0.4  # lead-in and trailing silence the engines add


@dataclass(frozen=True)
class Utterance:
    id: str
    text: str
    kind: str  # sentence | command | keyword
    intent: str  # commands only, else ""
    slots: str  # JSON list of {"slot", "value"}; "[]" when none
    keyword: str  # keyword utterances only, else ""
    voice: str
    engine: str
    voice_group: str  # pretrain | adapt: which voices the speaker belongs to
    split: str  # pretrain | adapt | test
    rate: float
    pitch: float

    def estimated_seconds(self) -> float:
        return PAUSE_SECONDS + len(self.text.split()) / (WORDS_PER_SECOND * self.rate)


@dataclass(frozen=True)
class TextPools:
    """Texts per kind, each divided into train and test by a hash of the text."""

    train: dict[str, list[tuple[str, str, str, str]]]  # kind -> (text, intent, slots, keyword)
    test: dict[str, list[tuple[str, str, str, str]]]


def build_pools(sentences: list[str], test_fraction: float) -> TextPools:
    items = {
        "sentence": [(s, "", "[]", "") for s in sentences],
        "command": [(c.text, c.intent, c.slots_json(), "") for c in commands.all_commands()],
    }
    train = {k: [i for i in v if text.stable_fraction(i[0]) >= test_fraction] for k, v in items.items()}
    test = {k: [i for i in v if text.stable_fraction(i[0]) < test_fraction] for k, v in items.items()}
    # ten words cannot be held out: keyword test utterances are new recordings of the same words
    train["keyword"] = test["keyword"] = [(w, "", "[]", w) for w in commands.KEYWORDS]
    return TextPools(train, test)


def plan_utterances(
    pools: TextPools,
    voices: tuple[Voice, ...],
    kind_weights: dict[str, float],
    split_weights: dict[str, float],
    seed: int,
) -> Iterator[Utterance]:
    """An endless, seeded stream of utterances; the caller stops it by count or by hours."""
    rng = random.Random(seed)
    by_group = {
        "pretrain": [v for v in voices if v.group == "pretrain"],
        "adapt": [v for v in voices if v.group == "adapt"],
    }
    splits = [s for s in SPLITS if split_weights.get(s, 0) > 0 and (s == "test" or by_group[s])]
    kinds = [k for k in KINDS if kind_weights.get(k, 0) > 0 and pools.train[k] and pools.test[k]]
    if not splits or not kinds:
        raise InputError("nothing to plan: no split has voices or no text kind has texts")
    for index in itertools.count():
        split = rng.choices(splits, [split_weights[s] for s in splits])[0]
        kind = rng.choices(kinds, [kind_weights[k] for k in kinds])[0]
        line, intent, slots, keyword = rng.choice((pools.test if split == "test" else pools.train)[kind])
        voice = rng.choice(list(voices) if split == "test" else by_group[split])
        rate = round(rng.uniform(*RATE_RANGE), FACTOR_DECIMALS)
        pitch = round(rng.uniform(*PITCH_RANGE), FACTOR_DECIMALS) if voice.native_pitch else 1.0
        yield Utterance(f"{index:07d}", line, kind, intent, slots, keyword, voice.id, voice.engine, voice.group,
                        split, rate, pitch)  # fmt: skip


def take(stream: Iterator[Utterance], utterances: int | None, hours: float | None) -> list[Utterance]:
    """The first `utterances` of the stream, or as many as fill an estimated `hours` of audio."""
    planned: list[Utterance] = []
    seconds = 0.0
    for utterance in stream:
        if utterances is not None and len(planned) >= utterances:
            break
        if hours is not None and seconds >= hours * 3600:
            break
        planned.append(utterance)
        seconds += utterance.estimated_seconds()
    return planned


def write_plan(path: Path, utterances: list[Utterance]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(asdict(u)) + "\n" for u in utterances))
    tmp.replace(path)


def read_plan(path: Path) -> list[Utterance]:
    return [Utterance(**json.loads(line)) for line in path.read_text().splitlines()]
