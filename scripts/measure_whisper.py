"""Score any exported Whisper-architecture model on a corpus's test split, without shipping it.

    .venv/bin/python scripts/measure_whisper.py runs/tiny-whisper/model --corpus data/pretrain-corpus-20h

Prints the same WER / CER table `speechpeft backbones ship tiny-whisper` writes into a card (fp32,
greedy), as JSON: for comparing a run's stages, or a run with the shipped backbone, on one split.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from speechpeft.backbones.pretrain.card import measure_whisper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="an exported model directory (a run's model/)")
    parser.add_argument("--corpus", type=Path, required=True, help="corpus with a test split")
    args = parser.parse_args()
    if not (args.model / "config.json").exists():
        parser.error(f"{args.model} has no config.json: pass an exported model dir, e.g. runs/tiny-whisper/model")
    if not (args.corpus / "dataset_dict.json").exists():
        parser.error(f"{args.corpus} is not a corpus: build one with `speechpeft data synth` (or make whisper-corpus)")
    scores = measure_whisper(args.model, args.corpus)["scores"]
    print(json.dumps({"model": str(args.model), "corpus": str(args.corpus), "scores": scores}, indent=1))


if __name__ == "__main__":
    main()
