"""The service's Prometheus metrics (``/metrics``): request counts and latencies, tender outcomes."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram


class Metrics:
    """The service's Prometheus metrics, in their own registry (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "cmc_http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "cmc_http_request_duration_seconds",
            "HTTP request latency",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.transactions = Counter(
            "cmc_transactions", "SendTransaction outcomes", ["outcome"], registry=self.registry
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request and its latency (labelled series looked up once, then reused)."""
        key = (method, route, status)
        series = self._children.get(key)
        if series is None:
            series = (self.requests.labels(method, route, str(status)), self.latency.labels(route))
            self._children[key] = series
        series[0].inc()
        series[1].observe(seconds)
