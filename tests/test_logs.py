"""What the console says: the start-up banner, one line per request, and the same as JSON lines."""

from __future__ import annotations

import json
import re

import openai
import pytest
from mitmproxy.test import taddons

from claude_bridge.addon import ClaudeBridge
from claude_bridge.banner import banner


def the_banner(bridge) -> str:
    return bridge.log_once(lambda log: " ready, answering with " in log, "the start-up banner")


def test_the_banner_says_where_to_point_an_app(bridge, claude_version):
    log = the_banner(bridge)
    assert f"claude-bridge 0.1.0 ready, answering with Claude Code CLI {claude_version}" in log
    assert f"export OPENAI_BASE_URL=http://127.0.0.1:{bridge.port}/v1" in log
    assert "runs: 8 at once, 32 queued; warm pool off; live sessions off; access key off (loopback only)" in log


def test_the_banner_of_a_proxy_names_the_ca(start_bridge, tmp_path):
    bridge = start_bridge(mode="regular", confdir=tmp_path / "certs")
    log = the_banner(bridge)
    assert f"export HTTPS_PROXY=http://127.0.0.1:{bridge.port}" in log
    assert f"CA certificate apps must trust: {tmp_path / 'certs' / 'mitmproxy-ca-cert.pem'}" in log


def request_lines(bridge, count: int) -> list[str]:
    """The last `count` request lines, once there are that many."""

    def lines(log: str) -> list[str]:
        return [line for line in log.splitlines() if re.search(r"\] (GET|POST) /", line)]

    return lines(bridge.log_once(lambda log: len(lines(log)) >= count, f"{count} request lines"))[-count:]


def test_each_request_gets_one_line_with_what_happened(start_bridge, fake):
    bridge = start_bridge()
    client = bridge.client()
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    client.models.list()
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="x")
    chat, models, refused = request_lines(bridge, 3)
    assert re.search(
        r"POST /v1/chat/completions -> 200 gpt-4o as claude-\S+: finished \(end_turn\) by (a new|a warm) CLI; "
        r"first token \d+ ms; \d+ ms; tokens in \d+ \(cache read \d+, written \d+\) out \d+; \$\d+\.\d{4}; "
        r"runs \d+, queued \d+, warm \d+, live \d+$",
        chat,
    ), chat
    assert "GET /v1/models -> 200: " in models
    assert "POST /v1/embeddings -> 404: refused with 404: Invalid URL" in refused


def test_json_logs_are_one_object_per_line_with_the_request_fields(start_bridge, fake):
    bridge = start_bridge("bridge_log_format=json")
    bridge.client().chat.completions.create(model="sonnet", messages=[{"role": "user", "content": "hi"}])
    log = bridge.log_once(lambda log: '"path": "/v1/chat/completions"' in log, "the chat request's JSON line")
    entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    (chat,) = [entry for entry in entries if entry.get("path") == "/v1/chat/completions"]
    assert chat["method"] == "POST"
    assert chat["status"] == 200
    assert chat["model"] == "sonnet"
    assert chat["claude_model"].startswith("claude-")
    assert chat["outcome"] == "finished (end_turn)"
    assert chat["tokens_out"] > 0
    assert chat["ttft_ms"] <= chat["duration_ms"]
    assert {"time", "level", "logger", "message", "cost_usd", "runs", "queued", "warm"} <= chat.keys()
    assert any(entry["message"].startswith("claude-bridge 0.1.0 ready") for entry in entries)
    # Everything mitmproxy and the bridge log is JSON; only the launcher's own notes, printed before, are not.
    assert all(line.startswith("{") for line in bridge.log.read_text().splitlines())


def test_the_banner_gives_urls_for_ipv6_and_the_listen_port_option():
    addon = ClaudeBridge()
    with taddons.context(addon) as tctx:
        modes = ["regular", "reverse:https://api.openai.com@3456"]
        tctx.configure(addon, mode=modes, listen_host="::1", listen_port=9000)
        lines = banner(tctx.options, "claude", "2.1.331")
    assert "  proxy on ::1:9000: export HTTPS_PROXY=http://[::1]:9000 (see proxy-env)" in lines
    assert "  reverse proxy on ::1:3456: export OPENAI_BASE_URL=http://[::1]:3456/v1" in lines


def test_log_lines_appear_as_they_happen_when_redirected_to_a_file(start_bridge):
    """Without PYTHONUNBUFFERED (as under `./scripts/bridge > bridge.log`), a redirected stdout is block-buffered."""
    bridge = start_bridge(env={"PYTHONUNBUFFERED": ""})
    bridge.health()
    log = bridge.log_once(lambda log: "GET /health -> 200" in log, "the /health request's line")
    assert "ready, answering with" in log and "GET /health -> 200" in log
