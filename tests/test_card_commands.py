"""The commands the README, the Makefile and the model cards print run as written on a fresh clone.

Every printed `speechpeft` command parses with the CLI's own parser and passes its option checks (short of an
input an earlier command of the same document makes); the README's synopses name real commands and flags; each
`make TARGET` it names exists; what a card's commands read under data/ and runs/ is made by an earlier command
of the card or by a make target. The built-in backbones' Reproduce chains run in a short form (slow): fewer
utterances and steps and a tiny model, in a temporary fresh clone, shipping into a temporary weights directory.
"""

import argparse
import contextlib
import functools
import io
import json
from pathlib import Path

import pytest

from speechpeft.backbones.pretrain import card as ship_card
from speechpeft.backbones.pretrain.card_text import fastspeech2_card, speecht5_card, whisper_card
from speechpeft.cli import build_parser, main
from tests.commands import (
    BUILTIN_CARDS,
    CARDS,
    README,
    REPO,
    Printed,
    committed_files,
    document_commands,
    flag_values,
    make_mentions,
    makefile_commands,
    makefile_targets,
    printed_commands,
    relative,
    reproduce_commands,
    synopses,
    synopsis_problems,
)

INPUT_FLAGS = ("--corpus", "--run", "--init-from", "--vocoder-run", "--dataset")
LOCAL_ROOTS = ("data/", "runs/")  # git keeps no corpus or model there: a fresh clone must make them
# The short form of a card's commands: every split of a 40-utterance seed-0 corpus has rows (the test split an
# espeak-en-us sentence for the TTS measurement), 2 steps, and a tiny model: 2 steps of the default sizes and
# their greedy decoding of held-out clips take minutes on 2 cores
SHORT = {"--hours": ("--utterances", "40"), "--steps": ("--steps", "2")}
TINY = {
    "tiny-whisper": ("--d-model", "32", "--layers", "1", "--heads", "2", "--ffn", "64", "--vocab-size", "300",
                     "--batch-size", "4", "--eval-utterances", "2"),
    "tiny-speecht5": ("--hidden", "32", "--layers", "1", "--heads", "2", "--ffn", "64", "--batch-size", "4",
                      "--eval-utterances", "2"),
}  # fmt: skip


def parsed(command: Printed) -> argparse.Namespace:
    """What the CLI's parser makes of the command; the test fails naming where it is printed when it refuses."""
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        try:
            return build_parser().parse_args(list(command.argv))
        except SystemExit:
            pytest.fail(f"{command}\n  does not parse: {errors.getvalue().strip().splitlines()[-1]}")


def option_error(args: argparse.Namespace) -> str | None:
    """The error the command's option checks (run before any command) give, None when they pass."""
    if not hasattr(args, "options"):
        return None
    errors = io.StringIO()
    with contextlib.redirect_stderr(errors):
        try:
            args.options(args)
        except SystemExit:
            return errors.getvalue().strip().splitlines()[-1]
    return None


def comment_flags(comment: str) -> list[str]:
    """The flags a command's comment mentions ("# options: --private, --force")."""
    return [word for word in comment.split() if word.startswith("-")]


def with_earlier_outputs(commands: list[Printed]) -> list[tuple[Printed, tuple[str, ...]]]:
    """Each command with the --out directories of the commands printed before it in the same document."""
    paired, outputs = [], {}
    for command in commands:
        document = command.where.rsplit(":", 1)[0]
        paired.append((command, tuple(outputs.get(document, ()))))
        outputs.setdefault(document, []).extend(flag_values(command.argv, ("--out",)))
    return paired


def check(command: Printed, earlier: tuple[str, ...]) -> list[str]:
    """Why the command does not run as written: parse, option checks, flags its comment names."""
    error = option_error(parsed(command))
    problems = [] if error is None or any(out in error for out in earlier) else [error]
    return problems + synopsis_problems(build_parser(), [*command.argv, *comment_flags(command.comment)])


PRINTED = [pytest.param(*pair, id=pair[0].where) for pair in with_earlier_outputs(printed_commands())]


@pytest.mark.parametrize(("command", "earlier"), PRINTED)
def test_a_printed_command_parses_as_written(command, earlier, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing built yet, as on a fresh clone
    assert not check(command, earlier), str(command)


def test_the_makefile_commands_parse_as_written(tmp_path, monkeypatch):
    commands, unexpanded = makefile_commands()
    # `make cards` loops over `backbones card $backbone`: the cards print the commands it runs
    assert len(commands) >= 10 and all(" backbones card " in line for line in unexpanded)
    monkeypatch.chdir(tmp_path)
    problems = {str(c): check(c, earlier) for c, earlier in with_earlier_outputs(commands)}
    assert not {command: why for command, why in problems.items() if why}


def test_the_readme_synopses_name_real_commands_flags_and_choices():
    parser = build_parser()
    problems = {str(s): synopsis_problems(parser, list(s.argv)) for s in synopses(README)}
    assert len(problems) > 40 and not {synopsis: why for synopsis, why in problems.items() if why}


def test_every_make_target_the_readme_names_exists():
    mentions, targets = make_mentions(README), makefile_targets()
    assert len(mentions) > 20 and not [f"{where}: make {name}" for where, name in mentions if name not in targets]


@functools.cache
def made_by_make() -> tuple[str, ...]:
    """The --out directories of the commands the Makefile's targets run."""
    return tuple(out for command in makefile_commands()[0] for out in flag_values(command.argv, ("--out",)))


@pytest.mark.parametrize("document", [README, *CARDS], ids=relative)
def test_what_a_document_reads_is_made_by_it_or_by_a_make_target(document):
    made, unmade = list(made_by_make()), []
    for command in document_commands(document, spans=True):
        for path in flag_values(command.argv, INPUT_FLAGS):
            if path.startswith(LOCAL_ROOTS) and not {Path(path), *Path(path).parents} & {Path(out) for out in made}:
                unmade.append(f"{command}: nothing before it or in the Makefile makes {path}")
        made += flag_values(command.argv, ("--out",))
    assert not unmade


@pytest.mark.parametrize("card", BUILTIN_CARDS, ids=lambda card: card.parent.name)
def test_a_shipped_card_is_what_ship_writes_from_its_facts(card):
    """So the commands tested here are the card writer's, and a card written again prints the same."""
    writers = {"whisper": whisper_card, "speecht5": speecht5_card, "fastspeech2_conformer": fastspeech2_card}
    family = json.loads((card.parent / "config.json").read_text())["model_type"]
    facts = json.loads((card.parent / ship_card.CARD_FACTS).read_text())
    assert writers[family](card.parent, facts) == card.read_text()


def short_form(argv: tuple[str, ...]) -> list[str]:
    """The command with fewer utterances and steps (`SHORT`) and a tiny model (`TINY`), all else as printed."""
    words, rest = [], iter(argv)
    for word in rest:
        if word in SHORT:
            next(rest)  # the printed value
        words += SHORT.get(word, (word,))
    return [*words, *TINY[argv[2]]] if argv[:2] == ("backbones", "pretrain") else words


def as_run(argv: list[str] | tuple[str, ...]) -> dict:
    """What a command sets, as the CLI parses it (flags in any order)."""
    return {k: v for k, v in vars(build_parser().parse_args(list(argv))).items() if k != "options"}


@pytest.mark.slow
@pytest.mark.parametrize("card", BUILTIN_CARDS, ids=lambda card: card.parent.name)
def test_a_builtin_card_reproduces_on_a_fresh_clone_in_short_form(card, tmp_path, monkeypatch):
    """Synthesis, the pretraining stages and shipping, run in order by the CLI in a fresh clone (with the run
    records git keeps under runs/), train and ship a backbone whose card prints the commands that made it."""
    monkeypatch.chdir(tmp_path)
    committed_files("runs", tmp_path)  # e.g. runs/tiny-whisper/checkpoint/state.json, without weights or model
    weights = tmp_path / "weights"  # not the package's backbones/weights, which the shipped built-ins live in
    package = {path: path.stat().st_mtime_ns for path in (REPO / "backbones" / "weights").rglob("*")}

    ran = [short_form(command.argv) for command in reproduce_commands(card)]
    assert ran[-1][:2] == ["backbones", "ship"] and len(ran) >= 3
    for argv in ran:
        extra = ["--weights-dir", str(weights)] if argv[:2] == ["backbones", "ship"] else []
        assert main([*argv, *extra]) == 0, f"speechpeft {' '.join(argv)} failed (short form of {card})"

    for out in [out for argv in ran if argv[1] == "pretrain" for out in flag_values(argv, ("--out",))]:
        assert json.loads((tmp_path / out / "checkpoint" / "state.json").read_text())["step"] == 2  # record replaced
    shipped = weights / card.parent.name / "README.md"
    assert [as_run(c.argv) for c in reproduce_commands(shipped)] == [as_run(argv) for argv in ran]
    assert {path: path.stat().st_mtime_ns for path in (REPO / "backbones" / "weights").rglob("*")} == package
