"""Adapters loaded, unloaded and switched through /v1/adapters while clients transcribe with them: every answer is
the named adapter's own (computed alone beforehand), or a clean 4xx for an adapter unloaded at that moment; never
another adapter's text, never a 5xx.

A real uvicorn server on 127.0.0.1 over a real `AdapterBank` on the shipped tiny-whisper, with seeded random LoRA
and bottleneck adapters (each transcribes the clip differently), asked with the official `openai` client."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai
import pytest

from speechpeft.adapters.bank import BASE, AdapterBank
from speechpeft.adapters.random_init import save_random_adapters
from speechpeft.backbones import load_frozen
from speechpeft.server import create_app, decode_audio
from tests.audio import spoken_file
from tests.serving import serving

pytestmark = pytest.mark.slow

KEY = "concurrency-test-key"
WHISPER = "speechpeft/tiny-whisper"
STEADY = ("asr/lora-a", "asr/pfeiffer-a", BASE)  # never unloaded: always their own answer
RELOADED = "asr/lora-b"  # a store adapter unloaded now and then: the next request loads it again
CHURN = "asr/lora-e"  # loaded and unloaded, never asked for
LIVE, VERSIONS = "live", ("x", "y")  # `live` is switched between two adapter directories outside the store
MISSING = "asr/missing"
ASR_SCALE = 0.2  # as in tests/test_server.py: distinct, short transcripts
CLIENTS, REQUESTS_EACH = 4, 10
WAIT = 120  # seconds: the most any request or thread may take


@dataclass
class Served:
    url: str
    clip: bytes
    expected: dict[str, str]  # adapter name or `live` version -> its transcript of the clip, alone
    versions: dict[str, Path]  # `live` version -> its directory


@dataclass
class Timeline:
    """When each version of `live` may have been resident: from its load's request to its unload's answer."""

    windows: list[tuple[str, float, float]] = field(default_factory=list)  # (version, start, end) in monotonic s

    def overlaps(self, version: str, start: float, end: float) -> bool:
        return any(v == version and s <= end and start <= e for v, s, e in self.windows)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("store")
    outside = tmp_path_factory.mktemp("versions")
    dirs = [root / "asr/lora-a", root / RELOADED, root / CHURN, *(outside / v for v in VERSIONS)]
    save_random_adapters(load_frozen(WHISPER, "asr", "fp32"), "lora", dirs, task="asr", scale=ASR_SCALE,
                         backbone_name=WHISPER)  # fmt: skip
    save_random_adapters(load_frozen(WHISPER, "asr", "fp32"), "bottleneck", [root / "asr/pfeiffer-a"], task="asr",
                         scale=ASR_SCALE, seed=10, backbone_name=WHISPER)  # fmt: skip
    clip = spoken_file("turn on the kitchen lights", tmp_path_factory.mktemp("clip")).read_bytes()
    bank = AdapterBank(root, device="cpu", precision="fp32", default_backbone=WHISPER)
    audio = decode_audio(clip)
    expected = {name: bank.transcribe(audio, adapter=name) for name in (*STEADY, RELOADED)}
    for version in VERSIONS:
        bank.load(outside / version, name=f"reference-{version}")
        expected[version] = bank.transcribe(audio, adapter=f"reference-{version}")
        bank.unload(f"reference-{version}")
    assert len(set(expected.values())) == len(expected), expected  # every adapter answers differently
    app = create_app(bank, api_key=KEY, max_batch_size=8, max_wait_ms=20, allow_adapter_paths=True)
    with serving(app, graceful=10) as url:
        yield Served(url, clip, expected, {v: outside / v for v in VERSIONS})


def administer(served: Served, stop: threading.Event, timeline: Timeline) -> list[str]:
    """Until `stop`: switch `live` to the other version (unload, load from its directory), load and unload CHURN,
    unload RELOADED, pin and unpin asr/lora-a. Returns the operations done; raises on any unexpected status."""
    done, current = [], None
    with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=WAIT) as http:

        def expect(response: httpx.Response, *statuses: int) -> None:
            assert response.status_code in statuses, (response.request.url, response.status_code, response.text)

        while not stop.is_set():
            version = VERSIONS[len(done) % len(VERSIONS)]
            if current is not None:
                expect(http.delete(f"/v1/adapters/{LIVE}"), 200)
                timeline.windows[-1] = (*timeline.windows[-1][:2], time.monotonic())
            timeline.windows.append((version, time.monotonic(), math.inf))
            expect(http.post("/v1/adapters", json={"name": LIVE, "path": str(served.versions[version])}), 200)
            current = version
            expect(http.post("/v1/adapters", json={"name": CHURN}), 200)
            expect(http.delete(f"/v1/adapters/{CHURN}"), 200)
            expect(http.delete(f"/v1/adapters/{RELOADED}"), 200, 404)  # 404: no request loaded it again yet
            expect(http.post("/v1/adapters", json={"name": STEADY[0], "pin": len(done) % 2 == 0}), 200)
            done.append(version)
            stop.wait(0.1)
    return done


def ask(client: openai.OpenAI, clip: bytes, names: list[str]) -> list[tuple[str, float, float, str | int]]:
    """Each name's transcription in turn: (name, start, end, text or HTTP status)."""
    answers = []
    for name in names:
        start = time.monotonic()
        try:
            answer: str | int = client.audio.transcriptions.create(model=name, file=("clip.flac", clip)).text
        except openai.APIStatusError as error:
            answer = error.status_code
        answers.append((name, start, time.monotonic(), answer))
    return answers


def test_answers_stay_with_their_adapter_while_adapters_are_loaded_unloaded_and_switched(served: Served) -> None:
    client = openai.OpenAI(base_url=f"{served.url}/v1", api_key=KEY, max_retries=0, timeout=WAIT)
    rotation = [*STEADY, RELOADED, LIVE, MISSING]
    plans = [[rotation[(c + i) % len(rotation)] for i in range(REQUESTS_EACH)] for c in range(CLIENTS)]
    stop, timeline = threading.Event(), Timeline()
    with ThreadPoolExecutor(CLIENTS + 1) as pool:
        admin = pool.submit(administer, served, stop, timeline)
        while not timeline.windows and not admin.done():  # `live` exists before the clients start
            time.sleep(0.01)
        clients = [pool.submit(ask, client, served.clip, plan) for plan in plans]
        answers = [answer for future in clients for answer in future.result(timeout=WAIT * REQUESTS_EACH)]
        stop.set()
        switches = admin.result(timeout=WAIT)
    wrong = [answer for answer in answers if not acceptable(served, timeline, *answer)]
    assert not wrong, f"unacceptable answers: {wrong}; expected {served.expected}; live: {timeline.windows}"
    assert len(switches) >= 2, "the admin thread did not switch `live` while the clients asked"
    assert sum(answer[0] == LIVE and isinstance(answer[3], str) for answer in answers) >= 1, answers
    assert_still_serving(served, client)


def acceptable(served: Served, timeline: Timeline, name: str, start: float, end: float, answer: str | int) -> bool:
    """The named adapter's text; for `live`, that of a version resident at some moment of the request, or 404
    (between versions); RELOADED may also meet its unload (404, or 400 for one unloaded as it was loaded)."""
    if name == MISSING:
        return answer == 404
    if name == LIVE:
        if answer == 404:
            return True
        return any(answer == served.expected[v] and timeline.overlaps(v, start, end) for v in VERSIONS)
    return answer == served.expected[name] or (name == RELOADED and answer in (400, 404))


def assert_still_serving(served: Served, client: openai.OpenAI) -> None:
    """The same answers after the storm, /health up, and no 5xx in the server's own count."""
    names = [*STEADY, RELOADED]
    assert [answer for *_, answer in ask(client, served.clip, names)] == [served.expected[n] for n in names]
    assert httpx.get(f"{served.url}/health", timeout=WAIT).json()["status"] == "ok"
    metrics = httpx.get(f"{served.url}/metrics", headers={"Authorization": f"Bearer {KEY}"}, timeout=WAIT).text
    assert 'status="5' not in metrics, [line for line in metrics.splitlines() if 'status="5' in line]
