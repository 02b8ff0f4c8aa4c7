"""The money side end to end: the plan's limits the real CLI reports reach /health, answers' headers, the log and
/metrics (parsed by prometheus-client's own parser), with the fake API sending the real API's rate-limit headers."""

from __future__ import annotations

import contextlib
import time
import urllib.error

import openai
from prometheus_client.parser import text_string_to_metric_families

from fake_plan_limits import UnifiedLimits


def metrics(bridge) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = bridge.get("/metrics").read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_plan_limits_reach_health_headers_and_the_log(start_bridge, fake):
    bridge = start_bridge()
    assert bridge.health()["plan_limits"] is None, "nothing known before a run"
    fake.server.plan_limits = sent = UnifiedLimits.warning(time.time(), utilization=0.82)
    client = bridge.client()
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    health = bridge.health()["plan_limits"]
    assert health["status"] == "allowed_warning" and health["utilization"] == 0.82
    assert health["resets_at"] == sent.resets_at
    bridge.log_once(lambda line: "plan limits: allowed_warning" in line and "82% used" in line)
    # The next answer carries the state as headers (streamed: the headers leave before this run reports).
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "again"}], stream=True
    )
    list(raw.parse())
    assert raw.headers["x-claude-ratelimit-status"] == "allowed_warning"
    assert raw.headers["x-claude-ratelimit-utilization"] == "0.82"
    assert int(raw.headers["x-claude-ratelimit-reset"]) == sent.resets_at
    assert raw.headers["x-ratelimit-reset-requests"].endswith("s")


def test_metrics_count_requests_tokens_cost_and_read_the_runner(start_bridge, fake):
    bridge = start_bridge()
    client = bridge.client()
    for stream in (False, True):
        answer = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], stream=stream
        )
        if stream:
            list(answer)
    client.models.list()
    with_key = openai.OpenAI(base_url=f"{bridge.url}/v1", api_key="x", max_retries=0)
    with contextlib.suppress(openai.NotFoundError):
        with_key.embeddings.create(model="text-embedding-3-small", input="x")
    try:
        bridge.get(f"/v1/no/such/{'x' * 50}")
    except urllib.error.HTTPError as e:
        assert e.code == 404
    bridge.wait_idle()
    seen = metrics(bridge)
    chat = ("endpoint", "/v1/chat/completions")
    assert seen[("claude_bridge_requests_total", (chat, ("status", "200")))] == 2
    assert seen[("claude_bridge_requests_total", (("endpoint", "/v1/models"), ("status", "200")))] == 1
    assert seen[("claude_bridge_requests_total", (("endpoint", "other"), ("status", "404")))] == 2, "one label"
    assert seen[("claude_bridge_tokens_total", (("kind", "output"),))] > 0
    assert seen[("claude_bridge_cost_usd_total", ())] > 0
    assert seen[("claude_bridge_time_to_first_token_seconds_count", (chat,))] == 2
    assert seen[("claude_bridge_runs_in_flight", ())] == 0
    # A CLI's first answer reports the plan's state even when the API sent no limits: allowed.
    assert seen[("claude_bridge_plan_status", (("status", "allowed"),))] == 1
    assert seen[("claude_bridge_plan_using_overage", ())] == 0
