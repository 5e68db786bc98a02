"""Property-based tests (hypothesis) of every input check, and of the text normaliser.

A check accepts what it documents (unchanged: the value round-trips) and refuses the rest with the project's
`UserError` naming the flag; no other exception leaks (TypeError, KeyError, OverflowError). Values are drawn as the
command line delivers them: argparse's `float` reads "nan", "inf" and "1e999", its `int` any size. The examples are
fixed and bounded by the `ci` profile in tests/conftest.py.

A property that finds a bug in a file owned elsewhere, or one whose fix would change results, is marked
`xfail(strict=True)` with the failing example as an `@example`: it fails once the bug is fixed, to be unmarked.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import io
import ipaddress
import math
import re
import string
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from hypothesis import assume, example, given
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy

from speechpeft.adapters.base import AdapterOptions
from speechpeft.backbones.imported import WHEEL_CHECKPOINTS
from speechpeft.backbones.imported_card import CardOptions
from speechpeft.backbones.pretrain.options import SpeechT5PretrainOptions, WhisperPretrainOptions
from speechpeft.backbones.window import POSITIONS_PER_SECOND, check_window
from speechpeft.cli_hub import license_id, repo_id
from speechpeft.errors import UserError
from speechpeft.eval_options import EvalOptions
from speechpeft.hub_client import check_repo_id
from speechpeft.leaderboard.command import LeaderboardOptions
from speechpeft.leaderboard.normalize import normalize_english
from speechpeft.options import add_options, flag, parse_options
from speechpeft.registry import Registry, UnknownNameError
from speechpeft.serve_options import API_KEY_ENV, PRECISIONS, ServeOptions
from speechpeft.store import adapter_path, resolve_adapter
from speechpeft.tasks.corpus.options import SynthOptions, parse_weights
from speechpeft.tasks.corpus.plan import KINDS, SPLITS
from speechpeft.tasks.corpus.voices import VOICES
from speechpeft.train_options import TrainOptions

INTS = st.integers(-2, 3) | st.integers()  # argparse's int: any size
FLOATS = st.floats()  # argparse's float: nan, inf and -inf included
NOWHERE = Path("/nonexistent/speechpeft-properties/out")  # a destination that does not exist (nothing is written)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store root and a stand-in corpus (CardOptions only checks that its dataset_dict.json is there)."""
    root = tmp_path_factory.mktemp("properties")
    (root / "corpus").mkdir()
    (root / "corpus" / "dataset_dict.json").write_text('{"splits": ["test"]}')
    (root / "store").mkdir()
    return root


def assert_refused(build: Callable[[], Any], fields: list[str]) -> None:
    """`build()` raises a UserError, nothing else, naming one of `fields` (as the flag or the field name)."""
    with pytest.raises(UserError) as caught:
        build()
    message = str(caught.value)
    assert any(flag(f) in message or f in message for f in fields), f"{message!r} names none of {fields}"


# -- the options dataclasses: one rule per checked field ------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """What one checked field takes: `valid` draws accepted values only, `anything` what the CLI can deliver."""

    valid: SearchStrategy
    accepts: Callable[[Any], bool]
    anything: SearchStrategy


def at_least(low: int) -> Rule:
    return Rule(st.integers(low, 2**40), lambda v: v >= low, INTS)


def interval(low: float, high: float, closed_low: bool = False, closed_high: bool = False) -> Rule:
    """Floats between `low` and `high` (either may be inf: never included), ends open unless said closed."""
    valid = st.floats(low, high, exclude_min=not closed_low, exclude_max=not closed_high, allow_infinity=False)

    def accepts(v: float) -> bool:
        return math.isfinite(v) and (low <= v if closed_low else low < v) and (v <= high if closed_high else v < high)

    return Rule(valid, accepts, FLOATS)


def choice(*names: str) -> Rule:
    return Rule(st.sampled_from(names), lambda v: v in names, st.sampled_from(names) | st.text(max_size=8))


def optional(rule: Rule) -> Rule:
    return Rule(st.none() | rule.valid, lambda v: v is None or rule.accepts(v), st.none() | rule.anything)


POSITIVE, FRACTION, SECONDS = at_least(1), interval(0, 1), interval(0, math.inf)
PRETRAIN = {**{n: POSITIVE for n in ("steps", "batch_size", "eval_every", "warmup", "eval_utterances")},
            "lr": SECONDS, "precision": choice("bf16", "fp32")}  # fmt: skip


@dataclass(frozen=True)
class Options:
    """An options class, the keyword arguments that make a valid one, and the rule of each field it checks."""

    cls: type
    base: Callable[[Path], dict[str, Any]]
    rules: dict[str, Rule]

    def build(self, workdir: Path, **values: Any) -> Any:
        return self.cls(**{**self.base(workdir), **values})

    def __repr__(self) -> str:  # how hypothesis prints a failing example
        return f"Options({self.cls.__name__}, rules for {', '.join(self.rules)})"


OPTIONS = [
    Options(TrainOptions, lambda d: {"task": "asr", "out": NOWHERE, "backbone": "b"}, {
        **{n: POSITIVE for n in ("steps", "batch_size", "eval_every", "patience", "rank", "prefix_length",
                                 "reduction_factor")},
        "validation_fraction": FRACTION, "window_seconds": optional(SECONDS), "lr": SECONDS,
        "precision": choice("fp32", "bf16", "int8", "auto"), "classifier": choice("pooled", "decoder"),
        "bottleneck_style": choice("pfeiffer", "houlsby")}),
    Options(EvalOptions, lambda d: {"adapter": "asr/x"}, {
        "batch_size": POSITIVE, "max_utterances": optional(POSITIVE),
        "precision": Rule(st.sampled_from((None, "fp32", "bf16", "int8", "auto")),
                          lambda v: v in (None, "fp32", "bf16", "int8", "auto"), st.none() | st.text(max_size=8))}),
    Options(ServeOptions, lambda d: {"api_key": "k"}, {
        "port": Rule(st.integers(0, 65535), lambda v: 0 <= v <= 65535, INTS), "max_bytes": POSITIVE,
        "max_batch_size": POSITIVE, "precision": choice(*PRECISIONS), "max_queue": POSITIVE,
        "max_connections": POSITIVE, "request_timeout_s": SECONDS, "upload_timeout_s": SECONDS,
        "max_wait_ms": interval(0, math.inf, closed_low=True)}),
    Options(LeaderboardOptions, lambda d: {}, {"workers": optional(POSITIVE), "seeds": optional(POSITIVE)}),
    Options(SynthOptions, lambda d: {"out": NOWHERE, "utterances": 10}, {
        "utterances": at_least(1), "jobs": POSITIVE, "test_fraction": FRACTION}),
    Options(SynthOptions, lambda d: {"out": NOWHERE, "hours": 1.0}, {"hours": SECONDS}),
    Options(WhisperPretrainOptions, lambda d: {"corpus": NOWHERE, "out": NOWHERE}, {
        **PRETRAIN, "freq_masks": at_least(0), "time_masks": at_least(0),
        "label_smoothing": interval(0, 1, closed_low=True)}),
    Options(SpeechT5PretrainOptions, lambda d: {"corpus": NOWHERE, "out": NOWHERE},
            {**PRETRAIN, "reduction_factor": POSITIVE}),
    Options(AdapterOptions, lambda d: {}, {
        "rank": POSITIVE, "steps": POSITIVE, "prefix_length": POSITIVE, "reduction_factor": POSITIVE,
        "dropout": interval(0, 1, closed_low=True), "bottleneck_style": choice("pfeiffer", "houlsby"),
        "alpha": Rule(st.integers(1, 2**20) | SECONDS.valid, lambda v: 0 < v < math.inf, INTS | FLOATS)}),
    Options(CardOptions, lambda d: {"backbone": next(iter(WHEEL_CHECKPOINTS)), "corpus": d / "corpus", "out": d}, {
        "window_seconds": interval(0, 30, closed_high=True), "batch_size": POSITIVE,
        "max_utterances": optional(POSITIVE)}),
]  # fmt: skip
OPTION_IDS = [o.cls.__name__ + ("-hours" if "hours" in o.rules else "") for o in OPTIONS]


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
@given(data=st.data())
def test_options_accept_valid_values_unchanged(options: Options, data: st.DataObject, workdir: Path) -> None:
    values = {name: data.draw(rule.valid, label=name) for name, rule in options.rules.items()}
    built = options.build(workdir, **values)
    assert {name: getattr(built, name) for name in values} == values


@pytest.mark.parametrize("options", OPTIONS, ids=OPTION_IDS)
@given(data=st.data())
def test_options_refuse_a_bad_value_naming_its_flag(options: Options, data: st.DataObject, workdir: Path) -> None:
    name = data.draw(st.sampled_from(sorted(options.rules)), label="field")
    value = data.draw(options.rules[name].anything, label=name)
    if options.rules[name].accepts(value):
        options.build(workdir, **{name: value})
    else:
        assert_refused(lambda: options.build(workdir, **{name: value}), [name])


NON_FINITE = [
    pytest.param(options, f.name, value, id=f"{options_id}-{f.name}-{value}")
    for options, options_id in zip(OPTIONS, OPTION_IDS, strict=True)
    for f in dataclasses.fields(options.cls) if f.name in options.rules and "float" in str(f.type)
    for value in (math.nan, math.inf, -math.inf)
]  # fmt: skip


@pytest.mark.parametrize(("options", "name", "value"), NON_FINITE)
def test_float_flags_refuse_nan_and_infinities(options: Options, name: str, value: float, workdir: Path) -> None:
    assert_refused(lambda: options.build(workdir, **{name: value}), [name])


ADAPTER_NUMBERS = {"rank": int, "alpha": float, "dropout": float, "steps": int, "prefix_length": int,
                   "reduction_factor": int}  # fmt: skip
JSON_NUMBERS = st.integers() | st.floats() | st.booleans()  # json.loads: NaN, Infinity, 1.5, true


@given(st.dictionaries(st.sampled_from(list(ADAPTER_NUMBERS)), JSON_NUMBERS, max_size=4))
@example({"alpha": math.nan})
@example({"alpha": math.inf})
@example({"rank": 1.5})
@example({"rank": 8.0})
@example({"steps": True})
def test_adapter_options_take_only_numbers_within_their_rules(options: dict[str, float]) -> None:
    """The numbers an adapter_config.json may hold (json reads NaN, Infinity, 1.5 and true): refused with a UserError
    naming the field, or within every rule, a whole number where one is needed."""
    try:
        built = AdapterOptions(**options)
    except UserError as error:
        assert any(name in str(error) for name in options), error
        return
    rules = next(o for o in OPTIONS if o.cls is AdapterOptions).rules
    for name, kind in ADAPTER_NUMBERS.items():
        value = getattr(built, name)
        assert rules[name].accepts(value) and not isinstance(value, bool), built
        assert kind is float or isinstance(value, int), built


# -- rules across fields --------------------------------------------------------------------------------------------


@given(out=st.booleans(), name=st.none() | st.sampled_from(["asr/x", "ASR/x", "../x", "/abs"]))
def test_train_options_need_exactly_one_destination(out: bool, name: str | None, workdir: Path) -> None:
    build = lambda: TrainOptions(task="asr", backbone="b", out=NOWHERE if out else None, name=name,  # noqa: E731
                                 store=workdir / "store")  # fmt: skip
    if out == (name is not None) or name not in (None, "asr/x"):
        assert_refused(build, ["out", "name"])
    else:
        assert build().out == (NOWHERE if out else workdir / "store" / "asr" / "x")


@given(utterances=st.none() | INTS, hours=st.none() | FLOATS)
@example(utterances=None, hours=math.nan)
def test_synth_takes_exactly_one_size(utterances: int | None, hours: float | None) -> None:
    build = lambda: SynthOptions(out=NOWHERE, utterances=utterances, hours=hours)  # noqa: E731
    one = (utterances is None) != (hours is None)
    if one and (utterances is None or utterances >= 1) and (hours is None or SECONDS.accepts(hours)):
        build()
    else:
        assert_refused(build, ["utterances", "hours"])


WEIGHT_NAMES = st.sampled_from(KINDS + SPLITS) | st.text(max_size=6)
WEIGHT_VALUES = st.floats(0, 10).map(str) | FLOATS.map(str) | st.text(max_size=5)


@given(st.lists(st.tuples(WEIGHT_NAMES, WEIGHT_VALUES).map("=".join), max_size=4), st.sampled_from([KINDS, SPLITS]))
@example(["sentence=nan"], KINDS)
@example(["test=1e999"], SPLITS)
@example(["sentence=-1", "sentence=1"], KINDS)
def test_weights_are_named_finite_and_not_all_zero(items: list[str], valid: tuple[str, ...]) -> None:
    pairs = [(name, _float(value)) for name, _, value in (item.partition("=") for item in items)]
    expected = dict(pairs)  # a name given twice: the last weight
    if all(name in valid and 0 <= w < math.inf for name, w in pairs) and sum(expected.values()) > 0:
        assert parse_weights(tuple(items), valid, "--kinds") == expected
    else:
        assert_refused(lambda: parse_weights(tuple(items), valid, "--kinds"), ["--kinds"])


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


@given(st.lists(st.sampled_from([v.id for v in VOICES] + ["pretrain", "adapt"]) | st.text(max_size=6), max_size=3))
def test_voices_are_known_ids_or_groups(voices: list[str]) -> None:
    known = {v.id for v in VOICES} | {"pretrain", "adapt"}
    build = lambda: SynthOptions(out=NOWHERE, utterances=1, voices=tuple(voices))  # noqa: E731
    if set(voices) <= known:
        assert all(v.id in voices or v.group in voices for v in build().selected_voices()) or not voices
    else:
        assert_refused(build, ["voices"])


@given(
    config=st.booleans(),
    quick=st.booleans(),
    publish=st.sampled_from([None, "", "alice/board"]),
    private=st.booleans(),
    token=st.sampled_from([None, "", "hf_x"]),
    endpoint=st.sampled_from([None, "http://h"]),
)
def test_leaderboard_flag_combinations(config, quick, publish, private, token, endpoint) -> None:
    build = lambda: LeaderboardOptions(config=Path("g.toml") if config else None, quick=quick, publish=publish,  # noqa: E731
                                       private=private, token=token, endpoint=endpoint)  # fmt: skip
    if config and quick:
        assert_refused(build, ["quick", "config"])
    elif not publish and (private or token or endpoint):
        assert_refused(build, ["publish"])
    else:
        build()


HOSTS = (st.ip_addresses().map(str) | st.ip_addresses(v=6).map(lambda a: f"[{a}]")
         | st.sampled_from(["localhost", "LocalHost", "localhost.", "", "0.0.0.0", "::", "127.1", " 127.0.0.1"])
         | st.text(max_size=12))  # fmt: skip


@given(host=HOSTS, key=st.sampled_from([None, "", "k"]))
def test_serving_beyond_loopback_needs_an_api_key(host: str, key: str | None) -> None:
    with pytest.MonkeyPatch.context() as env:
        env.delenv(API_KEY_ENV, raising=False)
        if key or _only_this_machine(host):
            assert ServeOptions(host=host, api_key=key).api_key == (key or None)
        else:
            assert_refused(lambda: ServeOptions(host=host, api_key=key), ["--api-key"])


def _only_this_machine(host: str) -> bool:
    """An independent reading of a loopback address: localhost, 127.0.0.0/8, ::1 (bare or in brackets)."""
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host[1:-1] if host.startswith("[") and host.endswith("]") else host)
    except ValueError:
        return False
    return address in ipaddress.ip_network("127.0.0.0/8") or address == ipaddress.ip_address("::1")


# -- flags: options.py ------------------------------------------------------------------------------------------------

PRETRAIN_ARGV = ["--corpus=/nonexistent/c", "--out=/nonexistent/o"]
REQUIRED_ARGV = {TrainOptions: ["--task=asr"], EvalOptions: ["--adapter=a"], ServeOptions: [],
                 SynthOptions: ["--out=/nonexistent/x"], WhisperPretrainOptions: PRETRAIN_ARGV,
                 SpeechT5PretrainOptions: PRETRAIN_ARGV}  # fmt: skip
FLAG_CLASSES = list(REQUIRED_ARGV)
FLAG_OPTIONS = {i: o for o, i in zip(OPTIONS, OPTION_IDS, strict=True) if o.cls in FLAG_CLASSES}


@functools.cache
def parser_for(cls: type) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="speechpeft")
    add_options(parser, cls)
    return parser


def argv_of(options: Any) -> list[str]:
    """The flags that ask for `options` (`--flag=value`, so a value may start with '-')."""
    argv = []
    for field in dataclasses.fields(options):
        value = getattr(options, field.name)
        if isinstance(value, bool):
            argv.append(flag(field.name) if value else "--no-" + flag(field.name)[2:])
        elif isinstance(value, tuple) and value:
            argv += [flag(field.name), *map(str, value)]
        elif value is not None and not isinstance(value, tuple):
            argv.append(f"{flag(field.name)}={value}")
    return argv


def parse(cls: type, argv: list[str]) -> Any:
    parser = parser_for(cls)
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        return parse_options(parser, parser.parse_args(argv), cls)


@pytest.mark.parametrize("options", FLAG_OPTIONS.values(), ids=FLAG_OPTIONS.keys())
@given(data=st.data(), text=st.text())
def test_valid_options_round_trip_through_their_flags(options: Options, data, text: str, workdir: Path) -> None:
    values = {name: data.draw(rule.valid, label=name) for name, rule in options.rules.items()}
    free = {f.name for f in dataclasses.fields(options.cls) if f.type in ("str", "str | None")} - set(options.rules)
    values |= {data.draw(st.sampled_from(sorted(free)), label="text field"): text} if free else {}
    with pytest.MonkeyPatch.context() as env:
        env.delenv(API_KEY_ENV, raising=False)
        try:
            built = options.build(workdir, **values)
        except UserError:  # free text that breaks a rule across fields (--validation-split = --split)
            return
        assert parse(options.cls, argv_of(built)) == built


@pytest.mark.parametrize("cls", FLAG_CLASSES, ids=lambda c: c.__name__)
@given(st.lists(st.text(max_size=10) | INTS.map(str) | FLOATS.map(str), max_size=6), st.data())
def test_any_argv_gives_options_or_an_argparse_error(cls: type, tokens: list[str], data: st.DataObject) -> None:
    """Flags of the class interleaved with arbitrary values: the options, or exit status 2 (0 for --help) with a
    message; a refusal by the options' own checks names a flag."""
    flags = [flag(f.name) for f in dataclasses.fields(cls)]
    argv = REQUIRED_ARGV[cls] + [t for token in tokens for t in (data.draw(st.sampled_from(flags)), token)]
    parser, errors = parser_for(cls), io.StringIO()
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
        try:
            args = parser.parse_args(argv)
        except SystemExit as exit_:
            assert exit_.code in (0, 2)
            return
        try:
            assert isinstance(parse_options(parser, args, cls), cls)
        except SystemExit as exit_:
            assert exit_.code == 2 and "--" in errors.getvalue().partition("error:")[2], errors.getvalue()


# -- names: the store, the registry, the Hub ------------------------------------------------------------------------

# separators and dots other than '/' and '.' (fullwidth, division, fraction; leaders), fullwidth a, dotless i, long s,
# the Kelvin sign: each lowercases or normalises (NFKC) to an ASCII name character
LOOKALIKES = ["..", ".", "", "~", "\\", "\x00", "\n", "\uff0f", "\u2215", "\u2044", "\uff0e", "\u2025", "\u2024",
              "\uff41", "\uff21", "\u0131", "\u017f", "\u212a", "\u00e9"]  # fmt: skip
NAMES = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,5}", fullmatch=True)
SEGMENTS = st.sampled_from(LOOKALIKES) | NAMES | st.text(max_size=4)
HOSTILE_NAMES = st.lists(SEGMENTS, min_size=1, max_size=4).map("/".join) | SEGMENTS.map(lambda s: "/" + s)


@given(name=HOSTILE_NAMES | st.text())
@example(name="asr/../../etc")
@example(name="/etc/passwd")
@example(name="asr\\..\\x")
def test_store_names_never_leave_the_store(name: str, workdir: Path) -> None:
    root = workdir / "store"
    try:
        path = adapter_path(name, root)
    except UserError:
        return
    assert path.resolve().is_relative_to(root.resolve()) and path.resolve() != root.resolve()
    assert path.relative_to(root).parts == tuple(name.split("/"))
    assert all(part not in ("", ".", "..") for part in name.split("/")) and name.isascii()


@given(name=HOSTILE_NAMES)
@example(name="asr/x\n")
def test_store_names_hold_only_name_characters(name: str, workdir: Path) -> None:
    try:
        adapter_path(name, workdir / "store")
    except UserError:
        return
    assert re.fullmatch(r"[a-z0-9][a-z0-9_.-]*(/[a-z0-9][a-z0-9_.-]*)*", name)


@given(name=HOSTILE_NAMES)
@example(name="/")
@example(name="")
def test_resolving_any_name_in_an_empty_store_is_a_user_error(name: str, workdir: Path) -> None:
    with pytest.raises(UserError):
        resolve_adapter(name, workdir / "store")


REGISTRY_KEYS = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,8}", fullmatch=True)


@given(st.lists(REGISTRY_KEYS | st.text(max_size=6), max_size=5), st.text(max_size=6) | REGISTRY_KEYS)
@example(["asr\n"], "asr")
def test_registry_keys_and_lookups(keys: list[str], lookup: str) -> None:
    registry: Registry[str] = Registry("thing")
    for key in keys:
        if re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", key) and key not in registry:
            assert registry.register(key, key) == key
        else:
            with pytest.raises(ValueError, match="thing"):
                registry.register(key, key)
    assert registry.names() == sorted(set(k for k in keys if re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", k)))
    if lookup.lower() in registry.names():
        assert registry.get(lookup) == lookup.lower() and lookup in registry
    else:
        with pytest.raises(UnknownNameError) as caught:
            registry.get(lookup)
        assert isinstance(caught.value, UserError) and all(k in str(caught.value) for k in registry.names())
        assert lookup not in registry


@given(st.none() | st.integers() | st.floats() | st.binary() | st.lists(st.text()))
def test_registry_membership_of_any_object(thing: Any) -> None:
    registry: Registry[int] = Registry("thing")
    registry.register("asr", 1)
    assert thing not in registry


HUB_PART = st.from_regex(r"[A-Za-z0-9]+([-_.][A-Za-z0-9]+){0,3}", fullmatch=True).filter(lambda p: len(p) <= 96)


@given(HUB_PART, HUB_PART)
def test_hub_repo_ids_round_trip(owner: str, name: str) -> None:
    assume(not name.endswith(".git"))
    value = f"{owner}/{name}"
    assert check_repo_id(value) == value == repo_id(value) == repo_id("hf://" + value)


@given(st.text(max_size=12) | st.tuples(HUB_PART, st.sampled_from([*LOOKALIKES, "/", "--", ".git", " "])).map("".join))
def test_hub_repo_ids_are_ascii_owner_slash_name(value: str) -> None:
    try:
        accepted = check_repo_id(value)
    except UserError as error:
        assert repr(value) in str(error)
        with pytest.raises(argparse.ArgumentTypeError):
            repo_id(value)
        return
    assert accepted == value and accepted.count("/") == 1
    for part in accepted.split("/"):
        assert re.fullmatch(r"[A-Za-z0-9_.-]{1,96}", part) and part[0] not in "-." and part[-1] not in "-."
    assert "--" not in accepted and ".." not in accepted and not accepted.endswith(".git")


@given(st.from_regex(r"[a-z0-9][a-z0-9.+-]*", fullmatch=True) | st.text(max_size=10))
@example("apache-2.0\n")
def test_license_ids(value: str) -> None:
    if re.fullmatch(r"[a-z0-9][a-z0-9.+-]*", value):
        assert license_id(value) == value
    else:
        with pytest.raises(argparse.ArgumentTypeError, match="license"):
            license_id(value)


# -- the Whisper window ---------------------------------------------------------------------------------------------


def whisper_like(positions: int) -> Any:
    """What `check_window` reads of a Whisper model: its encoder's positional table."""
    return SimpleNamespace(model=SimpleNamespace(encoder=SimpleNamespace(
        embed_positions=SimpleNamespace(num_embeddings=positions))))  # fmt: skip


@given(st.integers(1, 3000), st.data())
def test_window_of_whole_positions_up_to_the_full_one(positions: int, data: st.DataObject) -> None:
    window = data.draw(st.integers(1, positions)) / POSITIONS_PER_SECOND
    check_window(window, whisper_like(positions))


@given(st.integers(1, 3000), FLOATS)
def test_window_check_refuses_the_rest_naming_the_flag(positions: int, seconds: float) -> None:
    full = positions / POSITIONS_PER_SECOND
    steps = seconds * POSITIONS_PER_SECOND
    if 0 < seconds <= full and abs(steps - round(steps)) <= 1e-6:
        check_window(seconds, whisper_like(positions))
    else:
        assert_refused(lambda: check_window(seconds, whisper_like(positions)), ["window_seconds"])
    assert_refused(lambda: check_window(seconds, torch.nn.Linear(1, 1)), ["window_seconds"])


# -- the text normaliser --------------------------------------------------------------------------------------------


@given(st.text())
@example("\x00\u202e\ufeff\U0001f600 \u00bd \u00b2 \ufb01 \u210c")
def test_normalizer_never_raises_and_writes_lowercase_words(text: str) -> None:
    normalized = normalize_english(text)
    assert normalized == normalized.strip() and "  " not in normalized and normalized == normalized.lower()
    assert all(c in " '" or unicodedata.category(c)[0] in "LN" for c in normalized), normalized
    assert not re.search(r"(?<!\w)'|'(?!\w)", normalized), normalized


@given(st.text(string.printable))
def test_normalizer_ignores_case(text: str) -> None:
    assert normalize_english(text.upper()) == normalize_english(text) == normalize_english(text.lower())


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [("Café", "cafe"), ("Straße", "strasse"), ("søster", "soster"), ("Ærø", "aero"), ("Łódź", "lodz"),
     ("þorn", "thorn"), ("naïve façade", "naive facade")],
)  # fmt: skip
def test_normalizer_transliterates_accented_latin(raw: str, normalized: str) -> None:
    assert normalize_english(raw) == normalized


def _letter_after_nfkd(c: str) -> bool:
    """Not a mark dressed as a letter: Greek's ypogegrammeni (U+037A) and Arabic's isolated harakat (U+FC5E-U+FC63,
    U+FE70-U+FE7E) are letters whose compatibility decomposition is a space and combining marks, which vanish."""
    return any(unicodedata.category(d)[0] == "L" for d in unicodedata.normalize("NFKD", c))


LETTERS = st.characters(categories=("Lu", "Ll", "Lo"), min_codepoint=0x80).filter(_letter_after_nfkd)
WORDS_OF_ANY_SCRIPT = st.text(LETTERS, min_size=1, max_size=6)


@given(WORDS_OF_ANY_SCRIPT)
@example("привет")
@example("日本語")
@example("مرحبا")
@example("Ελλάδα")
@example("\u0131")  # dotless i
@example("\u0127\u014b\u0259")  # h-bar, eng, schwa
def test_normalizer_keeps_letters_of_every_script(word: str) -> None:
    """Letters outside a-z stay (speechpeft-en-2 dropped them, so "a привет b" matched "a b")."""
    assert normalize_english(f"a {word} b") != "a b"


@given(st.text())
@example("one 1")
@example("o one")
@example("O%")
@example("one ж one")
@pytest.mark.xfail(strict=True, reason="Whisper's number step (rule 0) is not idempotent: its output is not its own "
                   "fixed point ('one 1' -> 'one one' -> '11', 'o one' -> '01' -> 'one'), and rule 3 drops the %, $, "
                   "¢, £ and € it read as context ('O%' -> 'o' -> '0'). Scores apply the normaliser once to each "
                   "side, as Whisper-normalised WER is computed elsewhere; iterating to a fixed point would move "
                   "English scores away from those")  # fmt: skip
def test_normalizer_is_idempotent(text: str) -> None:
    once = normalize_english(text)
    assert normalize_english(once) == once
