"""Hot-swapping LoRA adapters on whisper-tiny.en: plain PEFT against our AdapterBank, side by side in one run.

    .venv/bin/python benchmarks/hotswap.py [--adapters 32] [--rank 16] [--repeats 5] [--max-new-tokens 40]
        [--corpus data/corpus] [--work DIR] [--requests 128] [--concurrency 8] [--max-wait-ms MS]
        [--no-server]
        [--out benchmarks/results/hotswap.json]

`--adapters` LoRA adapters with random weights (`adapters.random_init`: rank r, alpha 2r, on every attention and
MLP linear: q/k/v/out_proj, fc1, fc2) on the real whisper-tiny.en, fp32 on the CPU; 8 spoken sentences of the
corpus's test split as the batch. For PEFT and for the bank (each on its own freshly loaded backbone):

1. switch latency between resident adapters, p50/p99 over `--switches` switches, each to another adapter than
   the last: PEFT `set_adapter(name)`; bank: entering `bank.route([name])`.
2. cold load of each adapter in turn (the files are in the page cache for both): PEFT `load_adapter` (the 1st
   is `PeftModel.from_pretrained`); bank `load` (its backbone loaded before, not counted).
3. utterances/second for the batch of 8 clips, greedy, `--max-new-tokens` for every call: (a) 8 adapters in one
   batch, (b) the batch on one adapter, (c) swap per request: 8 batch-of-1 calls, each after switching adapter.
   Plus the backbone alone through the bank at batch 8 and 8 x 1: the ceiling of what batching can gain here.
   Median of `--repeats` rounds after one warm-up round; each round runs every condition of both, so a change
   in the machine's load falls on both alike. Correctness: each clip's tokens in (a) against (c), its adapter's
   solo output, and PEFT's against the bank's.
4. `speechpeft serve` over a store of the adapters (all pinned), on 127.0.0.1: `--requests` transcriptions,
   `--concurrency` at a time, each naming a random adapter: requests/second and latency p50/p95.

Random adapters move whisper far from speech: most outputs are babble that runs to the cap, some stop early. A
batch decodes until its longest row stops, a batch of 1 until its own does (the JSON's `text_tokens` says how many
each condition produced). The issue's targets for the bank: 32nd load <= 2nd; (a) >= 0.8 x (b); (a) >= 3 x (c).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import datasets
import numpy as np
import soundfile as sf
import torch

from speechpeft.adapter_dir import package_versions
from speechpeft.backbones import load_frozen
from speechpeft.backbones.imported_card import cpu_model, git_commit
from speechpeft.tasks import asr as _asr  # noqa: F401  (its log filter drops transformers' per-call generate warnings)
from speechpeft.tasks.base import decode_audio
from speechpeft.tasks.features import acoustic_inputs

TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")  # every attention and MLP linear
BATCH = 8  # clips per batch
SAMPLE_RATE = 16_000  # Hz
MIXED_OVER_ONE, MIXED_OVER_SWAP = 0.8, 3.0  # the targets for the bank: (a)/(b) and (a)/(c)
STORE_GROUP = "hotswap"  # the adapters' store names: hotswap/lora-00 ...
SERVER_START_SECONDS = 300  # the server must answer /health within this
REQUEST_SECONDS = 300  # one request's limit; the whole load is bounded by requests x this / concurrency

Rows = list[list[int]]  # text token ids per clip


@dataclass(frozen=True)
class Clips:
    """The batch: 8 spoken sentences, as Whisper's log-mel inputs and as audio."""

    features: torch.Tensor  # (8, 80 mel bins, 3000 frames): Whisper's 30 s window
    audio: list[np.ndarray]  # 16 kHz mono float32
    texts: list[str]

    def batch(self, index: int | None = None) -> dict[str, torch.Tensor]:
        """`generate` inputs for all clips, or for clip `index` alone."""
        features = self.features if index is None else self.features[index : index + 1]
        return {"input_features": features, "attention_mask": features.new_ones(features.shape[::2], dtype=torch.long)}

    @property
    def seconds(self) -> float:
        return sum(len(a) for a in self.audio) / SAMPLE_RATE


def speech_clips(corpus: Path, extractor) -> Clips:
    """The first 8 sentences of the corpus's test split (spoken by the corpus's engines)."""
    if not (corpus / "test").exists():
        raise SystemExit(f"--corpus {corpus}: no test split there; build one with "
                         f"`speechpeft data synth --out {corpus}` or pass --corpus DIR")  # fmt: skip
    rows = datasets.load_from_disk(str(corpus))["test"]
    rows = rows.filter(lambda kind: kind == "sentence", input_columns="kind").select(range(BATCH))
    rows = rows.cast_column("audio", datasets.Audio(sampling_rate=SAMPLE_RATE))
    audio = decode_audio(list(rows))
    return Clips(acoustic_inputs(extractor, audio)["input_features"], audio, list(rows["text"]))


def make_adapters(backbone_id: str, store: Path, count: int, rank: int) -> tuple[list[Path], list[str]]:
    """`count` random LoRA adapters (rank `rank`, alpha 2 x rank) in `store`, reused when already there; their
    directories and their short names (lora-00 ...)."""
    from speechpeft.adapters.catalog import AdapterOptions
    from speechpeft.adapters.random_init import save_random_adapters

    names = [f"lora-{i:02d}" for i in range(count)]
    dirs = [store / STORE_GROUP / f"r{rank}" / name for name in names]
    if not all((d / "speechpeft.json").exists() for d in dirs):
        backbone = load_frozen(backbone_id, "asr", "fp32", device="cpu")  # modified: not used again
        options = AdapterOptions(rank=rank, alpha=2 * rank, target_modules=TARGET_MODULES)
        save_random_adapters(backbone, "lora", dirs, task="asr", options=options, backbone_name=backbone_id)
    return dirs, names


def switch_sequence(names: list[str], switches: int, seed: int = 0) -> list[str]:
    """`switches` adapter names, each other than the one before it (the first other than `names[0]`)."""
    rng, current, sequence = random.Random(seed), names[0], []
    for _ in range(switches):
        current = rng.choice([n for n in names if n != current])
        sequence.append(current)
    return sequence


def seconds_of(function: Callable[[], object]) -> float:
    """Wall time of `function()`, in seconds."""
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def quantiles_ms(seconds: list[float]) -> dict[str, float]:
    """p50, p95 and p99 of `seconds`, in milliseconds."""
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return {"p50_ms": 1000 * statistics.median(seconds), "p95_ms": 1000 * cuts[94], "p99_ms": 1000 * cuts[98]}


def token_rows(sequences: torch.Tensor, special: set[int]) -> Rows:
    """Each generated sequence's text tokens (decoder prompt, end token and padding dropped)."""
    return [[t for t in row.tolist() if t not in special] for row in sequences]


# -- PEFT -------------------------------------------------------------------------------------------------------


def peft_loaded(backbone_id: str, dirs: list[Path], names: list[str]):
    """A fresh backbone with every adapter loaded through PEFT, in order, and each load's seconds."""
    import peft

    backbone = load_frozen(backbone_id, "asr", "fp32", device="cpu")
    model, seconds = None, []
    for directory, name in zip(dirs, names, strict=True):
        started = time.perf_counter()
        if model is None:
            model = peft.PeftModel.from_pretrained(backbone.model, str(directory), adapter_name=name)
        else:
            model.load_adapter(str(directory), adapter_name=name)
        seconds.append(time.perf_counter() - started)
    return model.eval(), seconds


def peft_switches(model, sequence: list[str]) -> list[float]:
    """Seconds of `model.set_adapter(name)` for each name of `sequence`."""
    return [seconds_of(lambda name=name: model.set_adapter(name)) for name in sequence]


def peft_conditions(model, clips: Clips, names: list[str], cap: int, special: set[int]) -> dict[str, Callable]:
    """The throughput conditions (a) mixed, (b) one adapter, (c) swap per request, each returning token rows."""
    mixed = names[:BATCH]

    def generate(index: int | None = None, **extra) -> Rows:
        return token_rows(model.generate(**clips.batch(index), max_new_tokens=cap, **extra), special)

    def one() -> Rows:
        model.set_adapter(mixed[0])
        return generate()

    def swap() -> Rows:
        rows = []
        for index, name in enumerate(mixed):
            model.set_adapter(name)
            rows += generate(index)
        return rows

    return {"mixed": lambda: generate(adapter_names=mixed), "one": one, "swap": swap}


# -- the bank ---------------------------------------------------------------------------------------------------


def bank_loaded(backbone_id: str, dirs: list[Path], names: list[str], store: Path):
    """A bank with its backbone loaded first (timed apart), then every adapter loaded in order, and each
    adapter load's seconds."""
    from speechpeft.adapters.bank import BASE, AdapterBank

    bank = AdapterBank(store, device="cpu", precision="fp32", default_backbone=backbone_id)
    started = time.perf_counter()
    with bank.route([BASE]):
        pass
    backbone_seconds = time.perf_counter() - started
    seconds = [seconds_of(lambda d=d, n=n: bank.load(str(d), name=n)) for d, n in zip(dirs, names, strict=True)]
    return bank, backbone_seconds, seconds


def bank_switches(bank, sequence: list[str]) -> tuple[list[float], list[float]]:
    """Seconds to enter `bank.route([name])` for each name of `sequence`, and to enter and leave it."""
    entered, whole = [], []
    for name in sequence:
        started = time.perf_counter()
        with bank.route([name]):
            entered.append(time.perf_counter() - started)
        whole.append(time.perf_counter() - started)
    return entered, whole


def bank_conditions(bank, clips: Clips, names: list[str], cap: int, special: set[int]) -> dict[str, Callable]:
    """(a), (b), (c) as for PEFT, through `bank.route`; the backbone alone at 8 and 8 x 1; `bank.transcribe`."""
    from speechpeft.adapters.bank import BASE

    mixed = names[:BATCH]

    def routed(route: list[str], index: int | None = None) -> Rows:
        with bank.route(route) as model:
            return token_rows(model.generate(**clips.batch(index), max_new_tokens=cap), special)

    def one_by_one(route: list[str]) -> Rows:
        return [row for index, name in enumerate(route) for row in routed([name], index)]

    return {
        "mixed": lambda: routed(mixed), "one": lambda: routed([mixed[0]] * BATCH),
        "swap": lambda: one_by_one(mixed), "base": lambda: routed([BASE] * BATCH),
        "base_one_by_one": lambda: one_by_one([BASE] * BATCH),
        "transcribe": lambda: bank.transcribe(clips.audio, adapter=mixed),
    }  # fmt: skip


# -- both -------------------------------------------------------------------------------------------------------


def timed_rounds(conditions: dict[str, Callable], repeats: int) -> tuple[dict[str, list[float]], dict[str, list]]:
    """Every condition once per round, `repeats` rounds after a warm-up one: the seconds of each timed run, and
    each condition's outputs (of the last round)."""
    from tqdm import tqdm

    seconds: dict[str, list[float]] = {key: [] for key in conditions}
    outputs: dict[str, list] = {}
    for round_ in tqdm(range(repeats + 1), desc="throughput rounds (the first is a warm-up)"):
        for key, run in conditions.items():
            started = time.perf_counter()
            outputs[key] = run()
            if round_:
                seconds[key].append(time.perf_counter() - started)
    return seconds, outputs


def agreement(rows: Rows, reference: Rows) -> dict:
    """How many clips' token rows equal the reference's, and the first differing token of each that does not."""
    differ = {}
    for clip, (row, ref) in enumerate(zip(rows, reference, strict=True)):
        if row != ref:
            pairs = enumerate(zip(row, ref, strict=False))  # rows of unequal length differ where the shorter ends
            differ[clip] = next((i for i, (a, b) in pairs if a != b), min(len(row), len(ref)))
    return {"equal": len(rows) - len(differ), "of": len(rows), "first_differing_token": differ}


def throughput_results(seconds: dict[str, list[float]], outputs: dict[str, list]) -> dict[str, dict]:
    """Utterances/second (8 clips / median seconds) per condition, with its timings and tokens generated."""
    results = {}
    for key, timings in seconds.items():
        tokens = sum(map(len, outputs[key])) if outputs[key] and isinstance(outputs[key][0], list) else None
        results[key] = {"utterances_per_second": BATCH / statistics.median(timings), "seconds": timings,
                        "text_tokens": tokens}  # fmt: skip
    return results


def load_curve(seconds: list[float]) -> dict:
    """A load curve: 2nd and last load, all of them, and the slope of a line through the 2nd..last (ms/adapter)."""
    later = seconds[1:]
    slope = float(np.polyfit(np.arange(len(later)), np.array(later) * 1000, 1)[0]) if len(later) > 1 else 0.0
    return {"second_s": seconds[1], "last_s": seconds[-1], "slope_ms_per_adapter": slope, "each_s": seconds}


# -- the server -------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wav_bytes(clip: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, clip, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


@contextlib.contextmanager
def running_server(store: Path, names: list[str], backbone_id: str, log: Path, extra: list[str]):
    """`speechpeft serve` on 127.0.0.1 over `store` with `names` pinned (and `extra` arguments); yields its base
    URL, stops it after."""
    import httpx

    port = free_port()
    command = [str(Path(sys.executable).with_name("speechpeft")), "serve", "--host", "127.0.0.1", "--port",
               str(port), "--store", str(store), "--backbone", backbone_id, "--precision", "fp32", "--device",
               "cpu", *extra, "--adapters", *names]  # fmt: skip
    with log.open("w") as output:
        server = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + SERVER_START_SECONDS
    try:
        while server.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            time.sleep(1)
        else:
            raise RuntimeError(f"the server did not come up (exit {server.poll()}); its log: {log}")
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


async def request_load(url: str, names: list[str], files: list[bytes], requests: int, concurrency: int) -> dict:
    """`requests` transcriptions, at most `concurrency` in flight, each a random clip on a random adapter;
    the wall seconds of all, and each request's latency (seconds, from sending to the answer)."""
    import httpx

    rng = random.Random(1)
    picks = [(rng.choice(names), rng.randrange(len(files))) for _ in range(requests)]
    gate = asyncio.Semaphore(concurrency)

    async def one(client: httpx.AsyncClient, name: str, clip: int) -> float:
        async with gate:
            started = time.perf_counter()
            answer = await client.post("/v1/audio/transcriptions", data={"model": name},
                                       files={"file": ("clip.wav", files[clip], "audio/wav")})  # fmt: skip
            answer.raise_for_status()
            return time.perf_counter() - started

    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_SECONDS) as client:
        started = time.perf_counter()
        latencies = await asyncio.gather(*(one(client, name, clip) for name, clip in picks))
        return {"wall_s": time.perf_counter() - started, "latencies_s": list(latencies)}


def server_results(store: Path, names: list[str], clips: Clips, args: argparse.Namespace) -> dict:
    """Requests/second and latency quantiles of `speechpeft serve` under the bounded load (after 8 warm-up
    requests, one per adapter of the batch)."""
    store_names = [f"{STORE_GROUP}/r{args.rank}/{name}" for name in names]
    files = [wav_bytes(clip) for clip in clips.audio]
    limit = REQUEST_SECONDS * (args.requests // args.concurrency + 2)
    extra = [] if args.max_wait_ms is None else ["--max-wait-ms", str(args.max_wait_ms)]
    with running_server(store, store_names, args.backbone, args.work / "server.log", extra) as url:
        asyncio.run(asyncio.wait_for(request_load(url, store_names[:BATCH], files, BATCH, BATCH), limit))
        before = batch_totals(url)
        load = asyncio.run(asyncio.wait_for(
            request_load(url, store_names, files, args.requests, args.concurrency), limit))  # fmt: skip
        after = batch_totals(url)
    # the batcher reruns each request of a failed batch alone, and counts every call, the failed one included
    reruns = after[0] - before[0] - args.requests
    gathered = after[1] - before[1] - reruns
    return {"requests": args.requests, "concurrency": args.concurrency, "requests_per_second":
            args.requests / load["wall_s"], **quantiles_ms(load["latencies_s"]), "wall_s": load["wall_s"],
            "batched_calls": gathered, "mean_batch_size": args.requests / max(gathered, 1),
            "requests_rerun_alone": reruns, "serve_arguments": extra}  # fmt: skip


def batch_totals(url: str) -> tuple[float, float]:
    """The server's transcription requests batched so far and its model calls (from /metrics)."""
    import httpx

    totals = {"sum": 0.0, "count": 0.0}
    for line in httpx.get(f"{url}/metrics", timeout=30).text.splitlines():
        for key in totals:
            if line.startswith(f'speechpeft_batch_size_{key}{{operation="transcribe"}}'):
                totals[key] = float(line.rsplit(" ", 1)[1])
    return totals["sum"], totals["count"]


# -- the run ----------------------------------------------------------------------------------------------------


def run_benchmark(args: argparse.Namespace) -> dict:
    """Every measurement of both, in one process; the results as recorded in the JSON."""
    dirs, names = make_adapters(args.backbone, args.work, args.adapters, args.rank)
    peft_model, peft_loads = peft_loaded(args.backbone, dirs, names)
    bank, bank_backbone_s, bank_loads = bank_loaded(args.backbone, dirs, names, args.work)
    processor = load_frozen(args.backbone, "asr", "fp32", device="cpu").processor
    clips, special = speech_clips(args.corpus, processor.feature_extractor), set(processor.tokenizer.all_special_ids)
    sequence = switch_sequence(names, args.switches)
    peft_switch = peft_switches(peft_model, sequence)
    bank_enter, bank_enter_exit = bank_switches(bank, sequence)
    conditions = {f"peft_{k}": v for k, v in peft_conditions(peft_model, clips, names, args.max_new_tokens,
                                                                 special).items()}  # fmt: skip
    conditions |= {f"bank_{k}": v for k, v in bank_conditions(bank, clips, names, args.max_new_tokens,
                                                                  special).items()}  # fmt: skip
    seconds, outputs = timed_rounds(conditions, args.repeats)
    checks = {"peft_mixed_vs_solo": agreement(outputs["peft_mixed"], outputs["peft_swap"]),
              "bank_mixed_vs_solo": agreement(outputs["bank_mixed"], outputs["bank_swap"]),
              "bank_vs_peft_mixed": agreement(outputs["bank_mixed"], outputs["peft_mixed"]),
              "bank_vs_peft_one": agreement(outputs["bank_one"], outputs["peft_one"])}  # fmt: skip
    results = {
        "inputs": {"corpus": str(args.corpus), "split": "test", "kind": "sentence", "texts": clips.texts,
                   "audio_seconds": clips.seconds, "window_seconds": 30, "max_new_tokens": args.max_new_tokens},
        "switch": {"peft_set_adapter": quantiles_ms(peft_switch), "bank_route_enter": quantiles_ms(bank_enter),
                   "bank_route_enter_exit": quantiles_ms(bank_enter_exit), "switches": len(sequence)},
        "cold_load": {"peft": load_curve(peft_loads), "bank": load_curve(bank_loads),
                      "bank_backbone_s": bank_backbone_s},
        "throughput": throughput_results(seconds, outputs), "correctness": checks,
        "transcribe_texts": outputs["bank_transcribe"], "bank_stats": bank.stats(),
    }  # fmt: skip
    del peft_model, bank
    server = Path(__file__).resolve().parents[1] / "speechpeft" / "server.py"
    if args.no_server or not server.exists():
        results["server"] = {"skipped": "--no-server" if args.no_server else f"{server} does not exist"}
    else:
        results["server"] = server_results(args.work, names, clips, args)
    return results


def machine() -> dict:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average_1_5_15_min": list(os.getloadavg())}  # fmt: skip


def verdict(passed: bool) -> str:
    return "PASS" if passed else "MISS"


def table(results: dict) -> str:
    """The side-by-side table (Markdown): PEFT, the bank, the bank's target and whether it is met."""
    switch, load, speed = results["switch"], results["cold_load"], results["throughput"]
    ups = {key: row["utterances_per_second"] for key, row in speed.items()}
    n = len(load["bank"]["each_s"])
    lines = ["| measure | PEFT | bank | bank target |", "|---|---|---|---|"]
    peft_s, bank_s = switch["peft_set_adapter"], switch["bank_route_enter"]
    lines.append(f"| switch between resident adapters, p50 / p99 | {peft_s['p50_ms']:.2f} / {peft_s['p99_ms']:.2f} ms"
                 f" | {bank_s['p50_ms']:.3f} / {bank_s['p99_ms']:.3f} ms | |")  # fmt: skip
    p, b = load["peft"], load["bank"]
    lines.append(f"| cold load, 2nd / last ({n}th) adapter | {1000 * p['second_s']:.0f} / "
                 f"{1000 * p['last_s']:.0f} ms | {1000 * b['second_s']:.0f} / {1000 * b['last_s']:.0f} ms | "
                 f"last <= 2nd: {verdict(b['last_s'] <= b['second_s'])} |")  # fmt: skip
    lines.append(f"| cold load, slope over 2nd..{n}th | {p['slope_ms_per_adapter']:+.1f} ms/adapter | "
                 f"{b['slope_ms_per_adapter']:+.2f} ms/adapter | |")  # fmt: skip
    mixed_one, mixed_swap = ups["bank_mixed"] / ups["bank_one"], ups["bank_mixed"] / ups["bank_swap"]
    lines += [
        f"| (a) 8 adapters in one batch, utt/s | {ups['peft_mixed']:.3f} | {ups['bank_mixed']:.3f} | |",
        f"| (b) one adapter for the batch, utt/s | {ups['peft_one']:.3f} | {ups['bank_one']:.3f} | |",
        f"| (c) swap per request, 8 x batch of 1, utt/s | {ups['peft_swap']:.3f} | {ups['bank_swap']:.3f} | |",
        f"| (a) / (b) | {ups['peft_mixed'] / ups['peft_one']:.2f} | {mixed_one:.2f} | >= {MIXED_OVER_ONE}: "
        f"{verdict(mixed_one >= MIXED_OVER_ONE)} |",
        f"| (a) / (c) | {ups['peft_mixed'] / ups['peft_swap']:.2f} | {mixed_swap:.2f} | >= {MIXED_OVER_SWAP}: "
        f"{verdict(mixed_swap >= MIXED_OVER_SWAP)} |",
        f"| backbone alone, batch of 8 / 8 x 1, utt/s (batching's ceiling) | | {ups['bank_base']:.3f} / "
        f"{ups['bank_base_one_by_one']:.3f} = {ups['bank_base'] / ups['bank_base_one_by_one']:.2f}x | |",
        f"| `bank.transcribe`, 8 adapters (own token caps), utt/s | | {ups['bank_transcribe']:.3f} | |",
    ]  # fmt: skip
    return "\n".join(lines + correctness_lines(results) + server_lines(results))


def correctness_lines(results: dict) -> list[str]:
    checks = results["correctness"]
    solo = "mixed batch = each adapter alone (tokens)"
    return [f"| {solo} | {checks['peft_mixed_vs_solo']['equal']}/{BATCH} | {checks['bank_mixed_vs_solo']['equal']}"
            f"/{BATCH} | all |", f"| bank = PEFT (tokens), (a) / (b) | | {checks['bank_vs_peft_mixed']['equal']}/"
            f"{BATCH} / {checks['bank_vs_peft_one']['equal']}/{BATCH} | |"]  # fmt: skip


def server_lines(results: dict) -> list[str]:
    server = results["server"]
    if "skipped" in server:
        return [f"| server | | left out: {server['skipped']} | |"]
    return [f"| server, {server['requests']} requests at concurrency {server['concurrency']}: req/s, latency "
            f"p50 / p95 | | {server['requests_per_second']:.2f} req/s, {server['p50_ms'] / 1000:.2f} / "
            f"{server['p95_ms'] / 1000:.2f} s; mean batch {server['mean_batch_size']:.1f}, "
            f"{server['requests_rerun_alone']:.0f} rerun alone after a failed batch | |"]  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="openai/whisper-tiny.en")
    parser.add_argument("--adapters", type=int, default=32, help="LoRA adapters to make, load and switch among")
    parser.add_argument("--rank", type=int, default=16, help="LoRA rank (alpha = 2 x rank)")
    parser.add_argument("--repeats", type=int, default=5, help="timed throughput rounds after one warm-up round")
    parser.add_argument("--switches", type=int, default=200, help="timed adapter switches")
    parser.add_argument("--max-new-tokens", type=int, default=40, help="greedy decoding cap, every call (tokens)")
    parser.add_argument("--corpus", type=Path, default=Path("data/corpus"), help="a built corpus (its test split)")
    parser.add_argument("--work", type=Path, help="where the adapters (a store) go; default: a temporary directory")
    parser.add_argument("--requests", type=int, default=128, help="server load: requests in all")
    parser.add_argument("--concurrency", type=int, default=8, help="server load: requests in flight at once")
    parser.add_argument("--max-wait-ms", type=float, help="server: its --max-wait-ms (default: the server's own)")
    parser.add_argument("--no-server", action="store_true", help="leave out the server measurement")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/hotswap.json"))
    args = parser.parse_args(argv)
    if args.adapters < BATCH or min(args.repeats, args.concurrency) < 1 or min(args.requests, args.switches) < 2:
        parser.error(f"--adapters must be at least {BATCH} (the mixed batch), --repeats and --concurrency at least 1, "
                     "--requests and --switches at least 2 (for quantiles)")  # fmt: skip
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started, before, commit = time.perf_counter(), machine(), git_commit()  # the commit the code came from
    with tempfile.TemporaryDirectory() as scratch:
        args.work = args.work or Path(scratch)
        results = run_benchmark(args)
    after = machine()["load_average_1_5_15_min"]
    results = {"command": " ".join(["python", *sys.argv]), "date": datetime.now().isoformat(timespec="seconds"),
               "git_commit": commit, "machine": {**before, "load_average_after": after},
               "versions": package_versions(), "backbone": args.backbone, "adapters": args.adapters,
               "rank": args.rank, "alpha": 2 * args.rank, "target_modules": list(TARGET_MODULES),
               "repeats": args.repeats, "runtime_s": time.perf_counter() - started, **results}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
