"""Does the AdapterBank reproduce `speechpeft eval`? The leaderboard's trained ASR adapters, all resident in one bank,
transcribe the test clips in mixed batches (a different method on each clip, round robin); each transcript is
compared with the one the leaderboard's cell wrote for that clip (`predictions.jsonl`, from `load_trained` and
the task's own batches).

    python benchmarks/bank_agreement.py [--cells runs/leaderboard/cells/asr/openai--whisper-tiny.en] [--utterances 48]

Needs a finished `make leaderboard` (or any grid with ASR cells). Prints the agreement and every difference.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from speechpeft.adapters.bank import AdapterBank
from speechpeft.tasks import data

BATCH = 8  # clips per mixed batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=Path, default=Path("runs/leaderboard/cells/asr/openai--whisper-tiny.en"))
    parser.add_argument("--utterances", type=int, default=48, help="test clips to transcribe (from the first)")
    options = parser.parse_args()
    adapters = sorted(p for p in options.cells.glob("*/seed-0/adapter") if _bankable(p))
    methods = [p.parent.parent.name for p in adapters]
    bank = AdapterBank()
    for method, adapter in zip(methods, adapters, strict=True):
        bank.load(adapter, name=f"asr/{method}")
    expected = {m: _predictions(a.parent / "predictions.jsonl") for m, a in zip(methods, adapters, strict=True)}
    record = json.loads((adapters[0] / "speechpeft.json").read_text())
    split = data.pick_split(data.load_speech_dataset(record["data"]["dataset"]), "test")
    rows = split.select(range(min(options.utterances, len(split))))
    agree, started = 0, time.perf_counter()
    for start in range(0, len(rows), BATCH):
        chunk = rows.select(range(start, min(start + BATCH, len(rows))))
        names = [methods[(start + i) % len(methods)] for i in range(len(chunk))]
        audio = [row["audio"].get_all_samples().data.mean(0).numpy() for row in chunk]
        got = bank.transcribe(audio, adapter=[f"asr/{m}" for m in names])
        for offset, (method, text) in enumerate(zip(names, got, strict=True)):
            item = expected[method][start + offset]
            assert item["reference"] == chunk[offset]["text"], "predictions.jsonl is not in the split's order"
            agree += text == item["hypothesis"]
            if text != item["hypothesis"]:
                print(f"differs: {method} clip {start + offset}: bank {text!r}, eval {item['hypothesis']!r}")
    print(f"{agree}/{len(rows)} mixed-batch transcripts equal eval's ({', '.join(methods)}), "
          f"{time.perf_counter() - started:.1f} s")  # fmt: skip


def _predictions(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open()]


def _bankable(adapter: Path) -> bool:
    return json.loads((adapter / "speechpeft.json").read_text())["method"] != "full"  # a whole model, not an adapter


if __name__ == "__main__":
    main()
