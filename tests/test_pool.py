"""The warm pool and the run limit, proven with processes and requests (no timings: those are the benchmark's)."""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import threading
import urllib.request
import weakref

import openai
import pytest

from claude_bridge.claude.invocation import ClaudeInvocation, ClaudeSettings
from claude_bridge.claude.pool import ClaudePool
from conftest import alive, wait_for
from fake_anthropic import Gate, Reply, Stall, system_text

HI = [{"role": "user", "content": "hi"}]


def health(bridge) -> dict:
    with urllib.request.urlopen(bridge.url + "/health", timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture
def pooled(start_bridge):
    return start_bridge("claude_pool_size=2", "claude_pool_idle=600")


def test_a_shape_seen_once_is_kept_warm_and_each_warm_cli_serves_one_request(pooled, fake):
    client = pooled.client()
    messages = [{"role": "system", "content": "Pool A."}, *HI]
    client.chat.completions.create(model="sonnet", messages=messages)  # a fresh CLI; the shape is now kept warm
    wait_for(lambda: health(pooled)["warm_clis"] == 2)
    warm = set(pooled.claude_children())
    assert len(warm) == 2
    for round_ in range(3):
        answer = client.chat.completions.create(model="sonnet", messages=messages)
        assert answer.choices[0].message.content == "ECHO: hi"
        wait_for(lambda: health(pooled)["warm_clis"] == 2)
        now = set(pooled.claude_children())
        assert len(warm - now) == 1, f"round {round_}: one warm CLI was used and is gone"
        assert len(now - warm) == 1, "and a new one took its place"
        warm = now
    assert all("Pool A." in system_text(request.body) for request in fake.requests)
    sessions = [request.headers.get("X-Claude-Code-Session-Id") for request in fake.requests]
    assert len(set(sessions)) == len(sessions) == 4, "no CLI ever served two requests"


def test_a_warm_cli_never_serves_another_shape(pooled, fake):
    client = pooled.client()
    client.chat.completions.create(model="sonnet", messages=[{"role": "system", "content": "Prompt one."}, *HI])
    wait_for(lambda: health(pooled)["warm_clis"] == 2)
    client.chat.completions.create(model="sonnet", messages=[{"role": "system", "content": "Prompt two."}, *HI])
    client.chat.completions.create(model="opus", messages=[{"role": "system", "content": "Prompt one."}, *HI])
    _, second, third = fake.requests
    assert "Prompt two." in system_text(second.body) and "Prompt one." not in system_text(second.body)
    assert third.body["model"] == "claude-opus-5-5"


def test_requests_that_need_their_own_start_up_take_a_fresh_cli(pooled, fake):
    client = pooled.client()
    client.chat.completions.create(model="sonnet", messages=HI)
    wait_for(lambda: health(pooled)["warm_clis"] == 2)
    warm = set(pooled.claude_children())
    history = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}, *HI]
    client.chat.completions.create(model="sonnet", messages=history)
    assert set(pooled.claude_children()) == warm, "the history went to a fresh CLI; the warm ones wait"


def test_warm_clis_expire_when_idle(start_bridge, fake):
    bridge = start_bridge("claude_pool_size=1", "claude_pool_idle=1")
    bridge.client().chat.completions.create(model="sonnet", messages=HI)
    wait_for(lambda: health(bridge)["warm_clis"] == 1)
    wait_for(lambda: health(bridge)["warm_clis"] == 0 and not bridge.claude_children() and not bridge.run_dirs())


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
def test_warm_clis_die_with_the_bridge(start_bridge, fake, signal_name):
    bridge = start_bridge("claude_pool_size=2")
    bridge.client().chat.completions.create(model="sonnet", messages=HI)
    wait_for(lambda: len(bridge.claude_children()) == 2)
    pids = bridge.claude_children()
    bridge.process.send_signal(getattr(signal, signal_name))
    bridge.process.wait(10)
    wait_for(lambda: not any(alive(pid) for pid in pids), seconds=5)


def test_the_run_cap_queues_then_refuses_with_429(start_bridge, fake):
    bridge = start_bridge("claude_max_runs=1", "claude_max_queued=1")
    gate = Gate(("held", " then released"))
    fake.enqueue(gate, Reply(("queued one",)))
    results: dict[str, str] = {}

    def call(name: str) -> None:
        completion = bridge.client(timeout=30).chat.completions.create(model="sonnet", messages=HI)
        results[name] = completion.choices[0].message.content

    first = threading.Thread(target=call, args=("first",))
    first.start()
    assert gate.reached.wait(20), "the first request holds the only run"
    second = threading.Thread(target=call, args=("second",))
    second.start()
    wait_for(lambda: health(bridge)["runs_queued"] == 1)
    with pytest.raises(openai.RateLimitError) as caught:
        bridge.client().chat.completions.create(model="sonnet", messages=HI)
    assert caught.value.response.headers["retry-after"] == "5"
    assert caught.value.code == "bridge_busy"
    gate.release.set()
    first.join(30)
    second.join(30)
    assert results == {"first": "held then released", "second": "queued one"}
    assert health(bridge)["runs_in_flight"] == 0


def test_a_queued_request_whose_client_leaves_frees_its_place(start_bridge, fake):
    bridge = start_bridge("claude_max_runs=1", "claude_max_queued=1")
    fake.enqueue(Stall(("stuck",)))
    stream = bridge.client().chat.completions.create(model="sonnet", messages=HI, stream=True)
    next(iter(stream))
    with pytest.raises(openai.APITimeoutError):
        bridge.client(timeout=1.0).chat.completions.create(model="sonnet", messages=HI)
    wait_for(lambda: health(bridge)["runs_queued"] == 0)
    stream.close()
    wait_for(lambda: health(bridge)["runs_in_flight"] == 0)


async def test_a_taken_warm_cli_is_not_kept_alive_by_its_idle_timer(claude_bin):
    """Each served warm CLI used to stay referenced by its expiry timer for claude_pool_idle seconds (a leak)."""
    settings = ClaudeSettings(claude_bin=claude_bin)
    pool = ClaudePool(settings, size=1, shapes=1, idle_expiry=600, has_room=lambda: True)
    invocation = ClaudeInvocation(model="sonnet", prompt=[])
    assert pool.take(invocation) is None  # the shape is seen: keep it warm from now on
    pool.refill(invocation)
    while not pool.warm:
        await asyncio.sleep(0.05)
    claude = pool.take(invocation)
    assert claude is not None
    await claude.discard(0)
    served = weakref.ref(claude)
    del claude
    gc.collect()
    assert served() is None
    await pool.close()
