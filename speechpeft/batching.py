"""Dynamic batching: concurrent requests gathered into one model call, run off the event loop.

A `DynamicBatcher` takes requests one at a time (`await batcher.submit(item, group)`) and hands a worker thread
lists of them: as many as arrived within `max_wait_ms` of the first, up to `max_batch_size`. While the worker is
busy, newcomers queue, so under load each call takes whatever piled up meanwhile. Requests with different
`group`s (e.g. beam widths) never share a call: one met while gathering waits for the next batch. When a batched
call raises, each request of it is run again alone, so one bad request (an unknown adapter, a wrong task) gets
its own error and its batch-mates their answers.

Bounds: at most `max_queue` requests wait or run at once (the next gets `QueueFull` at once), and each waits at
most `timeout_s` for its answer (`RequestTimeout`, saying whether its batch had started). A request given up
before its batch starts (timed out, or its client went away) is never computed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

RunBatch = Callable[[list[Any], Hashable], Sequence[Any]]  # (items, group) -> one result per item, same order


class QueueFull(RuntimeError):
    """`max_queue` requests are already waiting or running: come back later."""


class RequestTimeout(TimeoutError):
    """No answer within `timeout_s`; `started`: whether its batch had begun (else it never will)."""

    def __init__(self, message: str, *, started: bool) -> None:
        super().__init__(message)
        self.started = started


@dataclass
class _Request:
    item: Any
    group: Hashable
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)  # seconds, monotonic clock
    started: bool = False  # its batch has been handed to the worker


class DynamicBatcher:
    """Gathers requests into batches for `run_batch`, which runs in one worker thread of its own.

    `on_batch(size)` is called on the event loop for every call made (metrics); `name` names the worker thread;
    `max_queue` and `timeout_s` (None: unbounded) bound the requests held and the wait for each.
    """

    def __init__(
        self,
        run_batch: RunBatch,
        *,
        max_batch_size: int = 8,
        max_wait_ms: float = 10.0,
        on_batch: Callable[[int], None] | None = None,
        name: str = "batcher",
        max_queue: int | None = None,
        timeout_s: float | None = None,
    ) -> None:
        bad_queue, bad_timeout = max_queue is not None and max_queue < 1, timeout_s is not None and timeout_s <= 0
        if max_batch_size < 1 or not 0 <= max_wait_ms < math.inf or bad_queue or bad_timeout:  # nan fails both
            raise ValueError("max_batch_size and max_queue must be >= 1, max_wait_ms finite and >= 0, timeout_s > 0")
        self.run_batch, self.max_batch_size, self.max_wait_s = run_batch, max_batch_size, max_wait_ms / 1000
        self.max_queue, self.timeout_s = max_queue, timeout_s
        self._pending = 0  # requests submitted and not yet answered or given up: waiting, or in the running call
        self.on_batch = on_batch or (lambda size: None)
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._task: asyncio.Task | None = None
        self._batch: list[_Request] = []  # the batch being collected or run
        self._held: list[_Request] = []  # collected for a batch of another group: first in line for the next

    def start(self) -> None:
        """Start collecting; call from the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._collect_forever())

    @property
    def pending(self) -> int:
        """Requests waiting or running now."""
        return self._pending

    async def submit(self, item: Any, group: Hashable = None) -> Any:
        """The result of `item`, computed in some batch of requests of the same `group`; raises what its run raised,
        QueueFull when `max_queue` requests are pending, RequestTimeout after `timeout_s`."""
        if self._task is None or self._task.done():
            raise RuntimeError("the batcher is not running (start() it from the event loop; not after close())")
        if self.max_queue is not None and self._pending >= self.max_queue:
            raise QueueFull(f"{self._pending} requests are already waiting or running (the limit)")
        request = _Request(item, group, asyncio.get_running_loop().create_future())
        self._pending += 1
        try:
            async with asyncio.timeout(self.timeout_s) as deadline:  # on expiry the future is cancelled: skipped
                self._queue.put_nowait(request)
                return await request.future
        except TimeoutError as error:
            if not deadline.expired():  # raised by run_batch itself
                raise
            message = f"no answer within {self.timeout_s:g} s ({'computing' if request.started else 'in the queue'})"
            raise RequestTimeout(message, started=request.started) from error
        finally:
            self._pending -= 1

    async def close(self) -> None:
        """Stop collecting, fail whatever still waits, and join the worker thread (its running call finishes)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        waiting = self._batch + self._held + [self._queue.get_nowait() for _ in range(self._queue.qsize())]
        for request in waiting:
            _settle(request.future, error=RuntimeError("the server is shutting down"))
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    async def _collect_forever(self) -> None:
        while True:
            self._batch = []
            await self._collect(self._batch)
            await self._run(self._batch)

    async def _collect(self, batch: list[_Request]) -> None:
        """Into `batch` (in place, so that close() finds them): the oldest request, then those of its group that
        arrive within max_wait of it, up to max_batch_size. Requests of other groups are held for later batches."""
        batch.append(self._held.pop(0) if self._held else await self._queue.get())
        group, deadline = batch[0].group, batch[0].arrived + self.max_wait_s
        for request in [r for r in self._held if r.group == group][: self.max_batch_size - 1]:
            self._held.remove(request)
            batch.append(request)
        while len(batch) < self.max_batch_size:
            request = await self._next(deadline)
            if request is None:
                break
            (batch if request.group == group else self._held).append(request)
        batch[:] = [request for request in batch if not request.future.done()]  # cancelled: the client went away

    async def _next(self, deadline: float) -> _Request | None:
        """The next queued request, waiting for one until `deadline` (monotonic seconds); None after it."""
        if not self._queue.empty():
            return self._queue.get_nowait()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        try:
            return await asyncio.wait_for(self._queue.get(), remaining)
        except TimeoutError:
            return None

    async def _run(self, batch: list[_Request]) -> None:
        """One call for the whole batch; on failure, one call per request, each settling its own future."""
        batch = [request for request in batch if not request.future.done()]  # given up meanwhile: not computed
        if not batch:
            return
        for request in batch:
            request.started = True
        loop = asyncio.get_running_loop()
        items, group = [request.item for request in batch], batch[0].group
        self.on_batch(len(batch))
        try:
            results = await loop.run_in_executor(self._executor, self._call, items, group)
        except Exception as error:
            if len(batch) == 1:
                _settle(batch[0].future, error=error)
                return
            log.info("a batch of %d failed (%s); running each request alone", len(batch), error)
            for request in batch:
                await self._run([request])
            return
        for request, result in zip(batch, results, strict=True):
            _settle(request.future, result=result)

    def _call(self, items: list[Any], group: Hashable) -> list[Any]:
        results = list(self.run_batch(items, group))
        if len(results) != len(items):
            raise RuntimeError(f"run_batch returned {len(results)} results for {len(items)} requests")
        return results


def _settle(future: asyncio.Future, *, result: Any = None, error: BaseException | None = None) -> None:
    if future.done():  # cancelled meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
