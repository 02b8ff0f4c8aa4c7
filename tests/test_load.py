"""A hundred concurrent clients against the run cap and its queue: each gets its own answer, nothing leaks."""

from __future__ import annotations

import time

from load import Tally, burst, open_fds, rss_mb

CLIENTS = 100
ROUNDS = 3
MAX_RUNS, MAX_QUEUED = 4, 16
# Python keeps freed memory for reuse rather than returning it, so "back to baseline" allows for allocator slack.
RSS_SLACK_MB = 16


async def test_a_hundred_concurrent_clients_are_each_answered_and_nothing_leaks(start_bridge, fake):
    bridge = start_bridge(f"claude_max_runs={MAX_RUNS}", f"claude_max_queued={MAX_QUEUED}", "claude_max_retries=0")
    pid = bridge.process.pid
    async with bridge.async_client(timeout=120) as client:
        await burst(client, CLIENTS, Tally())  # warms imports, caches and the allocator
    bridge.wait_idle()
    baseline_rss, baseline_fds = rss_mb(pid), open_fds(pid)

    tallies = []
    for _ in range(ROUNDS):
        tally = Tally()
        async with bridge.async_client(timeout=120) as client:
            await burst(client, CLIENTS, tally)
        tallies.append(tally)
    bridge.wait_idle()
    deadline = time.monotonic() + 10
    while open_fds(pid) > baseline_fds and time.monotonic() < deadline:
        time.sleep(0.1)

    for tally in tallies:
        assert tally.failures == []
        assert tally.mixed_up == 0
        assert tally.sent == CLIENTS
        assert tally.answered >= MAX_RUNS + MAX_QUEUED, "the cap and the queue were held"
        assert tally.busy > 0, "the load went past the cap and queue"
    assert open_fds(pid) <= baseline_fds
    assert rss_mb(pid) - baseline_rss < RSS_SLACK_MB
    print(
        f"load: {ROUNDS} x {CLIENTS} concurrent clients, "
        f"answered {[t.answered for t in tallies]}, busy (429) {[t.busy for t in tallies]}; "
        f"RSS {baseline_rss:.1f} -> {rss_mb(pid):.1f} MB; fds {baseline_fds} -> {open_fds(pid)}"
    )
