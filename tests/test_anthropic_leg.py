"""bridge_inspect_claude: the CLI's own API calls through the bridge, each beside the request it served, no login shown.

Real bridge, real CLI, the fake API; the flows are read as mitmproxy saved them (save_stream_file).
"""

from __future__ import annotations

import json
import re
import socket
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import http, io
from test_lifecycle import open_chat
from test_tools_e2e import ASK, WEATHER

from claude_bridge.anthropic_leg import api_address
from claude_bridge.claude.invocation import ApiProxy, proxy_env
from claude_bridge.redact import REDACTED
from conftest import free_port, wait_for
from fake_anthropic import TEST_TOKEN, FakeAnthropic, Reply, ToolUse
from tls_server import cert_pem, make_ca, server_context

WEB = "leg-test-token"
LEG_LINE = re.compile(r"Claude's API calls \(to [^)]+\) go through 127\.0\.0\.1:(\d+)")


def saved_flows(path: Path, count: int) -> list[http.HTTPFlow]:
    """The flows in `path` once it holds `count` of them (each is written when its response ends), without the
    /health checks that tell when the bridge is ready."""
    flows: list[http.HTTPFlow] = []

    def read() -> bool:
        nonlocal flows
        try:
            with path.open("rb") as f:
                flows = [flow for flow in io.FlowReader(f).stream() if flow.request.path != "/health"]
        except (OSError, ValueError):  # not there yet, or a flow half written
            return False
        return len(flows) >= count

    wait_for(read, f"{count} flows in {path}")
    return flows


def streamed_text(response: http.Response) -> str:
    """The text of an Anthropic Messages stream, from its text deltas."""
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    return "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta")


def anthropic_flows(flows: list[http.HTTPFlow]) -> list[http.HTTPFlow]:
    return [flow for flow in flows if flow.request.path.startswith("/v1/messages")]


def openai_flow(flows: list[http.HTTPFlow], path: str) -> http.HTTPFlow:
    (flow,) = [flow for flow in flows if flow.request.path == path]
    return flow


@pytest.fixture
def saved(tmp_path) -> Path:
    return tmp_path / "flows.mitm"


def test_a_chat_request_has_its_anthropic_call_beside_it_linked_both_ways(start_bridge, fake, saved):
    bridge = start_bridge("bridge_inspect_claude=true", f"save_stream_file={saved}")
    answer = bridge.client().chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "ECHO: hi"

    flows = saved_flows(saved, 2)
    (call,) = anthropic_flows(flows)
    chat = openai_flow(flows, "/v1/chat/completions")
    assert (call.request.method, call.request.url) == ("POST", f"{fake.url}/v1/messages?beta=true")
    assert json.loads(call.request.content)["messages"][0]["content"] == [{"type": "text", "text": "hi"}]
    assert call.response.status_code == 200
    assert call.response.headers["content-type"].startswith("text/event-stream")
    assert call.response.text.startswith("event: message_start") and streamed_text(call.response) == "ECHO: hi"
    assert f"of run {chat.id[:8]}: POST /v1/chat/completions" in call.comment
    assert chat.comment.endswith(f"| run {chat.id[:8]}: Claude API flows {call.id[:8]}")


def test_a_tool_calling_request_and_its_follow_up_each_have_their_own_call(start_bridge, fake, saved):
    bridge = start_bridge("bridge_inspect_claude=true", f"save_stream_file={saved}")
    client = bridge.client()
    fake.enqueue(ToolUse((("get_weather", {"city": "Paris"}),)), Reply(("It is sunny.",)))
    first = client.chat.completions.create(model="gpt-4o", messages=ASK, tools=[WEATHER], stream=True)
    (call,) = [tool for chunk in first for tool in chunk.choices[0].delta.tool_calls or () if tool.id]
    asked_for = {
        "id": call.id,
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    follow_up = [*ASK, {"role": "assistant", "tool_calls": [asked_for]},
                 {"role": "tool", "tool_call_id": call.id, "content": "Sunny"}]  # fmt: skip
    second = client.chat.completions.create(model="gpt-4o", messages=follow_up, tools=[WEATHER])
    assert second.choices[0].message.content == "It is sunny."

    flows = saved_flows(saved, 4)
    asked, answered = anthropic_flows(flows)
    chats = [flow for flow in flows if flow.request.path == "/v1/chat/completions"]
    assert '"type": "tool_use"' in asked.response.text and streamed_text(answered.response) == "It is sunny."
    for chat, api_call in zip(chats, (asked, answered), strict=True):
        assert f"of run {chat.id[:8]}" in api_call.comment
        assert chat.comment.endswith(f"Claude API flows {api_call.id[:8]}")


def test_the_login_reaches_the_api_but_no_saved_flow_and_the_tag_never_leaves(start_bridge, fake, saved):
    bridge = start_bridge("bridge_inspect_claude=true", f"save_stream_file={saved}")
    bridge.client().chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])

    (call,) = anthropic_flows(saved_flows(saved, 2))
    received = {name.lower(): value for name, value in fake.requests[-1].headers.items()}
    assert received["authorization"] == "<redacted>", "the API was sent the login (the fake records it redacted)"
    assert "x-claude-bridge-cli" not in received
    assert call.request.headers["authorization"] == "<redacted by claude-bridge>"
    assert TEST_TOKEN.encode() not in saved.read_bytes()
    assert TEST_TOKEN not in bridge.log.read_text()


@pytest.mark.parametrize(
    ("directive", "answering"),
    [("[[fake:hang]]", False), ("[[fake:stall text=partial]]", True)],
    ids=["before-the-answer", "while-it-streams"],
)
def test_mitmweb_never_holds_the_login_of_a_call_in_flight(start_bridge, fake, directive, answering):
    """mitmweb publishes a flow when its request arrives, after every hook, and to GET /flows at any time: neither
    its websocket, its flow list nor its flow dump may hold the token, while the API holds its answer or after."""
    import websocket  # websocket-client, which Selenium brings

    web = free_port()
    bridge = start_bridge(
        "bridge_inspect_claude=true", "web_open_browser=false", f"web_port={web}", f"web_password={WEB}", web=True
    )
    updates = websocket.create_connection(f"ws://127.0.0.1:{web}/updates", header=[f"Authorization: Bearer {WEB}"])
    try:
        client = open_chat(bridge, directive)  # the API takes the call, and never answers or stops mid-answer

        def in_flight() -> list[dict[str, Any]]:
            calls = [flow for flow in mitmweb(web, "/flows") if "Claude API call" in flow["comment"]]
            return [flow for flow in calls if ("response" in flow) == answering and fake.requests]

        wait_for(in_flight, "the API call in flight")
        (call,) = in_flight()
        assert call["request"]["path"].startswith("/v1/messages" if answering else "/claude-bridge/relay/")
        assert [value for name, value in call["request"]["headers"] if name.lower() == "authorization"] == [REDACTED]
        assert TEST_TOKEN not in json.dumps(mitmweb(web, "/flows"))
        assert TEST_TOKEN.encode() not in mitmweb(web, "/flows/dump", raw=True)
        assert fake.requests[-1].headers["Authorization"] == "<redacted>", "the API was sent the login itself"

        client.close()  # the run is cancelled, its CLI stopped, the call cut
        published = [updates.recv()]
        while not re.search(rf'"id": ?"{call["id"]}".*"error": ?{{', published[-1]):
            published.append(updates.recv())
    finally:
        updates.close()
    assert [message for message in published if call["id"] in message][1:], "the call was published as it went"
    assert not [message for message in published if TEST_TOKEN in message]
    (ended,) = [flow for flow in mitmweb(web, "/flows") if flow["id"] == call["id"]]
    assert (ended["request"]["scheme"], ended["request"]["path"]) == ("http", "/v1/messages?beta=true")
    assert TEST_TOKEN.encode() not in mitmweb(web, "/flows/dump", raw=True)


def mitmweb(port: int, path: str, *, raw: bool = False) -> Any:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {WEB}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        body = answer.read()
    return body if raw else json.loads(body)


def test_with_the_option_off_the_cli_calls_the_api_itself_and_no_anthropic_flow_is_kept(start_bridge, fake, saved):
    bridge = start_bridge("claude_pool_size=1", f"save_stream_file={saved}")
    bridge.client().chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])

    assert [flow.request.path for flow in saved_flows(saved, 1)] == ["/v1/chat/completions"]
    wait_for(bridge.claude_children, "a warm CLI")
    (pid,) = bridge.claude_children()
    cli, own = cli_environment(pid), cli_environment(bridge.process.pid)
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "NODE_EXTRA_CA_CERTS", "ANTHROPIC_CUSTOM_HEADERS"):
        assert cli.get(name) == own.get(name), name
    assert "go through" not in bridge.log.read_text()


def test_with_the_option_on_each_cli_is_pointed_at_the_bridge_and_trusts_its_ca(start_bridge, fake, tmp_path):
    company_ca = tmp_path / "company-ca.pem"
    company_ca.write_bytes(cert_pem(make_ca("company CA")[0]))
    bridge = start_bridge(
        "claude_pool_size=1", "bridge_inspect_claude=true", env={"NODE_EXTRA_CA_CERTS": str(company_ca)}
    )
    bridge.client().chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])

    wait_for(bridge.claude_children, "a warm CLI")
    (pid,) = bridge.claude_children()
    env = cli_environment(pid)
    port = LEG_LINE.search(bridge.log.read_text())[1]  # type: ignore[index]
    assert env["HTTPS_PROXY"] == env["HTTP_PROXY"] == f"http://127.0.0.1:{port}"
    trusted = Path(env["NODE_EXTRA_CA_CERTS"]).read_bytes()
    assert bridge.ca_cert.read_bytes().strip() in trusted and company_ca.read_bytes().strip() in trusted
    assert env["ANTHROPIC_BASE_URL"] == fake.url, "the API's address is the CLI's own"
    assert re.fullmatch(r"x-claude-bridge-cli: [0-9a-f]{8}", env["ANTHROPIC_CUSTOM_HEADERS"])


def test_an_https_api_is_decrypted_on_the_leg_with_the_bridges_ca(start_bridge, tmp_path):
    """The real API's case: the CLI asks the leg to CONNECT to the API host, which allow_hosts (the bridged hosts
    only) would tunnel; the leg decrypts it, the CLI trusting the bridge's CA, mitmproxy the API's."""
    context, api_ca = server_context(tmp_path)
    saved = tmp_path / "flows.mitm"
    with FakeAnthropic(tls=context) as api:
        bridge = start_bridge(
            "bridge_inspect_claude=true",
            f"save_stream_file={saved}",
            f"ssl_verify_upstream_trusted_ca={api_ca}",
            env={"ANTHROPIC_BASE_URL": api.url},
        )
        answer = bridge.client().chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        assert answer.choices[0].message.content == "ECHO: hi"
        (call,) = anthropic_flows(saved_flows(saved, 2))
        assert call.request.url == f"{api.url}/v1/messages?beta=true"
        assert streamed_text(call.response) == "ECHO: hi"
        assert "authorization" in {name.lower() for name in api.requests[-1].headers}
    assert TEST_TOKEN.encode() not in saved.read_bytes()


def test_the_leg_still_refuses_connections_to_bridged_hosts(start_bridge, fake):
    bridge = start_bridge("bridge_inspect_claude=true")
    port = int(LEG_LINE.search(bridge.log.read_text())[1])  # type: ignore[index]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        sock.sendall(b"\x16\x03\x01\x00\x05hello")  # anything: the tunnel dials when data comes
        assert sock.recv(4096) == b"", "closed, nothing from api.openai.com"
    bridge.log_once(lambda log: "that no request hook answered" in log)
    assert "Refused a connection to ('api.openai.com', 443)" in bridge.log.read_text()


def cli_environment(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(entry.decode().partition("=")[::2] for entry in raw.split(b"\0") if b"=" in entry)


def test_proxy_env_keeps_the_users_own_headers_and_drops_no_proxy():
    proxy = ApiProxy("http://127.0.0.1:9", "/ca.pem")
    users = {"ANTHROPIC_CUSTOM_HEADERS": "X-Team: a", "NO_PROXY": "*", "no_proxy": "*"}
    env = proxy_env(proxy, "0a1b2c3d", users, Path("/run/ca.pem"))
    assert env["ANTHROPIC_CUSTOM_HEADERS"] == "X-Team: a\nx-claude-bridge-cli: 0a1b2c3d"
    assert "NO_PROXY" not in env and "no_proxy" not in env
    assert env["https_proxy"] == env["HTTPS_PROXY"] == "http://127.0.0.1:9"


@pytest.mark.parametrize(
    ("base_url", "address"),
    [(None, ("api.anthropic.com", 443)), ("http://127.0.0.1:8999", ("127.0.0.1", 8999)),
     ("https://gateway.example/anthropic", ("gateway.example", 443))],
)  # fmt: skip
def test_the_api_address_is_the_clis_base_url_or_anthropics(base_url, address):
    assert api_address(base_url) == address


def test_a_base_url_the_cli_could_not_call_is_refused():
    with pytest.raises(ValueError, match="not an http"):
        api_address("unix:/tmp/socket")
