"""The server's Prometheus metrics, in a registry of its own (so several servers can live in one process)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)  # seconds


class ServerMetrics:
    """Requests by endpoint and status, latency by endpoint, requests per model call by operation, and the
    bank's own counters (`bank.stats()`), read at each scrape."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, bank: Any, max_batch_size: int) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("speechpeft_http_requests", "HTTP requests by endpoint and status",
                                ["endpoint", "status"], registry=self.registry)  # fmt: skip
        self.latency = Histogram("speechpeft_http_request_seconds", "HTTP request latency in seconds, by endpoint",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=self.registry)  # fmt: skip
        self.batch_size = Histogram("speechpeft_batch_size", "requests per model call, by operation", ["operation"],
                                    buckets=batch_buckets(max_batch_size), registry=self.registry)  # fmt: skip
        self.registry.register(BankCollector(bank))

    def watch_queues(self, batchers: dict[str, Any]) -> None:
        """Export each batcher's requests waiting or computing (`pending`), by operation, at each scrape."""
        self.registry.register(QueueCollector(batchers))

    def render(self) -> bytes:
        """The exposition text (it calls `bank.stats()`: run it off the event loop)."""
        return generate_latest(self.registry)


def batch_buckets(max_batch_size: int) -> tuple[float, ...]:
    """Upper bounds 1, 2, 4, ... up to the largest batch: a batch of more than one lands above the first bucket."""
    bounds, bound = [], 1
    while bound < max_batch_size:
        bounds.append(float(bound))
        bound *= 2
    return (*bounds, float(max_batch_size))


class BankCollector:
    """The bank's counters and gauges, read from `bank.stats()` at scrape time."""

    def __init__(self, bank: Any) -> None:
        self.bank = bank

    def collect(self) -> Iterator[Metric]:
        stats = self.bank.stats()
        for key, what in (("loads", "adapter loads"), ("unloads", "adapter unloads"), ("evictions", "evictions")):
            yield CounterMetricFamily(f"speechpeft_adapter_{key}", f"{what} since start", value=stats.get(key, 0))
        gauges = (("resident", "speechpeft_resident_adapters", "adapters resident now"),
                  ("resident_bytes", "speechpeft_resident_bytes", "bytes of resident adapters"),
                  ("max_bytes", "speechpeft_max_bytes", "resident bytes allowed before evicting"))  # fmt: skip
        for key, name, what in gauges:
            if key in stats:
                yield GaugeMetricFamily(name, what, value=_count(stats[key]))


class QueueCollector:
    """Requests queued or computing now, by operation (what `--max-queue` bounds)."""

    def __init__(self, batchers: dict[str, Any]) -> None:
        self.batchers = batchers

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily("speechpeft_queued_requests", "requests waiting or computing, by operation",
                                  labels=["operation"])  # fmt: skip
        for operation, batcher in self.batchers.items():
            gauge.add_metric([operation], batcher.pending)
        yield gauge


def _count(value: Any) -> float:
    """A number of a stat; `resident` may be a count or a list of names."""
    return float(len(value)) if isinstance(value, list | tuple | set | dict) else float(value)
