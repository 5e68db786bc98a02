"""`speechpeft serve`: an OpenAI-compatible HTTP API over one `AdapterBank`.

The server only translates: each request becomes a bank call, and concurrent requests naming different adapters
are batched (`speechpeft.batching`) into one mixed call, one adapter per sample. The bank does the model work.
The `model` of a request is an adapter name (`asr/lora-a`, resident or in the store) or `__base__`.
"""

from __future__ import annotations

import asyncio
import io
import secrets
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
from speechpeft.batching import DynamicBatcher
from speechpeft.errors import MissingInputError
from speechpeft.serve_options import ServeOptions
from speechpeft.server_admin import add_admin_routes
from speechpeft.server_errors import ApiError, add_error_handlers
from speechpeft.server_metrics import ServerMetrics

SAMPLE_RATE = 16_000  # Hz: what every audio input is decoded to
MAX_UPLOAD_BYTES = 25 * 1024 * 1024  # 25 MiB, OpenAI's limit for an audio upload
MAX_SPEECH_CHARACTERS = 4096  # OpenAI's limit for `input`
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
    bank: AdapterBank, *, api_key: str | None = None, max_batch_size: int = 8, max_wait_ms: float = 10.0
) -> FastAPI:
    """The app over `bank`; with `api_key`, every path but /health needs `Authorization: Bearer KEY`."""
    metrics = ServerMetrics(bank, max_batch_size)
    batchers = {
        "transcribe": _batcher(metrics, "transcribe", max_batch_size, max_wait_ms, bank_call(bank, "transcribe")),
        "classify": _batcher(metrics, "classify", max_batch_size, max_wait_ms, bank_call(bank, "classify")),
        "synthesize": _batcher(metrics, "synthesize", 1, 0.0, bank_call(bank, "synthesize")),  # one at a time
    }

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for batcher in batchers.values():
            batcher.start()
        yield
        await asyncio.gather(*(batcher.close() for batcher in batchers.values()))

    app = FastAPI(title="speechpeft", version=__version__, lifespan=lifespan)
    app.state.bank, app.state.batchers, app.state.metrics = bank, batchers, metrics
    app.state.started = time.time()
    add_error_handlers(app)
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


def _batcher(metrics: ServerMetrics, operation: str, size: int, wait_ms: float, run: Callable) -> DynamicBatcher:
    observe = metrics.batch_size.labels(operation).observe
    return DynamicBatcher(run, max_batch_size=size, max_wait_ms=wait_ms, on_batch=observe, name=operation)


async def _answer(request: Request, operation: str, item: tuple[Any, str], group: Any = None) -> Any:
    """The bank's answer for one request, via its batcher; an adapter that does not exist is a 404 on `model`."""
    try:
        return await request.app.state.batchers[operation].submit(item, group)
    except MissingInputError as error:
        raise ApiError(404, str(error), param="model", code="model_not_found") from error


def _metered_and_authorised(metrics: ServerMetrics, api_key: str | None) -> Callable:
    """Middleware: a 401 without the key (except /health), and every request counted and timed by route."""
    expected = f"Bearer {api_key}".encode() if api_key else None

    async def middleware(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start, status = time.perf_counter(), 500
        try:
            given = request.headers.get("authorization", "").encode()
            if expected and request.url.path != "/health" and not secrets.compare_digest(given, expected):
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
    audio = await _read_audio(file)
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
    if not body.input.strip() or len(body.input) > MAX_SPEECH_CHARACTERS:
        raise ApiError(400, f"input must hold 1 to {MAX_SPEECH_CHARACTERS} characters", param="input")
    if body.speed != 1.0:
        raise ApiError(400, "speed other than 1.0 is not supported", param="speed")
    waveform = await _answer(request, "synthesize", (body.input, body.model))
    content = await run_in_threadpool(_encode, waveform, request.app.state.bank.sample_rate, body.response_format)
    return Response(content, media_type=SPEECH_FORMATS[body.response_format])


async def classify(
    request: Request, file: Annotated[UploadFile, File()], model: Annotated[str, Form()]
) -> dict[str, Any]:
    """A classify adapter's answer for one clip: `{"label", "confidence", "scores": {label: probability}}`."""
    audio = await _read_audio(file)
    return await _answer(request, "classify", (audio, model))


async def _read_audio(file: UploadFile) -> np.ndarray:
    data = await file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise ApiError(413, f"the file is over {MAX_UPLOAD_BYTES // 2**20} MiB", param="file")
    return await run_in_threadpool(decode_audio, data)


def decode_audio(data: bytes) -> np.ndarray:
    """Mono float32 samples at 16 kHz of a file in any format FFmpeg reads; ApiError (400) when it is none."""
    from torchcodec.decoders import AudioDecoder

    if not data:
        raise ApiError(400, "the uploaded file is empty", param="file")
    try:
        samples = AudioDecoder(data, sample_rate=SAMPLE_RATE).get_all_samples().data
    except (RuntimeError, ValueError) as error:
        reason = str(error).strip().splitlines()[-1].split(": ", 1)[-1] if str(error).strip() else type(error).__name__
        raise ApiError(400, f"could not decode the uploaded file as audio ({reason}); send WAV, FLAC, MP3, OGG or "
                       "another format FFmpeg reads", param="file") from error  # fmt: skip
    if samples.numel() == 0:
        raise ApiError(400, "the uploaded audio holds no samples", param="file")
    return samples.mean(0).numpy().astype(np.float32, copy=False)


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
                     max_wait_ms=options.max_wait_ms)  # fmt: skip
    uvicorn.run(app, host=options.host, port=options.port, log_level="info")
    return 0
