"""Time `speechpeft data synth` on this machine: utterances per second and audio hours per hour.

.venv/bin/python benchmarks/synth_speed.py [--utterances 500] [--jobs N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from speechpeft.tasks.corpus.build import build_corpus
from speechpeft.tasks.corpus.options import SynthOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utterances", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=os.cpu_count())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        options = SynthOptions(out=Path(tmp) / "corpus", utterances=args.utterances, jobs=args.jobs)
        build_corpus(options, progress=False)
        seconds = time.perf_counter() - started
        facts = json.loads((Path(tmp) / "corpus" / "synth.json").read_text())
    hours = sum(split["hours"] for split in facts["splits"].values())
    voices = {v for split in facts["splits"].values() for v in split["voices"]}
    engines = {e for split in facts["splits"].values() for e in split["engines"]}
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, jobs={args.jobs}")
    print(f"{args.utterances} utterances, {hours:.3f} h of audio, {len(engines)} engines, {len(voices)} voices")
    speed = f"{args.utterances / seconds:.1f} utterances/s, {hours * 3600 / seconds:.0f}x real time"
    print(f"wall time {seconds:.1f} s: {speed}")


if __name__ == "__main__":
    main()
