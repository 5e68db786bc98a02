"""The commands the README, the Makefile and the model cards print, read back as the argv the CLI would get.

A command is a `speechpeft ...` line (or `... -m speechpeft.cli ...`) of a shell code block, continuation lines
joined, a leading `$ ` prompt, `NAME=value` environment prefixes and the trailing comment left out; in a model
card also a `speechpeft ...` code span ("Measured by `speechpeft backbones remeasure ...`"). README's code spans
are synopses (`speechpeft adapters list | show NAME`): `synopsis_problems` checks the commands and flags they name.
"""

from __future__ import annotations

import argparse
import functools
import io
import itertools
import re
import shlex
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MAKEFILE = REPO / "Makefile"
BUILTIN_CARDS = tuple(sorted((REPO / "backbones" / "weights").glob("*/README.md")))  # written by `backbones ship`
IMPORTED_CARDS = tuple(sorted((REPO / "backbones" / "cards").glob("*.md")))  # written by `backbones card`
CARDS = BUILTIN_CARDS + IMPORTED_CARDS
SHELL_LANGUAGES = ("", "bash", "sh", "shell", "console")  # a fence's info string; other blocks hold no commands
FENCE = re.compile(r"\s*(```|~~~)\s*([\w+-]*)")
CODE_SPAN = re.compile(r"`([^`]+)`")
ENVIRONMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")  # `HF_HUB_OFFLINE=1 speechpeft ...`
PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9_]*(/[A-Z][A-Z0-9_]*)?|\.\.\.|…")  # NAME, OWNER/NAME, ...
SHELL_OPERATORS = ("&&", "||", ";", "|", "&")
SHELL_KEYWORDS = ("do", "then", "else", "!")  # words before a command in a loop or an `if`


@dataclass(frozen=True)
class Printed:
    """One command as a document prints it."""

    where: str  # FILE:LINE in the repository, or the make target that runs it
    text: str  # as printed, continuation lines joined
    argv: tuple[str, ...]  # what `speechpeft` gets: the words after it (or after `-m speechpeft.cli`)
    comment: str = ""  # the shell comment after it

    def __str__(self) -> str:
        return f"{self.where}: {self.text}"


def relative(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def markdown_lines(path: Path) -> Iterator[tuple[int, str, str | None]]:
    """(line number, line, language of the fenced block it is in, None outside one) of a Markdown file; the fence
    lines themselves are left out."""
    language = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fence = FENCE.fullmatch(line.rstrip())
        if fence and language is None:
            language = fence.group(2).lower()
        elif fence and not fence.group(2):
            language = None
        else:
            yield number, line, language


def shell_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(first line number, logical line) of the shell code blocks of a Markdown file, `\\` continuations joined."""
    pending, start = "", 0
    for number, line, language in markdown_lines(path):
        if language not in SHELL_LANGUAGES:
            pending = ""
            continue
        start = start if pending else number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1].strip() + " "
            continue
        yield start, pending + line.strip()
        pending = ""


def code_spans(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of the inline code spans outside fenced blocks; `\\|` (a pipe in a table) read as `|`."""
    for number, line, language in markdown_lines(path):
        if language is None:
            yield from ((number, span.replace("\\|", "|")) for span in CODE_SPAN.findall(line))


def split_comment(line: str) -> tuple[str, str]:
    """A shell line's command and its comment: from the first `#` that starts a word outside quotes."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index].rstrip(), line[index:]
    return line, ""


def speechpeft_argv(words: list[str]) -> tuple[str, ...] | None:
    """The CLI's argv in a shell command's words, None when the command does not run speechpeft."""
    while words and (ENVIRONMENT.match(words[0]) or words[0] in SHELL_KEYWORDS):
        words = words[1:]
    if words and words[0].rsplit("/", 1)[-1] == "speechpeft":  # also .venv/bin/speechpeft
        return tuple(words[1:])
    for index in range(len(words) - 1):
        if words[index : index + 2] == ["-m", "speechpeft.cli"]:  # python -m, accelerate launch -m
            return tuple(words[index + 2 :])
    return None


def document_commands(path: Path, spans: bool) -> list[Printed]:
    """The speechpeft commands of a Markdown file's shell blocks, and with `spans` of its code spans too."""
    lines = [*shell_lines(path), *(code_spans(path) if spans else ())]
    found = []
    for number, line in sorted(lines):
        command, comment = split_comment(line.removeprefix("$ "))
        if "speechpeft" not in command:
            continue
        argv = speechpeft_argv(shlex.split(command))
        if argv is not None:
            found.append(Printed(f"{relative(path)}:{number}", line, argv, comment))
    return found


def printed_commands() -> list[Printed]:
    """Every command the README's shell blocks and the model cards (blocks and code spans) print."""
    return [*document_commands(README, spans=False), *(c for card in CARDS for c in document_commands(card, True))]


def reproduce_commands(card: Path) -> list[Printed]:
    """The commands of a built-in backbone card's "Reproduce:" block (up to its next heading), in order."""
    lines = card.read_text().splitlines()
    start = lines.index("Reproduce:") + 1
    end = next(n for n, line in enumerate(lines[start:], start + 1) if line.startswith("#"))
    return [c for c in document_commands(card, spans=False) if start < int(c.where.rsplit(":", 1)[1]) < end]


def synopses(path: Path) -> list[Printed]:
    """The `speechpeft ...` code spans of a Markdown file, as written (they may name placeholders and choices)."""
    return [Printed(f"{relative(path)}:{number}", span, tuple(span.split()[1:]))
            for number, span in code_spans(path) if span.startswith("speechpeft ")]  # fmt: skip


def make_mentions(path: Path) -> list[tuple[str, str]]:
    """(FILE:LINE, target) for each `make TARGET` a Markdown file names, in code spans and shell blocks."""
    found = []
    for number, line in sorted([*shell_lines(path), *code_spans(path)]):
        words = split_comment(line)[0].split()
        while words and ENVIRONMENT.match(words[0]):
            words = words[1:]
        if words[:1] == ["make"]:
            found += [(f"{relative(path)}:{number}", w) for w in words[1:] if not w.startswith("-") and "=" not in w]
    return found


def makefile_targets() -> set[str]:
    """The targets the Makefile defines (`name:` rules; variables and pattern rules left out)."""
    rule = re.compile(r"([A-Za-z0-9_.-][A-Za-z0-9_. -]*?)\s*:(?!=)")
    rules = (rule.match(line) for line in MAKEFILE.read_text().splitlines() if not line.startswith(("\t", "#")))
    return {name for match in rules if match for name in match.group(1).split()} - {".PHONY"}


def make_dry_run(target: str) -> list[str]:
    """The shell lines `make -n TARGET` would run, continuations joined (nothing is run)."""
    result = subprocess.run(["make", "-n", "--no-print-directory", target], cwd=REPO, capture_output=True,
                            text=True, check=True, timeout=60)  # fmt: skip
    return result.stdout.replace("\\\n", " ").splitlines()


def makefile_commands() -> tuple[list[Printed], list[str]]:
    """The speechpeft commands each Makefile target runs, as `make -n` expands them, and those it cannot check:
    ones naming a shell variable (the `cards` loop's `$backbone`)."""
    found, unexpanded = [], []
    for target in sorted(makefile_targets()):
        for line in make_dry_run(target):
            for words in shell_commands(line):
                argv = speechpeft_argv(words)
                if argv is None:
                    continue
                if any("$" in word for word in argv):
                    unexpanded.append(f"make {target}: {' '.join(argv)}")
                else:
                    found.append(Printed(f"make {target}", shlex.join(words), argv))
    return found, unexpanded


def shell_commands(line: str) -> Iterator[list[str]]:
    """The words of each simple command of a shell line (split at `&&`, `||`, `;` and pipes)."""
    lexer = shlex.shlex(split_comment(line)[0], posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words: list[str] = []
    for word in lexer:
        if word in SHELL_OPERATORS:
            yield words
            words = []
        else:
            words.append(word)
    yield words


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


def named_parsers(parser: argparse.ArgumentParser, words: list[str]) -> list[argparse.ArgumentParser]:
    """The (sub)command parsers a synopsis names: one, or one per alternative (`adapters list | show NAME`)."""
    chosen, parent, alternative = [parser], None, False
    for word in words:
        if word.startswith("-"):
            break
        if alternative and parent is not None and word in subcommands(parent):
            chosen.append(subcommands(parent)[word])
        elif len(chosen) == 1 and word in subcommands(chosen[0]):
            parent, chosen = chosen[0], [subcommands(chosen[0])[word]]
        alternative = word == "|"
    return chosen


def synopsis_problems(parser: argparse.ArgumentParser, words: list[str]) -> list[str]:
    """What a synopsis's words (after `speechpeft`) name that the CLI lacks: a flag one of the commands it names
    does not take, or a value outside a positional's choices (`backbones ship tiny-whisper | tiny-speecht5`)."""
    words = [w.strip("[](),.;:") if w.startswith(("[", "-")) else w for w in words]
    chosen, problems = named_parsers(parser, words), []
    for command in chosen:
        known = {option for action in command._actions for option in action.option_strings}
        problems += [f"{command.prog} has no {w}" for w in words if w.startswith("-") and w.split("=")[0] not in known]
        positionals = [a for a in command._actions if not a.option_strings]
        choices = [a.choices for a in positionals if a.choices and not isinstance(a, argparse._SubParsersAction)]
        values = words[len(command.prog.split()) - 1 :]
        values = values[: next((i for i, w in enumerate(values) if w.startswith("-")), len(values))]
        subs = subcommands(command)
        if subs and values and values[0] not in subs and not PLACEHOLDER.fullmatch(values[0]):
            problems.append(f"{command.prog} has no command {values[0]}")
        for allowed in choices[:1]:
            problems += [f"{command.prog} {w}: not one of {sorted(allowed)}" for w in values
                         if w != "|" and not PLACEHOLDER.fullmatch(w) and w not in allowed]  # fmt: skip
    return sorted(set(problems))


def flag_values(argv: tuple[str, ...] | list[str], flags: tuple[str, ...]) -> list[str]:
    """The values an argv gives the flags `flags` (`--out DIR` or `--out=DIR`)."""
    pairs = [w.split("=", 1) for w in argv if w.startswith("--") and "=" in w]
    pairs += [list(pair) for pair in itertools.pairwise(argv)]
    return [value for name, value in pairs if name in flags]


def committed_files(prefix: str, into: Path) -> list[str]:
    """Write the files the repository's HEAD commit holds under `prefix` into `into`, as a fresh clone has them."""
    git = functools.partial(subprocess.run, cwd=REPO, capture_output=True, check=True, timeout=60)
    if not git(["git", "ls-tree", "--name-only", "HEAD", prefix]).stdout.strip():
        return []
    archive = git(["git", "archive", "--format=tar", "HEAD", prefix]).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
        return [m.name for m in tar.getmembers() if m.isfile()]
