"""Spend end to end: the ledger's rows for every endpoint, apps by key and by User-Agent, budgets and paid overage
refused with OpenAI's insufficient_quota, `claude-bridge usage`, and all of it kept across a restart. The real
bridge and CLI, the fake API (which sends the real API's rate-limit headers), the openai SDK over sockets."""

from __future__ import annotations

import datetime
import json
import subprocess
import sys
import time

import openai
import pytest

from claude_bridge import periods
from claude_bridge.claude.events import Usage
from claude_bridge.ledger import FILENAME, Entry, Ledger
from claude_bridge.report import TurnReport
from conftest import wait_for
from fake_anthropic import Reply, ToolUse
from fake_plan_limits import UnifiedLimits

ASK = [{"role": "user", "content": "hi"}]
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}


def rows(bridge, count: int) -> list[Entry]:
    """The ledger's rows once `count` are written (the bridge writes them on a thread of its own)."""
    found: list[Entry] = []

    def written() -> bool:
        nonlocal found
        ledger = Ledger(bridge.confdir / FILENAME, keep_days=None)
        try:
            found = ledger.entries()
        finally:
            ledger.close()
        return len(found) >= count

    wait_for(written, f"{count} ledger rows")
    return found


def usage(bridge) -> dict:
    shown = subprocess.run(
        [sys.executable, "-m", "claude_bridge", "usage", "--confdir", str(bridge.confdir), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(shown.stdout)


def test_every_endpoint_writes_its_row_under_its_app(start_bridge, fake):
    # With a live session the agent's step continues in the CLI that made the call, as by default.
    bridge = start_bridge(
        "bridge_app_keys=notes=sk-notes-key", "bridge_app_keys=agent=sk-agent-key", "claude_live_sessions=1"
    )
    notes = openai.OpenAI(base_url=f"{bridge.url}/v1", api_key="sk-notes-key", max_retries=0)
    notes.chat.completions.create(model="gpt-4o", messages=ASK)
    list(notes.chat.completions.create(model="gpt-4o", messages=ASK, stream=True))
    notes.responses.create(model="gpt-4o", input="hi")
    list(notes.responses.create(model="gpt-4o", input="hi", stream=True))
    notes.completions.create(model="gpt-3.5-turbo-instruct", prompt="hi")
    agent = openai.OpenAI(base_url=f"{bridge.url}/v1", api_key="sk-agent-key", max_retries=0)
    fake.enqueue(ToolUse((("get_weather", {"city": "Oslo"}),)))
    first = agent.chat.completions.create(model="gpt-4o", messages=ASK, tools=[WEATHER])
    (call,) = first.choices[0].message.tool_calls
    fake.enqueue(Reply(("Sunny.",)))
    answer = {"role": "tool", "tool_call_id": call.id, "content": "sunny"}
    follow_up = [*ASK, first.choices[0].message.model_dump(exclude_none=True), answer]
    agent.chat.completions.create(model="gpt-4o", messages=follow_up, tools=[WEATHER])
    written = rows(bridge, 7)
    assert [(row.app, row.endpoint, row.stream) for row in written] == [
        ("notes", "/v1/chat/completions", False),
        ("notes", "/v1/chat/completions", True),
        ("notes", "/v1/responses", False),
        ("notes", "/v1/responses", True),
        ("notes", "/v1/completions", False),
        ("agent", "/v1/chat/completions", False),
        ("agent", "/v1/chat/completions", False),
    ]
    for row in written:
        assert row.status == 200 and row.outcome == "finished" and row.claude_model
        assert row.input_tokens + row.cache_read_tokens + row.cache_write_tokens > 0
        assert row.output_tokens > 0 and row.total_ms is not None
    assert written[5].detail == "tool_use" and written[6].detail == "end_turn"
    # The CLI prices a turn only when it ends: a step ending in tool calls is priced with the step that continues it.
    assert all(row.cost_usd > 0 for row in written if row.detail != "tool_use")
    today = usage(bridge)["today"]
    apps = {app["app"]: app for app in today["apps"]}
    assert apps["notes"]["requests"] == 5 and apps["agent"]["requests"] == 2
    assert today["all"]["cost_usd"] == pytest.approx(sum(row.cost_usd for row in written))


def test_without_a_named_key_the_user_agent_names_the_app_and_rows_survive_a_restart(start_bridge, fake):
    bridge = start_bridge()
    bridge.client().chat.completions.create(model="gpt-4o", messages=ASK)
    (row,) = rows(bridge, 1)
    assert row.app == "OpenAI/Python"
    bridge.stop()
    again = start_bridge(confdir=bridge.confdir)
    again.client(default_headers={"User-Agent": "notes-app/2.1 (linux)"}).chat.completions.create(
        model="gpt-4o", messages=ASK
    )
    assert [row.app for row in rows(again, 2)] == ["OpenAI/Python", "notes-app"]


def spent_earlier(confdir, cost: float, at: datetime.datetime) -> None:
    """A row as an earlier run of the bridge wrote it."""
    done = TurnReport(claude_model="claude-sonnet-4-5", usage=Usage(input_tokens=1, output_tokens=1), cost_usd=cost)
    done.finish("end_turn")
    ledger = Ledger(confdir / FILENAME)
    try:
        ledger.record(
            Entry.of(
                done,
                app="OpenAI/Python",
                endpoint="/v1/chat/completions",
                model="gpt-4o",
                status=200,
                stream=False,
                at=at,
            )
        )
    finally:
        ledger.close()


def test_a_spent_daily_cap_refuses_with_insufficient_quota_and_yesterdays_spend_does_not_count(
    start_bridge, fake, tmp_path
):
    confdir = tmp_path / "certs"
    confdir.mkdir()
    now = periods.now()
    spent_earlier(confdir, 4.0, now - datetime.timedelta(days=1))
    bridge = start_bridge("bridge_budget_daily=1", confdir=confdir)
    bridge.client().chat.completions.create(model="gpt-4o", messages=ASK)  # yesterday's $4 is not today's
    spent_earlier(confdir, 1.0, now)
    with pytest.raises(openai.RateLimitError) as refused:
        bridge.client().chat.completions.create(model="gpt-4o", messages=ASK)
    error = refused.value
    assert error.code == "insufficient_quota" and error.type == "insufficient_quota"
    assert "daily" in error.message and "$1.00" in error.message and "midnight" in error.message
    assert int(error.response.headers["retry-after"]) > 0
    assert len(fake.requests) == 1, "the refused request never ran"


def test_a_cap_reached_mid_day_refuses_the_next_request_of_that_app_only(start_bridge, fake):
    bridge = start_bridge("bridge_budget_daily=OpenAI/Python=0.000001")
    client = bridge.client()
    client.chat.completions.create(model="gpt-4o", messages=ASK)
    rows(bridge, 1)  # its cost is written
    with pytest.raises(openai.RateLimitError) as refused:
        client.chat.completions.create(model="gpt-4o", messages=ASK)
    assert refused.value.code == "insufficient_quota" and "OpenAI/Python" in refused.value.message
    other = bridge.client(default_headers={"User-Agent": "other-app/1.0"})
    assert other.chat.completions.create(model="gpt-4o", messages=ASK).choices[0].message.content


@pytest.mark.parametrize("refuse", [True, False])
def test_paid_overage_is_refused_loudly_unless_allowed(start_bridge, fake, refuse):
    bridge = start_bridge(f"bridge_refuse_overage={str(refuse).lower()}")
    fake.server.plan_limits = UnifiedLimits.overage(time.time())
    client = bridge.client()
    client.chat.completions.create(model="gpt-4o", messages=ASK)  # the run that finds out
    wait_for(lambda: (bridge.health()["plan_limits"] or {}).get("using_overage"), "the overage state")
    bridge.log_once(lambda line: "PAID OVERAGE" in line)
    if refuse:
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model="gpt-4o", messages=ASK)
        assert refused.value.code == "insufficient_quota"
        assert "paid overage" in refused.value.message and "bridge_refuse_overage=false" in refused.value.message
        assert len(fake.requests) == 1
    else:
        assert client.chat.completions.create(model="gpt-4o", messages=ASK).choices[0].message.content
        assert len(fake.requests) == 2
    assert usage(bridge)["plan_limits"]["using_overage"] is True


def test_the_banner_says_the_plan_limits_an_earlier_run_saw(start_bridge, fake):
    bridge = start_bridge()
    fake.server.plan_limits = UnifiedLimits.warning(time.time(), utilization=0.82)
    bridge.client().chat.completions.create(model="gpt-4o", messages=ASK)
    wait_for(lambda: bridge.health()["plan_limits"], "the plan's state")
    bridge.stop()
    again = start_bridge(confdir=bridge.confdir)
    again.log_once(lambda line: "plan limits: allowed_warning" in line and "(last reported)" in line)
    assert again.health()["plan_limits"]["utilization"] == 0.82
