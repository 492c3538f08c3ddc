"""The server's Prometheus metrics (``GET /metrics``), on prometheus_client with a registry of its own.

Requests by route and status, prompt and generated tokens, the queue and the
running batch, and two latency histograms: time to first token (submission to
the first sampled token: queueing plus prefill) and the time between two tokens
of one stream (what a reader of a streamed answer feels).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from herd.serve.scheduler import Scheduler

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServerMetrics:
    """The metrics of one server; the scheduler feeds the histograms from its thread."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = Counter(
            "herd_requests", "HTTP requests answered", ["route", "status"], registry=registry
        )
        registry.register(_TokenCounters(scheduler))
        Gauge("herd_queue_length", "requests waiting for a row", registry=registry).set_function(
            lambda: scheduler.waiting
        )
        Gauge("herd_running_sequences", "sequences in the decode batch", registry=registry).set_function(
            lambda: scheduler.running
        )
        self.first_token = Histogram(
            "herd_time_to_first_token_seconds",
            "from a request's arrival to its first token",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.inter_token = Histogram(
            "herd_inter_token_latency_seconds",
            "between two tokens of one stream",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        scheduler.on_first_token = self.first_token.observe
        scheduler.on_token = self.inter_token.observe

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _TokenCounters(Collector):
    """The scheduler's own token counts, read when the page is scraped."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def collect(self) -> Iterator[CounterMetricFamily]:
        stats = self.scheduler.stats
        yield CounterMetricFamily("herd_prompt_tokens", "prompt tokens prefilled", value=stats.prompt_tokens)
        yield CounterMetricFamily("herd_generated_tokens", "tokens generated", value=stats.generated_tokens)
