"""What the server does against clients that send too much, too slowly, or watch its logs.

`BodyLimit` reads a request body as the app asks for it and stops at the route's limit: a declared
Content-Length over it is refused before a byte is read, a streamed (chunked) body as soon as it passes it,
and a body still arriving `upload_timeout_s` after the request began is refused with a 408. `hide_secret`
keeps the API key out of every log line, should a client put it in a URL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote

from starlette.exceptions import HTTPException

from speechpeft.serve_options import MIB, ServerLimits
from speechpeft.server_errors import ApiError

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]
REDACTED = "[redacted]"
SERVER_LOGGERS = ("", "uvicorn", "uvicorn.access", "uvicorn.error")  # the root one, and uvicorn's own handlers


class BodyRefused(ApiError, HTTPException):
    """A body over its limit (413) or too slow (408). An HTTPException too, so that FastAPI, which turns any other
    error of reading a body into a 400, lets it through to the error handlers."""

    def __init__(self, status: int, message: str, code: str) -> None:
        ApiError.__init__(self, status, message, code=code, headers={"Connection": "close"})
        self.status_code, self.detail = status, message


class BodyLimit:
    """ASGI middleware: each request's body limited to `limits.max_body_bytes(path)` and `limits.upload_timeout_s`."""

    def __init__(self, app: ASGIApp, limits: ServerLimits) -> None:
        self.app, self.limits = app, limits

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.max_body_bytes(scope["path"])
        declared = content_length(scope)
        if declared is not None and declared > limit:
            await too_large(limit).response()(scope, receive, send)
            return
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited(receive, limit, self.limits.upload_timeout_s), send_tracked)
        except BodyRefused as refusal:  # raised where no error handler saw it
            if started:
                raise
            await refusal.response()(scope, receive, send)


def limited(receive: Receive, limit: int, timeout_s: float) -> Receive:
    """`receive` raising BodyRefused once the body passes `limit` bytes or is unfinished after `timeout_s`."""
    deadline, received, finished = time.monotonic() + timeout_s, 0, False

    async def receive_limited() -> Message:
        nonlocal received, finished
        if finished:  # after the body the app only listens for a disconnect: no deadline
            return await receive()
        try:
            message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0))
        except TimeoutError:
            raise BodyRefused(408, f"the request body took longer than {timeout_s:g} s to arrive; send it at "
                              "once", code="request_timeout") from None  # fmt: skip
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            finished = not message.get("more_body", False)
            if received > limit:
                raise too_large(limit)
        return message

    return receive_limited


def too_large(limit: int) -> BodyRefused:
    size = f"{limit / MIB:.1f} MiB" if limit >= MIB else f"{limit / 1024:.0f} KiB"
    return BodyRefused(413, f"the request body is over {size}, this route's limit", code="request_too_large")


def content_length(scope: MutableMapping[str, Any]) -> int | None:
    """The request's declared Content-Length; None when it has none (a chunked body) or an unreadable one."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


class SecretFilter(logging.Filter):
    """Replaces `secret` (as typed, or percent-encoded as in a logged URL) with "[redacted]" in each record's
    message and arguments."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret, self.forms = secret, {secret, quote(secret, safe=""), quote(secret)}

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = self._redacted(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._redacted(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: self._redacted(value) for key, value in record.args.items()}
        return True

    def _redacted(self, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        for form in self.forms:
            value = value.replace(form, REDACTED)
        return value


def hide_secret(secret: str | None, loggers: tuple[str, ...] = SERVER_LOGGERS) -> None:
    """Filter `secret` out of every handler of `loggers` (after uvicorn configured its logging). The key travels
    only in the Authorization header, which nothing logs; this covers a client that puts it in a URL."""
    if not secret:
        return
    for name in loggers:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, SecretFilter) and f.secret == secret for f in handler.filters):
                handler.addFilter(SecretFilter(secret))
