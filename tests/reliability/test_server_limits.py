"""The server's limits against a hostile or careless client: body sizes (declared and streamed), the upload's own
(`--max-upload-mib`), a slow body, a full queue, timeouts in the queue and in computation, the API key's comparison,
and no secret in the logs.

Most tests run a real uvicorn server on 127.0.0.1 over a stand-in bank whose transcriptions wait for a gate the
test opens, so that queues fill and timeouts expire on cue, in seconds and without a model."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import io
import os
import re
import signal
import socket
import string
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import soundfile as sf

from speechpeft.batching import DynamicBatcher, QueueFull, RequestTimeout
from speechpeft.serve_options import FORM_BYTES, MIB, ServeOptions, ServerLimits
from speechpeft.server import create_app
from speechpeft.server_guards import BodyLimit
from tests.serving import serving

KEY = "limits-test-key-0123456789"
WRONG = "not-the-key-but-a-secret-all-the-same"
UPLOAD_LIMIT = 64 << 10  # 64 KiB: small, so that refused bodies are quick to send
WAIT = 10  # seconds: the longest any step of these tests may take


class GatedBank:
    """A stand-in bank: each transcription waits for `gate`, then answers `text of NAME`; `calls` records the
    adapter names of every call. Every one-letter name is resident (the server serves only those and the store's)."""

    sample_rate, default_backbone, store = 16_000, "none", None

    def __init__(self) -> None:
        self.gate, self.calls = threading.Event(), []

    def transcribe(self, audio: list, adapter: list[str], num_beams: int = 1) -> list[str]:
        self.calls.append(list(adapter))
        self.gate.wait(WAIT)
        return [f"text of {name}" for name in adapter]

    def stats(self) -> dict:
        return {}

    def stored(self) -> list:
        return []

    def resident(self) -> list:
        return [SimpleNamespace(name=letter) for letter in string.ascii_lowercase]


@contextlib.contextmanager
def running(app: Any) -> Iterator[str]:
    """`app` served on a free port of 127.0.0.1 in a thread; yields its URL."""
    with serving(app, wait=WAIT, graceful=5) as url:
        yield url


@contextlib.contextmanager
def gated_server(**limits: Any) -> Iterator[tuple[str, GatedBank, Any]]:
    """A server over a GatedBank, one request per batch, with `limits`; the gate opens when the test ends."""
    bank = GatedBank()
    app = create_app(bank, api_key=KEY, max_batch_size=1, max_wait_ms=0, limits=ServerLimits(**limits))
    try:
        with running(app) as url:
            yield url, bank, app
    finally:
        bank.gate.set()


def clip() -> bytes:
    """Half a second of quiet noise, as WAV."""
    buffer = io.BytesIO()
    sf.write(buffer, np.random.default_rng(0).normal(0, 0.1, 8000).astype(np.float32), 16_000, format="WAV")
    return buffer.getvalue()


def transcribe(url: str, model: str, file: bytes | None = None) -> httpx.Response:
    files = {"file": ("clip.wav", clip() if file is None else file)}
    headers = {"Authorization": f"Bearer {KEY}"}
    return httpx.post(f"{url}/v1/audio/transcriptions", files=files, data={"model": model}, headers=headers,
                      timeout=WAIT)  # fmt: skip


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    """OpenAI's error shape with our `code`."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code, error


def wait_until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


# -- body size and upload time ------------------------------------------------------------------------------


def test_a_declared_body_over_the_limit_is_refused_and_the_server_keeps_serving() -> None:
    with gated_server(max_upload_bytes=UPLOAD_LIMIT) as (url, bank, _):
        bank.gate.set()
        assert_error(transcribe(url, "a", b"\0" * (UPLOAD_LIMIT + FORM_BYTES)), 413, "request_too_large")
        speech = {"model": "tts", "input": "x" * (2 << 20)}  # a JSON body over its 1 MiB
        response = httpx.post(f"{url}/v1/audio/speech", json=speech, headers={"Authorization": f"Bearer {KEY}"})
        assert_error(response, 413, "request_too_large")
        assert transcribe(url, "a").json() == {"text": "text of a"}


def test_a_file_over_max_upload_mib_is_refused_and_the_server_keeps_serving() -> None:
    """`--max-upload-mib` bounds the file itself, not only the body: a file a byte over it (which the body limit
    lets through, with the form's slack) is a 413 on `file`; one far over it (yet under the default 25 MiB) is
    refused by the body limit before it is read."""
    limits = ServeOptions(max_upload_mib=UPLOAD_LIMIT / MIB).limits()
    with gated_server(**asdict(limits)) as (url, bank, _):
        bank.gate.set()
        response = transcribe(url, "a", b"\0" * (UPLOAD_LIMIT + 1))
        assert_error(response, 413, "file_too_large")
        assert response.json()["error"]["param"] == "file" and "0.0625 MiB" in response.json()["error"]["message"]
        assert_error(transcribe(url, "a", b"\0" * MIB), 413, "request_too_large")
        assert transcribe(url, "a").json() == {"text": "text of a"}
        assert bank.calls == [["a"]]


def test_a_streamed_body_is_refused_once_it_passes_the_limit() -> None:
    """A chunked upload (no Content-Length) of 64 MiB: refused, and the client stops sending long before its end."""
    chunks, sent = 1024, []

    def body() -> Iterator[bytes]:
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        for index in range(chunks):
            sent.append(index)
            yield b"\0" * (64 << 10)

    with gated_server(max_upload_bytes=UPLOAD_LIMIT) as (url, bank, _):
        bank.gate.set()
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "multipart/form-data; boundary=b"}
        response = httpx.post(f"{url}/v1/audio/transcriptions", content=body(), headers=headers, timeout=WAIT)
        assert_error(response, 413, "request_too_large")
        assert len(sent) < chunks
        assert transcribe(url, "a").json() == {"text": "text of a"}


@pytest.mark.parametrize("declared", [True, False])
def test_the_body_limit_reads_nothing_past_the_limit(declared: bool) -> None:
    """The middleware alone: a declared length over the limit reads no chunk; a streamed body, none after the one
    that passes the limit. The app below reads the whole body, as FastAPI does before it parses a form."""
    limit, chunk, received = 1000, 300, []

    async def receive() -> dict:
        received.append(chunk)
        return {"type": "http.request", "body": b"\0" * chunk, "more_body": True}  # an endless body

    async def app(scope: dict, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    headers = [(b"content-length", b"5000")] if declared else [(b"transfer-encoding", b"chunked")]
    scope = {"type": "http", "path": "/v1/audio/speech", "method": "POST", "headers": headers}
    asyncio.run(BodyLimit(app, ServerLimits(max_json_bytes=limit))(scope, receive, send))
    assert sent[0]["status"] == 413 and b"request_too_large" in sent[1]["body"]
    assert len(received) == (0 if declared else 4)  # 4 x 300 bytes: the first past 1000


def test_a_body_that_arrives_too_slowly_gets_a_408() -> None:
    with gated_server(upload_timeout_s=0.5) as (url, _, _), socket.create_connection(url[7:].split(":")) as raw:
        raw.settimeout(WAIT)
        raw.sendall(b"POST /v1/audio/speech HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode() +
                    b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"model\"")  # fmt: skip
        start = time.monotonic()
        answer = b"".join(iter(lambda: raw.recv(4096), b"")).decode()  # until the server closes the connection
        assert answer.startswith("HTTP/1.1 408") and '"request_timeout"' in answer, answer
        assert 0.3 < time.monotonic() - start < WAIT


# -- the queue and the timeouts -----------------------------------------------------------------------------


def test_a_full_queue_answers_503_with_retry_after() -> None:
    """One request computing and one waiting fill a queue of 2: the third is refused at once, the two answered."""
    with gated_server(max_queue=2) as (url, bank, app), ThreadPoolExecutor(2) as pool:
        batcher = app.state.batchers["transcribe"]
        held = [pool.submit(transcribe, url, name) for name in ("a", "b")]
        wait_until(lambda: batcher.pending == 2 and len(bank.calls) == 1, "two requests held")
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=WAIT)
        with pytest.raises(openai.InternalServerError) as refused:
            client.audio.transcriptions.create(model="c", file=("clip.wav", clip()))
        assert refused.value.status_code == 503 and refused.value.response.headers["retry-after"] == "1"
        assert refused.value.body["code"] == "queue_full"
        metrics = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {KEY}"}, timeout=WAIT).text
        assert 'speechpeft_queued_requests{operation="transcribe"} 2.0' in metrics
        bank.gate.set()
        assert [future.result(WAIT).json()["text"] for future in held] == ["text of a", "text of b"]
        assert client.audio.transcriptions.create(model="d", file=("clip.wav", clip())).text == "text of d"


def test_timeouts_are_503_in_the_queue_504_computing_and_a_timed_out_request_is_never_computed() -> None:
    with gated_server(request_timeout_s=1.0) as (url, bank, app), ThreadPoolExecutor(2) as pool:
        computing = pool.submit(transcribe, url, "a")
        wait_until(lambda: bank.calls == [["a"]], "the first request to start")
        queued: Future = pool.submit(transcribe, url, "b")
        assert_error(computing.result(WAIT), 504, "timeout")
        response = queued.result(WAIT)
        assert_error(response, 503, "queue_timeout")
        assert response.headers["retry-after"] == "1"
        bank.gate.set()
        assert transcribe(url, "c").json() == {"text": "text of c"}
        assert bank.calls == [["a"], ["c"]]  # b gave up before its batch: never computed
        assert app.state.batchers["transcribe"].pending == 0


def test_the_batcher_bounds_its_queue_and_waits() -> None:
    """The batcher alone: QueueFull past max_queue; RequestTimeout says whether the batch had started."""
    gate, calls = threading.Event(), []

    def run(items: list[str], group: Any) -> list[str]:
        calls.append(list(items))
        gate.wait(WAIT)
        return items

    async def go() -> list:
        batcher = DynamicBatcher(run, max_batch_size=1, max_wait_ms=0, max_queue=2, timeout_s=0.5)
        batcher.start()
        try:
            first = asyncio.ensure_future(batcher.submit("a"))
            second = asyncio.ensure_future(batcher.submit("b"))
            await asyncio.sleep(0.1)
            with pytest.raises(QueueFull):
                await batcher.submit("c")
            outcomes = await asyncio.gather(first, second, return_exceptions=True)
            gate.set()
            return [*outcomes, await batcher.submit("d")]
        finally:
            gate.set()
            await batcher.close()

    first, second, last = asyncio.run(go())
    assert isinstance(first, RequestTimeout) and first.started
    assert isinstance(second, RequestTimeout) and not second.started
    assert last == "d" and calls == [["a"], ["d"]]


# -- the API key ----------------------------------------------------------------------------------------------


def test_the_api_key_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every check goes through hmac.compare_digest, on digests of one length whatever the key sent."""
    compared: list[tuple[int, int]] = []
    original = hmac.compare_digest

    def compare_digest(a: bytes, b: bytes) -> bool:
        compared.append((len(a), len(b)))
        return original(a, b)

    monkeypatch.setattr("speechpeft.server.hmac.compare_digest", compare_digest)
    with gated_server() as (url, _, _):
        statuses = [httpx.get(f"{url}/v1/models", headers=headers).status_code for headers in (
            {"Authorization": f"Bearer {KEY}"}, {"Authorization": f"Bearer {KEY[:-1]}x"},
            {"Authorization": f"Bearer {KEY}{KEY}"}, {"Authorization": "Bearer"}, {},
        )]  # fmt: skip
    assert statuses == [200, 401, 401, 401, 401]
    assert compared == [(32, 32)] * 5


@pytest.mark.slow  # starts `speechpeft serve`, which imports torch: seconds
def test_no_secret_reaches_the_logs(tmp_path: Path) -> None:
    """`speechpeft serve` as a user runs it, access log on: neither its key nor a wrong one a client sent appears
    in its output, even when a client puts the key in a URL."""
    env = {**os.environ, "SPEECHPEFT_API_KEY": KEY, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "speechpeft.cli", "serve", "--port", "0", "--store", str(tmp_path / "store")]
    log = tmp_path / "serve.log"
    with log.open("w") as output:
        server = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    try:
        url = served_url(server, log)
        asks = [({"Authorization": f"Bearer {KEY}"}, "/v1/models"), ({"Authorization": f"Bearer {WRONG}"},
                "/v1/models"), ({}, f"/v1/models?api_key={KEY}"), ({}, f"/v1/models/{KEY}")]  # fmt: skip
        for headers, path in asks:
            assert httpx.get(url + path, headers=headers, timeout=WAIT).status_code in (200, 401)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(WAIT)
        except subprocess.TimeoutExpired:
            server.kill()
    text = log.read_text()
    assert text.count('"GET /v1/models') >= 3, text  # the access log is on
    assert KEY not in text and WRONG not in text, text
    assert "[redacted]" in text, text


def served_url(server: subprocess.Popen, log: Path) -> str:
    """The URL `speechpeft serve --port 0` says it bound, once it says so (a minute at most: it imports torch)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.poll() is None:
        found = re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", log.read_text())
        if found:
            return found.group(1)
        time.sleep(0.1)
    raise AssertionError(f"the server did not start (exit {server.poll()}): {log.read_text()}")


# -- the options ----------------------------------------------------------------------------------------------


def test_serve_options_carry_the_limits_and_refuse_bad_ones() -> None:
    limits = ServeOptions().limits()
    assert limits == ServerLimits()
    assert (limits.max_upload_bytes, limits.max_queue, limits.request_timeout_s, limits.upload_timeout_s) == (
        25 << 20, 64, 300.0, 60.0,
    )  # fmt: skip
    assert ServeOptions(max_upload_mib=1).limits().max_body_bytes("/v1/classify") == (1 << 20) + FORM_BYTES
    for bad in ({"max_queue": 0}, {"request_timeout_s": 0}, {"upload_timeout_s": float("nan")},
                {"max_upload_mib": float("inf")}, {"max_connections": 0}):  # fmt: skip
        with pytest.raises(Exception, match="--"):
            ServeOptions(**bad)
