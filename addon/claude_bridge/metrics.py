"""`GET /metrics`: what the bridge served and spent, in Prometheus' format, by the official prometheus-client.

A registry of the bridge's own, not the library's global one: two bridges in one process (the tests) or a host
application's metrics never mix with these. Counts of requests, tokens and cost are counted as requests finish
(`observe`); the state of runs, processes and the plan's limits is read when Prometheus scrapes, from callables the
owner of that state passes in, so it is never stale and nothing has to be kept in step.

Token kinds are Anthropic's, as billed: `input` (not read from or written to the prompt cache), `output`,
`cache_read`, `cache_write`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from .planlimits import PlanLimits
from .report import TurnReport

# From a warm CLI's first token (~20 ms) to the longest run the bridge allows by default (claude_total_timeout 900 s
# caps it; a run past 600 s lands in +Inf).
SECONDS_BUCKETS = (0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)

PLAN_STATUSES = ("allowed", "allowed_warning", "rejected")


@dataclass(frozen=True)
class Readings:
    """Where the scrape-time gauges read from: each a cheap call on the bridge's event loop thread."""

    runs_in_flight: Callable[[], int]
    runs_queued: Callable[[], int]
    warm_clis: Callable[[], int]
    live_sessions: Callable[[], int]
    plan_limits: Callable[[], PlanLimits | None]


class Metrics:
    """The bridge's metrics: `observe` each finished request, serve `exposition` on /metrics."""

    def __init__(self, readings: Readings) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "claude_bridge_requests",
            "Requests answered, by endpoint and HTTP status",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self._tokens = Counter("claude_bridge_tokens", "Tokens billed, by kind", ["kind"], registry=self.registry)
        self._cost = Counter(
            "claude_bridge_cost_usd", "Cost of the runs as the CLI reported it, in USD", registry=self.registry
        )
        self._first_token = Histogram(
            "claude_bridge_time_to_first_token_seconds",
            "From the run's start to the first text or tool call sent to the client",
            ["endpoint"],
            buckets=SECONDS_BUCKETS,
            registry=self.registry,
        )
        self._duration = Histogram(
            "claude_bridge_request_duration_seconds",
            "From the run's start to its end",
            ["endpoint"],
            buckets=SECONDS_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StateCollector(readings))

    def observe(self, endpoint: str, status: int, report: TurnReport | None) -> None:
        """One finished request: its endpoint (e.g. "/v1/chat/completions") and the HTTP status the client got;
        `report` is None for a request answered without a CLI run (refused, a validation error)."""
        if not endpoint:
            raise ValueError("observe needs the request's endpoint")
        self._requests.labels(endpoint, str(status)).inc()
        if report is None:
            return
        usage = report.usage
        for kind, count in (
            ("input", usage.input_tokens),
            ("output", usage.output_tokens),
            ("cache_read", usage.cache_read_input_tokens),
            ("cache_write", usage.cache_creation_input_tokens),
        ):
            self._tokens.labels(kind).inc(count)
        self._cost.inc(report.cost_usd)
        if report.first_text is not None:
            self._first_token.labels(endpoint).observe(report.first_text - report.started)
        if report.finished is not None:
            self._duration.labels(endpoint).observe(report.finished - report.started)

    def exposition(self, accept_header: str | None) -> tuple[bytes, str]:
        """The body and Content-Type for /metrics: Prometheus text, or OpenMetrics when the scraper asks for it."""
        encode, content_type = choose_encoder(accept_header or "")
        return encode(self.registry), content_type


class _StateCollector(Collector):
    """Gauges read at scrape time."""

    def __init__(self, readings: Readings) -> None:
        self._readings = readings

    def collect(self) -> Iterator[Metric]:
        readings = self._readings
        yield _gauge("claude_bridge_runs_in_flight", "CLI runs under way", readings.runs_in_flight())
        yield _gauge("claude_bridge_runs_queued", "Requests waiting for a run slot", readings.runs_queued())
        yield _gauge("claude_bridge_warm_clis", "Pre-started CLIs waiting for a request", readings.warm_clis())
        yield _gauge(
            "claude_bridge_live_sessions", "CLIs kept for a conversation's next turn", readings.live_sessions()
        )
        yield from _plan_metrics(readings.plan_limits())


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _plan_metrics(plan: PlanLimits | None) -> Iterator[Metric]:
    """The plan's standing as the CLI last reported it; nothing until it has reported once."""
    if plan is None:
        return
    status = GaugeMetricFamily(
        "claude_bridge_plan_status", "1 for the plan's current rate-limit status, 0 for the others", labels=["status"]
    )
    for name in (*PLAN_STATUSES, *([plan.status] if plan.status and plan.status not in PLAN_STATUSES else [])):
        status.add_metric([name], 1 if name == plan.status else 0)
    yield status
    if plan.utilization is not None:
        utilization = GaugeMetricFamily(
            "claude_bridge_plan_utilization", "Fraction of the deciding window used (1 = all of it)", labels=["window"]
        )
        utilization.add_metric([plan.window or ""], plan.utilization)
        yield utilization
    if plan.resets_at is not None:
        yield _gauge("claude_bridge_plan_reset_timestamp_seconds", "When the deciding window resets", plan.resets_at)
    yield _gauge(
        "claude_bridge_plan_using_overage", "1 while requests are billed as paid overage", int(plan.using_overage)
    )
    yield _gauge("claude_bridge_plan_seen_timestamp_seconds", "When the CLI reported this state", plan.seen_at)
