"""`speechpeft serve`: an OpenAI-compatible HTTP API over one `AdapterBank`.

The server only translates: each request becomes a bank call, and concurrent requests naming different adapters
are batched (`speechpeft.batching`) into one mixed call, one adapter per sample. The bank does the model work.
The `model` of a request is an adapter name (`asr/lora-a`, resident, in the store or on the Hub) or `__base__`,
never a path (`server_names`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import io
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import numpy as np
import soundfile as sf
from fastapi import FastAPI, File, Form, Request, Response, UploadFile
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from speechpeft import __version__
from speechpeft.adapters.bank import AdapterBank
from speechpeft.audio_input import AudioInputError
from speechpeft.audio_input import decode_audio as read_audio
from speechpeft.batching import DynamicBatcher, QueueFull, RequestTimeout
from speechpeft.errors import MissingInputError
from speechpeft.serve_options import MIB, ServeOptions, ServerLimits
from speechpeft.server_admin import add_admin_routes
from speechpeft.server_errors import ApiError, add_error_handlers
from speechpeft.server_guards import BodyLimit, hide_secret
from speechpeft.server_metrics import ServerMetrics
from speechpeft.server_names import check_name
from speechpeft.text_input import TextInputError, clean_text

SAMPLE_RATE = AdapterBank.sample_rate  # Hz: what every audio input is decoded to, checked after decoding
TRANSCRIPTION_FORMATS = ("json", "text", "verbose_json")
SPEECH_FORMATS = {"wav": "audio/wav", "pcm": "audio/pcm"}
ENGLISH = (None, "", "en", "english")


class SpeechRequest(BaseModel):
    model: str
    input: str
    voice: str | None = None  # accepted and ignored: a TTS adapter speaks in the one voice it was trained on
    response_format: str = "wav"
    speed: float = 1.0


def create_app(
    bank: AdapterBank, *, api_key: str | None = None, max_batch_size: int = 8, max_wait_ms: float = 10.0,
    limits: ServerLimits | None = None, allow_adapter_paths: bool = False, pull_from_hub: bool = False,
) -> FastAPI:  # fmt: skip
    """The app over `bank`; with `api_key`, every path but /health needs `Authorization: Bearer KEY`; `limits` bound
    body sizes, upload time, queues and waits (default: `ServerLimits()`); `allow_adapter_paths` lets POST
    /v1/adapters load a directory by `path`, `pull_from_hub` lets a request name a Hub repo the store lacks (off:
    clients name adapters of the store only; see `server_names`)."""
    limits = limits or ServerLimits()
    metrics = ServerMetrics(bank, max_batch_size)
    batchers = {
        "transcribe": _batcher(metrics, "transcribe", max_batch_size, max_wait_ms, bank, limits),
        "classify": _batcher(metrics, "classify", max_batch_size, max_wait_ms, bank, limits),
        "synthesize": _batcher(metrics, "synthesize", 1, 0.0, bank, limits),  # one at a time
    }
    metrics.watch_queues(batchers)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for batcher in batchers.values():
            batcher.start()
        yield
        await asyncio.gather(*(batcher.close() for batcher in batchers.values()))

    app = FastAPI(title="speechpeft", version=__version__, lifespan=lifespan)
    app.state.bank, app.state.batchers, app.state.metrics, app.state.limits = bank, batchers, metrics, limits
    app.state.started, app.state.allow_adapter_paths = time.time(), allow_adapter_paths
    app.state.pull_from_hub = pull_from_hub
    add_error_handlers(app)
    app.add_middleware(BodyLimit, limits=limits)  # inside the next: refused bodies are counted, and need the key
    app.middleware("http")(_metered_and_authorised(metrics, api_key))
    _add_audio_routes(app)
    add_admin_routes(app)
    return app


def bank_call(bank: AdapterBank, operation: str) -> Callable[[list[Any], Any], list[Any]]:
    """A batch function: `items` are (input, adapter name) pairs, `group` the options they share (num_beams)."""

    def run(items: list[Any], group: Any) -> list[Any]:
        inputs, adapters = [item[0] for item in items], [item[1] for item in items]
        options = {"num_beams": group} if operation == "transcribe" else {}
        return getattr(bank, operation)(inputs, adapter=adapters, **options)

    return run


def _batcher(
    metrics: ServerMetrics, operation: str, size: int, wait_ms: float, bank: AdapterBank, limits: ServerLimits
) -> DynamicBatcher:
    return DynamicBatcher(bank_call(bank, operation), max_batch_size=size, max_wait_ms=wait_ms, name=operation,
                          on_batch=metrics.batch_size.labels(operation).observe, max_queue=limits.max_queue,
                          timeout_s=limits.request_timeout_s)  # fmt: skip


async def _answer(request: Request, operation: str, item: tuple[Any, str], group: Any = None) -> Any:
    """The bank's answer for one request, via its batcher; a `model` that names a path is a 403, an adapter that
    does not exist a 404 on `model`, a full queue or a timeout before the computation began a 503 (try again), a
    timeout during it a 504."""
    await run_in_threadpool(check_name, request.app.state.bank, item[1], "model", request.app.state.pull_from_hub)
    try:
        return await request.app.state.batchers[operation].submit(item, group)
    except MissingInputError as error:
        raise ApiError(404, str(error), param="model", code="model_not_found") from error
    except QueueFull as error:
        raise ApiError(503, f"the server is busy: {error}; retry later", code="queue_full",
                       headers={"Retry-After": "1"}) from error  # fmt: skip
    except RequestTimeout as error:
        if error.started:
            raise ApiError(504, f"{error}: the computation took too long", code="timeout") from error
        raise ApiError(503, f"the server is busy: {error}, never started; retry later", code="queue_timeout",
                       headers={"Retry-After": "1"}) from error  # fmt: skip


def _metered_and_authorised(metrics: ServerMetrics, api_key: str | None) -> Callable:
    """Middleware: a 401 without the key (except /health), and every request counted and timed by route. The key
    is compared in constant time, as digests (so that not even its length leaks)."""
    expected = _digest(f"Bearer {api_key}") if api_key else None

    async def middleware(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start, status = time.perf_counter(), 500
        try:
            given = _digest(request.headers.get("authorization", ""))
            if expected and request.url.path != "/health" and not hmac.compare_digest(given, expected):
                response = ApiError(401, "missing or wrong API key: send `Authorization: Bearer KEY`",
                                    code="invalid_api_key").response()  # fmt: skip
            else:
                response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            endpoint = getattr(route, "path", "unmatched")
            metrics.requests.labels(endpoint, str(status)).inc()
            metrics.latency.labels(endpoint).observe(time.perf_counter() - start)

    return middleware


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()


def _add_audio_routes(app: FastAPI) -> None:
    app.post("/v1/audio/transcriptions", response_model=None)(transcriptions)
    app.post("/v1/audio/speech")(speech)
    app.post("/v1/classify")(classify)


async def transcriptions(
    request: Request,
    file: Annotated[UploadFile, File()],
    model: Annotated[str, Form()],
    response_format: Annotated[str, Form()] = "json",
    language: Annotated[str | None, Form()] = None,
    prompt: Annotated[str | None, Form()] = None,
    temperature: Annotated[float, Form()] = 0.0,
    num_beams: Annotated[int, Form()] = 1,
) -> dict | PlainTextResponse:
    """OpenAI's transcription: `{"text"}`, plain text, or verbose_json.

    `prompt` is accepted and ignored. `num_beams` (not OpenAI's; 1 = greedy) is the beam width. verbose_json has
    one segment covering the whole clip: the bank gives no timestamps.
    """
    if response_format not in TRANSCRIPTION_FORMATS:
        raise ApiError(400, f"response_format {response_format!r} is not supported; use one of "
                       f"{', '.join(TRANSCRIPTION_FORMATS)}", param="response_format")  # fmt: skip
    if (language or "").lower() not in ENGLISH:
        raise ApiError(400, f"language {language!r} is not supported: the served models transcribe English; "
                       "omit language or send en", param="language")  # fmt: skip
    if temperature > 0 or not 1 <= num_beams <= 16:
        raise ApiError(400, "decoding is greedy or beam search: send temperature 0 (or none) and num_beams 1-16",
                       param="temperature" if temperature > 0 else "num_beams")  # fmt: skip
    audio = await _read_audio(file, request.app.state.limits)
    text = await _answer(request, "transcribe", (audio, model), num_beams)
    if response_format == "text":
        return PlainTextResponse(text)
    if response_format == "json":
        return {"text": text}
    duration = round(len(audio) / SAMPLE_RATE, 3)
    segment = {"id": 0, "seek": 0, "start": 0.0, "end": duration, "text": text, "tokens": [], "temperature": 0.0}
    return {"task": "transcribe", "language": "english", "duration": duration, "text": text, "segments": [segment]}


async def speech(request: Request, body: SpeechRequest) -> Response:
    """OpenAI's speech: WAV (16-bit) or raw PCM (16-bit little-endian, mono) at the bank's sample rate.

    `voice` is accepted and ignored: each TTS adapter speaks in the voice it was trained on.
    """
    if body.response_format not in SPEECH_FORMATS:
        raise ApiError(400, f"response_format {body.response_format!r} is not supported; use one of "
                       f"{', '.join(SPEECH_FORMATS)}", param="response_format")  # fmt: skip
    if body.speed != 1.0:
        raise ApiError(400, "speed other than 1.0 is not supported", param="speed")
    try:  # empty, control characters, over 4096 characters, or characters the adapter's backbone cannot spell
        waveform = await _answer(request, "synthesize", (clean_text(body.input, "input"), body.model))
    except TextInputError as error:
        raise ApiError(400, str(error), param="input", code="invalid_input") from error
    content = await run_in_threadpool(_encode, waveform, request.app.state.bank.sample_rate, body.response_format)
    return Response(content, media_type=SPEECH_FORMATS[body.response_format])


async def classify(
    request: Request, file: Annotated[UploadFile, File()], model: Annotated[str, Form()]
) -> dict[str, Any]:
    """A classify adapter's answer for one clip: `{"label", "confidence", "scores": {label: probability}}`."""
    audio = await _read_audio(file, request.app.state.limits)
    return await _answer(request, "classify", (audio, model))


async def _read_audio(file: UploadFile, limits: ServerLimits) -> np.ndarray:
    """The upload's samples; ApiError 413 on `file` past `limits.max_upload_bytes` (`--max-upload-mib`), which the
    body limit lets through by up to `FORM_BYTES` (the form around the file)."""
    limit = limits.max_upload_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, f"the file is over {limit / MIB:g} MiB, this server's limit (--max-upload-mib)",
                       param="file", code="file_too_large")  # fmt: skip
    return await run_in_threadpool(decode_audio, data)


def decode_audio(data: bytes) -> np.ndarray:
    """Mono float32 samples at the bank's rate of a file in any format FFmpeg reads (`audio_input.decode_audio`:
    resampled, mixed down, checked); ApiError (400, on `file`) for what that refuses, with its reason."""
    try:
        return read_audio(data, SAMPLE_RATE).samples
    except AudioInputError as error:
        raise ApiError(400, str(error), param="file", code="invalid_audio") from error


def _encode(waveform: np.ndarray, sample_rate: int, response_format: str) -> bytes:
    pcm = (np.clip(np.asarray(waveform, dtype=np.float32), -1.0, 1.0) * 32767).astype("<i2")
    if response_format == "pcm":
        return pcm.tobytes()
    buffer = io.BytesIO()
    sf.write(buffer, pcm, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def serve(options: ServeOptions) -> int:
    """Load the bank (and --adapters, pinned) and serve until interrupted; returns the exit status."""
    import uvicorn

    bank = AdapterBank(options.store, device=options.device, precision=options.precision,
                       max_bytes=options.max_bytes, default_backbone=options.backbone)  # fmt: skip
    for name in options.adapters:
        bank.load(name, pin=True)
    app = create_app(bank, api_key=options.api_key, max_batch_size=options.max_batch_size,
                     max_wait_ms=options.max_wait_ms, limits=options.limits(),
                     allow_adapter_paths=options.allow_adapter_paths, pull_from_hub=options.pull_from_hub)  # fmt: skip
    config = uvicorn.Config(app, host=options.host, port=options.port, log_level="info",
                            limit_concurrency=options.max_connections)  # fmt: skip
    hide_secret(options.api_key)  # after uvicorn.Config set up its log handlers
    server = uvicorn.Server(config)
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return 0 if server.started else 1  # not started: uvicorn logged why (e.g. the port is taken)
