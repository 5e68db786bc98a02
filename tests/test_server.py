"""`speechpeft serve` end to end: a real uvicorn server on 127.0.0.1 over a real `AdapterBank`, whose store holds
small adapters with seeded random weights on the shipped tiny backbones, asked with the official `openai` client
(OpenAI's endpoints) and httpx (the rest); and the dynamic batcher on its own."""

from __future__ import annotations

import asyncio
import io
import math
import re
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
import soundfile as sf

from speechpeft.adapters.bank import BASE, AdapterBank
from speechpeft.adapters.random_init import save_random_adapters
from speechpeft.backbones import load_frozen
from speechpeft.batching import DynamicBatcher
from speechpeft.cli import main
from speechpeft.errors import InputError, MissingInputError
from speechpeft.serve_options import check_binding, is_loopback
from speechpeft.server import create_app, decode_audio
from tests.audio import spoken_file
from tests.serving import serving

pytestmark = pytest.mark.slow

KEY = "test-key"
WHISPER, SPEECHT5 = "speechpeft/tiny-whisper", "speechpeft/tiny-speecht5"
ASR = ("asr/lora-a", "asr/lora-b", "asr/lora-c", "asr/pfeiffer-a")
CHURN = "asr/lora-e"  # loaded and unloaded while the others serve
LABELS = ("yes", "no", "stop")
# weights drawn from N(0, 0.2^2): each adapter transcribes the clip differently (at 0.05 every transcript is
# right), in a few words (larger draws babble on to the token cap: slower)
ASR_SCALE = 0.2


@dataclass
class Served:
    bank: AdapterBank
    url: str
    clip: bytes  # FLAC
    expected: dict[str, str]  # adapter -> its transcript of the clip, computed alone


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four ASR LoRA adapters, a Pfeiffer bottleneck, an intent classifier (tiny-whisper) and a TTS LoRA."""
    root = tmp_path_factory.mktemp("store")
    lora = [root / name for name in ("asr/lora-a", "asr/lora-b", "asr/lora-c", CHURN)]
    save_random_adapters(load_frozen(WHISPER, "asr", "fp32"), "lora", lora, task="asr", scale=ASR_SCALE,
                         backbone_name=WHISPER)  # fmt: skip
    save_random_adapters(load_frozen(WHISPER, "asr", "fp32"), "bottleneck", [root / "asr/pfeiffer-a"], task="asr",
                         scale=ASR_SCALE, seed=10, backbone_name=WHISPER)  # fmt: skip
    save_random_adapters(load_frozen(WHISPER, "classify", "fp32", labels=LABELS), "lora", [root / "intent/lora-a"],
                         task="intent", labels=LABELS, backbone_name=WHISPER)  # fmt: skip
    save_random_adapters(load_frozen(SPEECHT5, "tts", "fp32"), "lora", [root / "tts/lora-a"], task="tts",
                         backbone_name=SPEECHT5)  # fmt: skip
    return root


@pytest.fixture(scope="module")
def served(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The server on a free loopback port, batching up to 8 requests within 50 ms; stopped after the module."""
    bank = AdapterBank(store, device="cpu", precision="fp32", default_backbone=WHISPER)
    app = create_app(bank, api_key=KEY, max_batch_size=8, max_wait_ms=50)
    clip = spoken_file("turn on the kitchen lights", tmp_path_factory.mktemp("clip")).read_bytes()
    audio = decode_audio(clip)
    expected = {name: bank.transcribe(audio, adapter=name) for name in (*ASR, BASE)}
    with serving(app) as url:
        yield Served(bank, url, clip, expected)


@pytest.fixture(scope="module")
def client(served: Served) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{served.url}/v1", api_key=KEY, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def http(served: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as client:
        yield client


def assert_openai_error(response: httpx.Response, status: int, *, param: str | None = None, says: str = "") -> None:
    """OpenAI's error shape: {"error": {"message", "type", "param", "code"}}."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and says in error["message"]
    if param is not None:
        assert error["param"] == param


def test_the_expected_transcripts_tell_the_adapters_apart(served: Served) -> None:
    assert len(set(served.expected.values())) == len(served.expected), served.expected


def test_transcription_in_each_format(served: Served, client: openai.OpenAI) -> None:
    name, upload = "asr/lora-a", ("clip.flac", served.clip)
    assert client.audio.transcriptions.create(model=name, file=upload).text == served.expected[name]
    text = client.audio.transcriptions.create(model=name, file=upload, response_format="text", language="en")
    assert text.strip() == served.expected[name]
    verbose = client.audio.transcriptions.create(model=BASE, file=upload, response_format="verbose_json")
    duration = len(decode_audio(served.clip)) / 16_000
    assert (verbose.text, verbose.language, verbose.duration) == (served.expected[BASE], "english", round(duration, 3))
    assert [(s.start, s.end, s.text) for s in verbose.segments] == [(0.0, verbose.duration, verbose.text)]


@pytest.mark.parametrize(
    ("model", "fields", "status", "param", "says"),
    [
        ("asr/missing", {}, 404, "model", "asr/missing"),
        ("tts/lora-a", {}, 400, None, "not asr"),  # an adapter for another task
        ("asr/lora-a", {"language": "fr"}, 400, "language", "'fr'"),
        ("asr/lora-a", {"temperature": "0.7"}, 400, "temperature", "greedy"),
        ("asr/lora-a", {"response_format": "srt"}, 400, "response_format", "json, text, verbose_json"),
    ],
)
def test_transcription_errors(
    served: Served, http: httpx.Client, model: str, fields: dict, status: int, param: str | None, says: str
) -> None:
    files = {"file": ("clip.flac", served.clip)}
    response = http.post("/v1/audio/transcriptions", files=files, data={"model": model, **fields})
    assert_openai_error(response, status, param=param, says=says)


def test_undecodable_audio_is_a_400(http: httpx.Client, client: openai.OpenAI) -> None:
    response = http.post("/v1/audio/transcriptions", files={"file": ("a.wav", b"no audio")}, data={"model": BASE})
    assert_openai_error(response, 400, param="file", says="could not decode")
    with pytest.raises(openai.BadRequestError, match="empty"):
        client.audio.transcriptions.create(model=BASE, file=("a.wav", b""))


def test_speech_is_wav_at_the_bank_rate(served: Served, client: openai.OpenAI, http: httpx.Client) -> None:
    wav = client.audio.speech.create(model="tts/lora-a", input="yes", voice="alloy", response_format="wav")
    samples, rate = sf.read(io.BytesIO(wav.content), dtype="float32")
    assert rate == served.bank.sample_rate and samples.ndim == 1 and len(samples) > 0
    response = http.post("/v1/audio/speech", json={"model": "tts/lora-a", "input": "yes", "response_format": "mp3"})
    assert_openai_error(response, 400, param="response_format", says="wav, pcm")
    response = http.post("/v1/audio/speech", json={"model": "asr/lora-a", "input": "yes"})
    assert_openai_error(response, 400, says="not tts")


def test_models_lists_resident_stored_and_base(served: Served, client: openai.OpenAI) -> None:
    models = {model.id: model for model in client.models.list()}
    assert {*ASR, CHURN, "intent/lora-a", "tts/lora-a", BASE} <= set(models)
    lora = models["asr/lora-a"]
    assert (lora.object, lora.owned_by, lora.model_extra["task"], lora.model_extra["method"]) == (
        "model", "speechpeft", "asr", "lora",
    )  # fmt: skip
    assert lora.model_extra["backbone"] == WHISPER and isinstance(lora.created, int)
    assert client.models.retrieve("tts/lora-a").model_extra["backbone"] == SPEECHT5


def test_classify(served: Served, http: httpx.Client) -> None:
    files = {"file": ("clip.flac", served.clip)}
    answer = http.post("/v1/classify", files=files, data={"model": "intent/lora-a"}).json()
    assert set(answer) == {"label", "confidence", "scores"} and set(answer["scores"]) == set(LABELS)
    assert answer == served.bank.classify(decode_audio(served.clip), "intent/lora-a")
    response = http.post("/v1/classify", files=files, data={"model": "asr/lora-a"})
    assert_openai_error(response, 400, says="not classify")


def test_adapters_load_list_unload(store: Path, http: httpx.Client) -> None:
    info = http.post("/v1/adapters", json={"name": CHURN, "pin": True}).json()
    assert (info["name"], info["kind"], info["pinned"]) == (CHURN, "asr", True)
    by_path = http.post("/v1/adapters", json={"name": "mine/a", "path": str(store / "asr/lora-c")})
    assert_openai_error(by_path, 403, param="path", says="does not load adapters by path")  # see test_server_paths
    listing = http.get("/v1/adapters").json()
    assert CHURN in {a["name"] for a in listing["resident"]} and "mine/a" not in str(listing["resident"])
    assert {a["name"] for a in listing["stored"]} >= {*ASR, CHURN}
    assert http.delete(f"/v1/adapters/{CHURN}").json() == {"id": CHURN, "object": "adapter", "deleted": True}
    assert_openai_error(http.delete(f"/v1/adapters/{CHURN}"), 404, param="name", says="not resident")
    assert_openai_error(http.post("/v1/adapters", json={"name": "asr/nowhere"}), 404, says="asr/nowhere")


def test_api_key(served: Served) -> None:
    assert httpx.get(f"{served.url}/health").json()["status"] == "ok"  # /health needs no key
    assert_openai_error(httpx.get(f"{served.url}/v1/models"), 401, says="API key")
    wrong = {"Authorization": "Bearer not-the-key"}
    assert_openai_error(httpx.get(f"{served.url}/v1/adapters", headers=wrong), 401, says="API key")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{served.url}/v1", api_key="not-the-key", max_retries=0).models.list()


def test_binding_beyond_loopback_needs_a_key(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    assert all(is_loopback(host) for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"))
    assert not any(is_loopback(host) for host in ("0.0.0.0", "::", "192.168.1.4", "example.org"))
    with pytest.raises(InputError, match="--api-key"):
        check_binding("0.0.0.0", None)
    check_binding("0.0.0.0", "k")
    check_binding("127.0.0.1", None)
    monkeypatch.delenv("SPEECHPEFT_API_KEY", raising=False)
    with pytest.raises(SystemExit) as exit_:  # refused while parsing flags: nothing is bound
        main(["serve", "--host", "0.0.0.0"])
    assert exit_.value.code == 2 and "--api-key KEY or $SPEECHPEFT_API_KEY" in capsys.readouterr().err


def test_a_bad_request_does_not_fail_its_batch(served: Served, client: openai.OpenAI) -> None:
    names = [*ASR, "asr/missing", "tts/lora-a"]

    def ask(name: str) -> str | int:
        try:
            return client.audio.transcriptions.create(model=name, file=("clip.flac", served.clip)).text
        except openai.APIStatusError as error:
            return error.status_code

    with ThreadPoolExecutor(len(names)) as pool:
        answers = list(pool.map(ask, names))
    assert answers == [*(served.expected[name] for name in ASR), 404, 400]


def test_concurrent_requests_get_their_own_adapter_while_adapters_come_and_go(
    served: Served, client: openai.OpenAI
) -> None:
    """The server's promise: under load, batched across adapters, with loads and unloads meanwhile (of another
    adapter, and of one in use), every answer comes from the adapter its request named."""
    names = [*ASR, BASE] * 16  # 80 requests
    stop = threading.Event()

    def ask(name: str) -> tuple[str, str]:
        return name, client.audio.transcriptions.create(model=name, file=("clip.flac", served.clip)).text

    with ThreadPoolExecutor(17) as pool:
        churning = pool.submit(churn, served.url, stop)
        answers = list(pool.map(ask, names))
        stop.set()
        cycles = churning.result()
    wrong = [(name, text) for name, text in answers if text != served.expected[name]]
    assert not wrong, f"answers from the wrong adapter: {wrong}; expected {served.expected}"
    assert cycles >= 1
    assert_batched(httpx.get(f"{served.url}/metrics", headers={"Authorization": f"Bearer {KEY}"}).text)


def churn(url: str, stop: threading.Event) -> int:
    """Load and unload CHURN, and every other time unload asr/lora-b (in use: the next request loads it again),
    until `stop`; returns the cycles done."""
    cycles = 0
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as http:
        while not stop.is_set():
            http.post("/v1/adapters", json={"name": CHURN}).raise_for_status()
            http.delete(f"/v1/adapters/{CHURN}").raise_for_status()
            if cycles % 2 == 0:  # 404 when no request has loaded it again yet
                assert http.delete("/v1/adapters/asr/lora-b").status_code in (200, 404)
            cycles += 1
            stop.wait(0.05)
    return cycles


def assert_batched(metrics: str) -> None:
    """Some transcription call carried more than one request, and the bank's counters are exported."""

    def value(pattern: str) -> float:
        return float(re.search("^" + pattern + r" (\S+)$", metrics, re.MULTILINE).group(1))

    single = value(r'speechpeft_batch_size_bucket\{le="1.0",operation="transcribe"\}')
    assert value(r'speechpeft_batch_size_count\{operation="transcribe"\}') > single, "no batch held two requests"
    assert value("speechpeft_adapter_unloads_total") >= 1 and value("speechpeft_adapter_loads_total") >= 1
    assert 'speechpeft_http_requests_total{endpoint="/v1/audio/transcriptions",status="200"}' in metrics


# -- the batcher alone --------------------------------------------------------------------------------------


def run_batcher(items: list[tuple[int, int]], **options) -> tuple[list, list[list]]:
    """Submit `(value, group)` pairs at once to a batcher that doubles values (and fails on negatives)."""
    calls: list[list] = []

    def double(values: list[int], group: int) -> list[int]:
        calls.append(list(values))
        if any(v < 0 for v in values):
            raise MissingInputError("negative")
        return [2 * v for v in values]

    async def go() -> list:
        batcher = DynamicBatcher(double, **options)
        batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(v, g) for v, g in items), return_exceptions=True)
        finally:
            await batcher.close()

    return asyncio.run(go()), calls


def test_batcher_gathers_up_to_the_size_and_by_group() -> None:
    results, calls = run_batcher([(v, v % 2) for v in range(6)], max_batch_size=2, max_wait_ms=100)
    assert results == [0, 2, 4, 6, 8, 10]
    assert calls == [[0, 2], [1, 3], [4], [5]]  # a request of another group waits for the next batch


def test_batcher_isolates_a_failing_request() -> None:
    results, calls = run_batcher([(1, 0), (-1, 0), (3, 0)], max_batch_size=8, max_wait_ms=100)
    assert results[0] == 2 and results[2] == 6 and isinstance(results[1], MissingInputError)
    assert calls == [[1, -1, 3], [1], [-1], [3]]


def test_batcher_refuses_after_close() -> None:
    async def go() -> None:
        batcher = DynamicBatcher(lambda values, group: values)
        batcher.start()
        await batcher.close()
        with pytest.raises(RuntimeError, match="not running"):
            await batcher.submit(1)

    asyncio.run(go())


@pytest.mark.parametrize("wait", [math.nan, math.inf, -1.0])
def test_batcher_refuses_a_wait_that_is_negative_or_not_finite(wait: float) -> None:
    """nan passed `wait < 0` (False for nan) and inf too: a batch would wait for ever for its second request."""
    with pytest.raises(ValueError, match="max_wait_ms finite and >= 0"):
        DynamicBatcher(lambda values, group: values, max_wait_ms=wait)
