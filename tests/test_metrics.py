"""/metrics: the bridge's counts, histograms and scrape-time gauges, read back with prometheus-client's own parser."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families
from prometheus_client.parser import text_string_to_metric_families

from claude_bridge.claude.events import Usage
from claude_bridge.metrics import Metrics, Readings
from claude_bridge.planlimits import PlanLimits
from claude_bridge.report import TurnReport

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"


@dataclass
class State:
    """What the bridge would report at scrape time; tests change it between scrapes."""

    running: int = 0
    queued: int = 0
    warm: int = 0
    live: int = 0
    plan: PlanLimits | None = None

    def readings(self) -> Readings:
        return Readings(
            lambda: self.running, lambda: self.queued, lambda: self.warm, lambda: self.live, lambda: self.plan
        )


def samples(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the text exposition, by name and labels."""
    body, content_type = metrics.exposition("text/plain")
    assert content_type.startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, frozenset(labels.items())))


def report(started: float = 100.0, first: float | None = 100.3, finished: float | None = 101.5) -> TurnReport:
    usage = Usage(input_tokens=10, output_tokens=20, cache_read_input_tokens=300, cache_creation_input_tokens=40)
    return TurnReport(usage=usage, cost_usd=0.0125, started=started, first_text=first, finished=finished)


@pytest.fixture
def state() -> State:
    return State()


@pytest.fixture
def metrics(state: State) -> Metrics:
    return Metrics(state.readings())


def test_requests_are_counted_by_endpoint_and_status(metrics: Metrics) -> None:
    metrics.observe(CHAT, 200, report())
    metrics.observe(CHAT, 200, report())
    metrics.observe(CHAT, 429, None)
    metrics.observe(RESPONSES, 200, report())

    assert value(metrics, "claude_bridge_requests_total", endpoint=CHAT, status="200") == 2
    assert value(metrics, "claude_bridge_requests_total", endpoint=CHAT, status="429") == 1
    assert value(metrics, "claude_bridge_requests_total", endpoint=RESPONSES, status="200") == 1


def test_tokens_by_kind_and_cost_add_up(metrics: Metrics) -> None:
    metrics.observe(CHAT, 200, report())
    metrics.observe(RESPONSES, 200, report())
    metrics.observe(CHAT, 400, None)

    tokens = {
        kind: value(metrics, "claude_bridge_tokens_total", kind=kind)
        for kind in ("input", "output", "cache_read", "cache_write")
    }
    assert tokens == {"input": 20, "output": 40, "cache_read": 600, "cache_write": 80}
    assert value(metrics, "claude_bridge_cost_usd_total") == pytest.approx(0.025)


def test_time_to_first_token_and_duration_fall_in_their_buckets(metrics: Metrics) -> None:
    metrics.observe(CHAT, 200, report(first=100.03, finished=100.4))
    metrics.observe(CHAT, 200, report(first=101.0, finished=800.0))
    metrics.observe(CHAT, 502, report(first=None, finished=100.5))  # failed before any output

    first = "claude_bridge_time_to_first_token_seconds"
    assert value(metrics, f"{first}_count", endpoint=CHAT) == 2
    assert value(metrics, f"{first}_sum", endpoint=CHAT) == pytest.approx(1.03)
    assert value(metrics, f"{first}_bucket", endpoint=CHAT, le="0.02") == 0
    assert value(metrics, f"{first}_bucket", endpoint=CHAT, le="0.05") == 1
    assert value(metrics, f"{first}_bucket", endpoint=CHAT, le="1.0") == 2
    took = "claude_bridge_request_duration_seconds"
    assert value(metrics, f"{took}_count", endpoint=CHAT) == 3
    assert value(metrics, f"{took}_bucket", endpoint=CHAT, le="0.5") == 2
    assert value(metrics, f"{took}_bucket", endpoint=CHAT, le="600.0") == 2
    assert value(metrics, f"{took}_bucket", endpoint=CHAT, le="+Inf") == 3


def test_gauges_are_read_when_scraped(metrics: Metrics, state: State) -> None:
    state.running, state.queued, state.warm, state.live = 3, 1, 2, 5
    assert [value(metrics, name) for name in GAUGES] == [3, 1, 2, 5]

    state.running, state.queued = 0, 0
    assert [value(metrics, name) for name in GAUGES] == [0, 0, 2, 5]


GAUGES = (
    "claude_bridge_runs_in_flight",
    "claude_bridge_runs_queued",
    "claude_bridge_warm_clis",
    "claude_bridge_live_sessions",
)


def test_no_plan_metrics_before_the_cli_reported_any(metrics: Metrics) -> None:
    assert not [name for name, _ in samples(metrics) if name.startswith("claude_bridge_plan_")]


def test_plan_limits_as_gauges(metrics: Metrics, state: State) -> None:
    state.plan = PlanLimits(
        status="allowed_warning", window="five_hour", utilization=0.82, resets_at=1_800_000_000, seen_at=1_799_990_000.5
    )

    assert value(metrics, "claude_bridge_plan_status", status="allowed_warning") == 1
    assert value(metrics, "claude_bridge_plan_status", status="allowed") == 0
    assert value(metrics, "claude_bridge_plan_status", status="rejected") == 0
    assert value(metrics, "claude_bridge_plan_utilization", window="five_hour") == 0.82
    assert value(metrics, "claude_bridge_plan_reset_timestamp_seconds") == 1_800_000_000
    assert value(metrics, "claude_bridge_plan_using_overage") == 0
    assert value(metrics, "claude_bridge_plan_seen_timestamp_seconds") == 1_799_990_000.5

    state.plan = PlanLimits(status="rejected", using_overage=True, seen_at=1_799_990_100)
    assert value(metrics, "claude_bridge_plan_status", status="rejected") == 1
    assert value(metrics, "claude_bridge_plan_using_overage") == 1
    assert value(metrics, "claude_bridge_plan_utilization", window="five_hour") is None


def test_an_unknown_plan_status_still_shows(metrics: Metrics, state: State) -> None:
    state.plan = PlanLimits(status="throttled", seen_at=1)

    assert value(metrics, "claude_bridge_plan_status", status="throttled") == 1
    assert value(metrics, "claude_bridge_plan_status", status="allowed") == 0


def test_openmetrics_when_the_scraper_asks_for_it(metrics: Metrics) -> None:
    metrics.observe(CHAT, 200, report())

    body, content_type = metrics.exposition("application/openmetrics-text; version=1.0.0, text/plain;q=0.5")

    assert content_type.startswith("application/openmetrics-text")
    families = {family.name: family for family in openmetrics_families(body.decode())}
    (requests,) = [s for s in families["claude_bridge_requests"].samples if s.name == "claude_bridge_requests_total"]
    assert (requests.labels, requests.value) == ({"endpoint": CHAT, "status": "200"}, 1)


def test_each_metrics_has_its_own_registry(state: State) -> None:
    first, second = Metrics(state.readings()), Metrics(state.readings())
    first.observe(CHAT, 200, None)

    assert value(first, "claude_bridge_requests_total", endpoint=CHAT, status="200") == 1
    assert value(second, "claude_bridge_requests_total", endpoint=CHAT, status="200") is None


def test_an_observation_without_an_endpoint_is_refused(metrics: Metrics) -> None:
    with pytest.raises(ValueError, match="endpoint"):
        metrics.observe("", 200, None)
