"""Options of `speechpeft serve` (a light module: the CLI imports it for --help), and the binding check."""

from __future__ import annotations

import ipaddress
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from speechpeft.errors import InputError
from speechpeft.options import help_text as _help

API_KEY_ENV = "SPEECHPEFT_API_KEY"
PRECISIONS = ("auto", "fp32", "bf16", "int8")
MIB = 1 << 20  # bytes
MAX_UPLOAD_MIB = 25.0  # OpenAI's limit for an audio upload
MAX_JSON_BYTES = 1 * MIB  # any body but an audio upload (a speech request's input is at most 4096 characters)
FORM_BYTES = 64 << 10  # 64 KiB: an upload's multipart boundaries and form fields, beside the file
UPLOAD_PATHS = ("/v1/audio/transcriptions", "/v1/classify")  # the routes that take an audio file


@dataclass(frozen=True)
class ServerLimits:
    """What one request may cost the server; the flags of `ServeOptions` say what each does."""

    max_upload_bytes: int = int(MAX_UPLOAD_MIB * MIB)
    max_json_bytes: int = MAX_JSON_BYTES
    max_queue: int = 64
    request_timeout_s: float = 300.0
    upload_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if min(self.max_upload_bytes, self.max_json_bytes, self.max_queue) < 1:
            raise InputError("--max-upload-mib and --max-queue must be positive")
        if not all(0 < seconds < math.inf for seconds in (self.request_timeout_s, self.upload_timeout_s)):
            raise InputError("--request-timeout-s and --upload-timeout-s must be positive")

    def max_body_bytes(self, path: str) -> int:
        """The largest request body `path` takes: an upload's file plus its form, else a JSON body."""
        return self.max_upload_bytes + FORM_BYTES if path in UPLOAD_PATHS else self.max_json_bytes


@dataclass(frozen=True)
class ServeOptions:
    """Serve an OpenAI-compatible HTTP API over one adapter bank."""

    host: str = field(default="127.0.0.1", metadata=_help("address to bind; anything but loopback needs --api-key"))
    port: int = field(default=8000, metadata=_help("TCP port"))
    store: Path | None = field(default=None, metadata=_help("adapter store (default: $SPEECHPEFT_ADAPTERS)"))
    backbone: str | None = field(
        default=None, metadata=_help("backbone that model `__base__` names (a built-in name, directory or Hub id)")
    )
    adapters: tuple[str, ...] = field(
        default=(), metadata=_help("adapters to load at start and pin (store names or adapter directories)")
    )
    max_bytes: int = field(default=1 << 30, metadata=_help("resident adapter memory before evicting, in bytes"))
    max_batch_size: int = field(default=8, metadata=_help("requests gathered into one batched model call"))
    max_wait_ms: float = field(
        default=10.0, metadata=_help("how long a batch waits for more requests after its first, in milliseconds")
    )
    api_key: str | None = field(
        default=None, repr=False, metadata=_help(f"bearer token all but /health need (default: ${API_KEY_ENV}: "
                                                 "better, as other users can read flags in `ps`)")
    )  # fmt: skip
    max_upload_mib: float = field(
        default=MAX_UPLOAD_MIB, metadata=_help("largest audio upload in MiB; a larger body gets 413 before it is read")
    )
    max_queue: int = field(
        default=ServerLimits.max_queue,
        metadata=_help("requests of one kind (transcribe, classify, speech) queued or computing; more get 503"),
    )
    request_timeout_s: float = field(
        default=ServerLimits.request_timeout_s,
        metadata=_help("seconds a request may wait for its answer: 503 if never started (not computed), else 504"),
    )
    upload_timeout_s: float = field(
        default=ServerLimits.upload_timeout_s,
        metadata=_help("seconds a client may take to send a request body; slower gets 408"),
    )
    max_connections: int = field(default=256, metadata=_help("open connections at once; more get uvicorn's plain 503"))
    allow_adapter_paths: bool = field(
        default=False,
        metadata=_help("let POST /v1/adapters load any directory the server can read, by `path` (trusted clients)"),
    )
    pull_from_hub: bool = field(
        default=False, metadata=_help("let requests name Hub repos the store lacks, which the server then downloads")
    )
    precision: str = field(default="auto", metadata=_help("fp32, bf16, int8 or auto"))
    device: str | None = field(default=None, metadata=_help("torch device, e.g. cpu or cuda:0 (default: the best)"))

    def __post_init__(self) -> None:
        object.__setattr__(self, "api_key", self.api_key or os.environ.get(API_KEY_ENV) or None)
        if not 0 <= self.port <= 65535:
            raise InputError(f"--port {self.port}: use 0-65535")
        if self.max_bytes < 1 or self.max_batch_size < 1:
            raise InputError("--max-bytes and --max-batch-size must be positive")
        if not 0 <= self.max_wait_ms < math.inf:  # nan fails both comparisons; inf would hold a batch for ever
            raise InputError(f"--max-wait-ms {self.max_wait_ms}: use a finite number of milliseconds, 0 or more")
        if self.precision not in PRECISIONS:
            raise InputError(f"--precision {self.precision!r}: choose {', '.join(PRECISIONS)}")
        if self.max_connections < 1 or not 0 < self.max_upload_mib < math.inf:
            raise InputError("--max-connections and --max-upload-mib must be positive")
        self.limits()  # checks the limits' flags
        check_binding(self.host, self.api_key)

    def limits(self) -> ServerLimits:
        upload = int(self.max_upload_mib * MIB)
        return ServerLimits(upload, MAX_JSON_BYTES, self.max_queue, self.request_timeout_s, self.upload_timeout_s)


def is_loopback(host: str) -> bool:
    """Whether `host` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost may resolve to anything
        return False


def check_binding(host: str, api_key: str | None) -> None:
    """Refuse to serve without an API key on any address other machines can reach (InputError names the fix)."""
    if api_key is None and not is_loopback(host):
        raise InputError(
            f"--host {host} accepts connections from other machines: set an API key with --api-key KEY or "
            f"${API_KEY_ENV}, or bind --host 127.0.0.1"
        )
