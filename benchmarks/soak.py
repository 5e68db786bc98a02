"""A bounded soak of `speechpeft serve` on 127.0.0.1: a fixed request rate for a fixed time, the server's memory
sampled throughout. It stops by itself and binds nothing but loopback.

    .venv/bin/python benchmarks/soak.py [--minutes 10] [--rate 1] [--sample-s 5] [--warmup-minutes 1]
        [--max-growth-mib 32] [--out benchmarks/results/soak.json]

The server is `speechpeft serve` in a subprocess (fp32, CPU, an API key) over a temporary store of seeded random
adapters on the shipped tiny-whisper: three LoRA and a Pfeiffer bottleneck, pinned. Request i is sent at
start + i / rate whatever the earlier answers (open loop, at most --max-in-flight at once): a transcription of
one of three spoken clips by an adapter or `__base__` in turn, and every 20th a request that must be refused (an
unknown model, 404; a file that is not audio, 400). Every 30 s another adapter is loaded and unloaded.

Recorded: the server process's RSS every --sample-s seconds; after the warm-up, its growth, its least-squares
slope (MiB per minute), and `flat` (growth within --max-growth-mib); latency p50/p95/p99/max of the answers,
counts by status, and errors: a transport failure, an unexpected status, or a transcript other than the one the
adapter gave alone before the soak. Exits 1 on an error or on memory that is not flat.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import psutil

from speechpeft.adapter_dir import package_versions
from speechpeft.backbones.imported_card import cpu_model, git_commit

BACKBONE = "speechpeft/tiny-whisper"
ADAPTERS = ("soak/lora-a", "soak/lora-b", "soak/lora-c", "soak/pfeiffer-a")
CHURN = "soak/lora-churn"  # loaded and unloaded every CHURN_EVERY_S, never asked for
CHURN_EVERY_S = 30.0
REFUSED_EVERY = 20  # every 20th request must be refused
SENTENCES = ("turn on the kitchen lights", "what is the weather like", "set an alarm for seven")
KEY = "soak-key"  # loopback only
SERVER_START_S = 300  # the server must answer /health within this
REQUEST_S = 120  # one request's limit
LATE_S = 1.0  # a request sent this much after its time counts as late: the client, not the server, fell behind


@dataclass
class Tally:
    """What the requests met, filled by the sending threads."""

    latencies_s: list[float] = field(default_factory=list)  # answered as expected
    statuses: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    late: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, status: int | str, latency_s: float, error: str | None) -> None:
        with self.lock:
            self.statuses[str(status)] += 1
            if error is None:
                self.latencies_s.append(latency_s)
            else:
                self.errors.append(error)


def make_store(store: Path) -> None:
    """Seeded random adapters on tiny-whisper: three LoRA (and the churned one) and a Pfeiffer bottleneck."""
    from speechpeft.adapters.random_init import save_random_adapters
    from speechpeft.backbones import load_frozen

    lora = [store / name for name in (*ADAPTERS[:3], CHURN)]
    save_random_adapters(load_frozen(BACKBONE, "asr", "fp32"), "lora", lora, task="asr", scale=0.2,
                         backbone_name=BACKBONE)  # fmt: skip
    save_random_adapters(load_frozen(BACKBONE, "asr", "fp32"), "bottleneck", [store / ADAPTERS[3]], task="asr",
                         scale=0.2, seed=10, backbone_name=BACKBONE)  # fmt: skip


def spoken_clips(directory: Path) -> list[bytes]:
    """The sentences spoken by espeak-ng, as FLAC files (the corpus's renderer)."""
    from speechpeft.tasks.corpus.plan import Utterance
    from speechpeft.tasks.corpus.render import render_clip

    clips = []
    directory.mkdir(parents=True, exist_ok=True)
    for index, text in enumerate(SENTENCES):
        utterance = Utterance(id=f"clip{index}", text=text, kind="sentence", intent="", slots="[]", keyword="",
                              voice="espeak-en-us", engine="espeak", voice_group="pretrain", split="test", rate=1.0,
                              pitch=0.0)  # fmt: skip
        clips.append(render_clip(utterance, directory).read_bytes())
    return clips


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_server(store: Path, log: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """`speechpeft serve` on 127.0.0.1 over `store`, the adapters pinned; yields its URL and process."""
    port = free_port()
    command = [str(Path(sys.executable).with_name("speechpeft")), "serve", "--host", "127.0.0.1", "--port", str(port),
               "--store", str(store), "--backbone", BACKBONE, "--precision", "fp32", "--device", "cpu",
               "--adapters", *ADAPTERS]  # fmt: skip
    env = {**os.environ, "SPEECHPEFT_API_KEY": KEY, "HF_HUB_OFFLINE": "1"}
    with log.open("w") as output:
        server = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + SERVER_START_S
    try:
        while server.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            time.sleep(1)
        else:
            raise SystemExit(f"the server did not come up (exit {server.poll()}); its log: {log.read_text()[-2000:]}")
        yield url, server
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def references(http: httpx.Client, clips: list[bytes]) -> dict[tuple[str, int], str]:
    """Each (model, clip)'s transcript, asked one at a time before the soak."""
    answers = {}
    for model in (*ADAPTERS, "__base__"):
        for index, clip in enumerate(clips):
            response = http.post("/v1/audio/transcriptions", data={"model": model}, files={"file": ("a.flac", clip)})
            response.raise_for_status()
            answers[model, index] = response.json()["text"]
    return answers


def request_plan(index: int, clips: list[bytes]) -> tuple[str, bytes, int, int | None]:
    """Request `index`: (model, file, expected status, clip index or None)."""
    if index % REFUSED_EVERY == REFUSED_EVERY - 1:
        refused = index // REFUSED_EVERY % 2
        return ("soak/missing", clips[0], 404, None) if refused == 0 else (ADAPTERS[0], b"not audio", 400, None)
    models = (*ADAPTERS, "__base__")
    clip = index // len(models) % len(clips)
    return models[index % len(models)], clips[clip], 200, clip


def send(http: httpx.Client, index: int, due: float, clips: list[bytes], expected: dict, tally: Tally) -> None:
    started = time.monotonic()
    if started - due > LATE_S:
        with tally.lock:
            tally.late += 1
    model, file, status, clip = request_plan(index, clips)
    try:
        response = http.post("/v1/audio/transcriptions", data={"model": model}, files={"file": ("a.flac", file)})
    except httpx.HTTPError as error:
        tally.record(type(error).__name__, 0.0, f"request {index} ({model}): {type(error).__name__}: {error}")
        return
    latency, error = time.monotonic() - started, None
    if response.status_code != status:
        error = f"request {index} ({model}): status {response.status_code}, expected {status}: {response.text[:300]}"
    elif clip is not None and response.json()["text"] != expected[model, clip]:
        error = f"request {index} ({model}): {response.json()['text']!r}, alone {expected[model, clip]!r}"
    tally.record(response.status_code, latency, error)


def churn(url: str, stop: threading.Event, tally: Tally) -> int:
    """Load and unload CHURN every CHURN_EVERY_S until `stop`; returns the cycles done."""
    cycles = 0
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=REQUEST_S) as http:
        while not stop.wait(CHURN_EVERY_S):
            for response in (http.post("/v1/adapters", json={"name": CHURN}), http.delete(f"/v1/adapters/{CHURN}")):
                if response.status_code != 200:
                    with tally.lock:
                        tally.errors.append(f"admin {response.request.method}: {response.status_code} {response.text}")
            cycles += 1
    return cycles


def sample_rss(process: psutil.Process, every_s: float, stop: threading.Event, start: float) -> list[list[float]]:
    """[seconds since `start`, RSS in MiB] every `every_s` until `stop`."""
    samples = []
    while True:
        with contextlib.suppress(psutil.Error):
            samples.append([round(time.monotonic() - start, 1), process.memory_info().rss / 2**20])
        if stop.wait(every_s):
            return samples


def soak(url: str, server: subprocess.Popen, clips: list[bytes], args: argparse.Namespace) -> dict:
    headers = {"Authorization": f"Bearer {KEY}"}
    limits = httpx.Limits(max_connections=args.max_in_flight, max_keepalive_connections=args.max_in_flight)
    with httpx.Client(base_url=url, headers=headers, timeout=REQUEST_S, limits=limits) as http:
        process, tally, stop = psutil.Process(server.pid), Tally(), threading.Event()
        rss_before_load = process.memory_info().rss / 2**20
        expected = references(http, clips)
        total = int(args.minutes * 60 * args.rate)
        start = time.monotonic()
        with ThreadPoolExecutor(args.max_in_flight + 2) as pool:
            sampler = pool.submit(sample_rss, process, args.sample_s, stop, start)
            churner = pool.submit(churn, url, stop, tally)
            with ThreadPoolExecutor(args.max_in_flight) as senders:
                for index in range(total):
                    due = start + index / args.rate
                    time.sleep(max(due - time.monotonic(), 0))
                    senders.submit(send, http, index, due, clips, expected, tally)
            stop.set()
            samples, cycles = sampler.result(), churner.result()
        wall_s = time.monotonic() - start
    return {"requests": total, "wall_s": round(wall_s, 1), "churn_cycles": cycles, "late": tally.late,
            "statuses": dict(sorted(tally.statuses.items())), "errors": len(tally.errors),
            "first_errors": tally.errors[:20], "latency_ms": quantiles_ms(tally.latencies_s),
            "rss": memory_summary(samples, rss_before_load, args)}  # fmt: skip


def quantiles_ms(seconds: list[float]) -> dict[str, float]:
    if len(seconds) < 2:
        return {}
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return {"p50": 1000 * cuts[49], "p95": 1000 * cuts[94], "p99": 1000 * cuts[98], "max": 1000 * max(seconds),
            "mean": 1000 * statistics.fmean(seconds), "count": len(seconds)}  # fmt: skip


def memory_summary(samples: list[list[float]], before_load_mib: float, args: argparse.Namespace) -> dict:
    """RSS at start, after the warm-up, at the end and at most; growth and slope after the warm-up."""
    warm = [(t, mib) for t, mib in samples if t >= args.warmup_minutes * 60] or samples[-1:]
    slope = statistics.linear_regression([t / 60 for t, _ in warm], [m for _, m in warm]).slope if len(warm) > 2 else 0
    growth = warm[-1][1] - warm[0][1]
    return {"before_load_mib": before_load_mib, "start_mib": samples[0][1], "after_warmup_mib": warm[0][1],
            "end_mib": samples[-1][1], "max_mib": max(m for _, m in samples), "growth_after_warmup_mib": growth,
            "slope_after_warmup_mib_per_min": slope, "flat": growth <= args.max_growth_mib,
            "samples_s_mib": [[t, round(m, 1)] for t, m in samples]}  # fmt: skip


def machine() -> dict:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "load_average_1_5_15_min": list(os.getloadavg())}


def report(results: dict) -> str:
    rss, latency = results["rss"], results["latency_ms"]
    return "\n".join([
        f"soak: {results['requests']} requests at {results['rate']}/s over {results['wall_s']} s "
        f"({results['churn_cycles']} load/unload cycles, {results['late']} sent late)",
        f"statuses {results['statuses']}; errors {results['errors']}",
        f"latency p50 {latency.get('p50', 0):.0f} ms, p95 {latency.get('p95', 0):.0f} ms, "
        f"p99 {latency.get('p99', 0):.0f} ms, max {latency.get('max', 0):.0f} ms",
        f"RSS start {rss['start_mib']:.1f} MiB, after warm-up {rss['after_warmup_mib']:.1f}, "
        f"end {rss['end_mib']:.1f}, max {rss['max_mib']:.1f}; after warm-up "
        f"{rss['slope_after_warmup_mib_per_min']:+.3f} MiB/min: {'flat' if rss['flat'] else 'GROWING'}",
    ])  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="how long requests are sent")
    parser.add_argument("--rate", type=float, default=1.0, help="requests per second")
    parser.add_argument("--sample-s", type=float, default=5.0, help="seconds between RSS samples")
    parser.add_argument("--warmup-minutes", type=float, default=1.0, help="left out of the memory slope")
    parser.add_argument("--max-growth-mib", type=float, default=32.0, help="RSS growth after warm-up still flat")
    parser.add_argument("--max-in-flight", type=int, default=16, help="requests outstanding at once")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/soak.json"))
    args = parser.parse_args(argv)
    if min(args.minutes, args.rate, args.sample_s, args.max_in_flight) <= 0 or args.warmup_minutes >= args.minutes:
        parser.error("--minutes, --rate, --sample-s and --max-in-flight must be positive, --warmup-minutes less "
                     "than --minutes")  # fmt: skip
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    before, commit = machine(), git_commit()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        make_store(work / "store")
        clips = spoken_clips(work / "clips")
        with running_server(work / "store", work / "server.log") as (url, server):
            results = soak(url, server, clips, args)
    results = {"command": " ".join(["python", *sys.argv]), "date": datetime.now().isoformat(timespec="seconds"),
               "git_commit": commit, "machine": {**before, "load_average_after": machine()["load_average_1_5_15_min"]},
               "versions": package_versions(), "backbone": BACKBONE, "adapters": list(ADAPTERS),
               "minutes": args.minutes, "rate": args.rate, "max_in_flight": args.max_in_flight,
               "warmup_minutes": args.warmup_minutes, "max_growth_mib": args.max_growth_mib, **results}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(report(results))
    return 0 if results["errors"] == 0 and results["rss"]["flat"] else 1


if __name__ == "__main__":
    sys.exit(main())
