"""The addon's hooks in mitmproxy's test harness: options, routing, diversion to the backend and back."""

from __future__ import annotations

import json

import pytest
from mitmproxy import exceptions
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.proxy.server_hooks import ServerConnectionHookData
from mitmproxy.test import taddons, tflow, tutils

from claude_bridge import access, backend
from claude_bridge.addon import ClaudeBridge


def openai_flow(method: str, path: str, body: dict | None = None, host: str = "api.openai.com"):
    request = tutils.treq(
        method=method.encode(), scheme=b"https", host=host, port=443, path=path.encode(),
        content=json.dumps(body).encode() if body is not None else b"",
    )  # fmt: skip
    request.headers["Host"] = host
    request.headers["Content-Type"] = "application/json"
    flow = tflow.tflow(req=request)
    flow.client_conn.sni = host
    return flow


@pytest.fixture
async def bridge(claude_bin, tmp_path):
    addon = ClaudeBridge()
    with taddons.context(Proxyserver(), addon) as tctx:
        tctx.configure(addon, claude_bin=claude_bin, listen_host="127.0.0.1", confdir=str(tmp_path), claude_probe=False)
        await addon.running()
        yield addon
        await addon.done()


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("bridge_model_map", ["no-equals-sign"]),
        ("claude_idle_timeout", 0),
        ("claude_max_retries", -1),
        ("bridge_idle_timeout", 0),
    ],
)
def test_invalid_options_are_refused(option, value):
    addon = ClaudeBridge()
    with taddons.context(addon) as tctx, pytest.raises(exceptions.OptionsError):
        tctx.configure(addon, **{option: value})


async def test_running_makes_connections_lazy(bridge, claude_version):
    from mitmproxy import ctx

    assert ctx.options.connection_strategy == "lazy"
    assert bridge.cli.version == claude_version


async def test_other_hosts_are_left_alone(bridge):
    flow = openai_flow("POST", "/v1/chat/completions", {"model": "sonnet"}, host="example.com")
    bridge.request(flow)
    assert flow.response is None
    assert flow.request.host == "example.com"


async def test_a_transparently_captured_request_is_answered_by_its_sni_not_its_address(bridge):
    flow = openai_flow("GET", "/v1/models", host="192.0.2.10")  # the destination IP, as transparent mode sets it
    flow.client_conn.proxy_mode = ProxyMode.parse("transparent")
    flow.client_conn.sni = "api.openai.com"
    bridge.request(flow)
    assert flow.response.status_code == 200
    assert json.loads(flow.response.content)["object"] == "list"


async def test_a_request_naming_a_bridged_host_and_another_is_refused_not_forwarded(bridge):
    flow = openai_flow("POST", "/v1/chat/completions", {"model": "sonnet", "messages": []})
    flow.request.headers["Host"] = "elsewhere.example"
    bridge.requestheaders(flow)
    assert flow.response.status_code == 421
    error = json.loads(flow.response.content)["error"]
    assert error["code"] == "misdirected_request"
    assert "api.openai.com" in error["message"] and "elsewhere.example" in error["message"]


async def test_a_flow_that_is_not_live_is_left_alone(bridge):
    flow = openai_flow(
        "POST", "/v1/chat/completions", {"model": "sonnet", "messages": [{"role": "user", "content": "hi"}]}
    )
    flow.live = False  # read from a saved flow file
    bridge.requestheaders(flow)
    bridge.request(flow)
    assert flow.response is None
    assert flow.request.host == "api.openai.com"
    assert bridge.diversions.backend._parked == {}


@pytest.mark.parametrize(
    ("address", "sni", "policy", "refused"),
    [
        (("api.openai.com", 443), None, "error", True),
        (("192.0.2.10", 443), "api.openai.com", "error", True),  # transparent capture: the SNI names it
        (("example.com", 443), "example.com", "error", False),
        (("192.0.2.10", 443), "api.openai.com", "passthrough", False),
    ],
)
async def test_no_connection_to_a_bridged_host_opens_unless_passthrough_was_chosen(
    bridge, address, sni, policy, refused
):
    from mitmproxy import ctx

    ctx.options.update(bridge_other_endpoints=policy)
    client = tflow.tclient_conn()
    client.sni = sni
    server = tflow.tserver_conn()
    server.address = address
    bridge.upstream.server_connect(ServerConnectionHookData(server, client))
    assert (server.error is not None) == refused
    diverted = tflow.tserver_conn()
    diverted.address = ("127.0.0.1", bridge.diversions.backend.port)
    bridge.upstream.server_connect(ServerConnectionHookData(diverted, client))
    assert diverted.error is None


async def test_small_answers_are_made_in_place(bridge, claude_version):
    health, models, unknown = (
        openai_flow("GET", "/health"),
        openai_flow("GET", "/v1/models"),
        openai_flow("GET", "/v1/files"),
    )
    for flow in (health, models, unknown):
        bridge.request(flow)
    assert json.loads(health.response.content)["claude"]["version"] == claude_version
    assert json.loads(models.response.content)["object"] == "list"
    assert unknown.response.status_code == 404
    assert unknown.comment.startswith("claude-bridge: refused with 404")


async def test_chat_is_diverted_to_the_backend_and_restored_for_inspection(bridge):
    flow = openai_flow(
        "POST", "/v1/chat/completions?x=1", {"model": "sonnet", "messages": [{"role": "user", "content": "hi"}]}
    )
    bridge.request(flow)
    assert flow.response is None
    assert (flow.request.scheme, flow.request.host, flow.request.port) == (
        "http",
        "127.0.0.1",
        bridge.diversions.backend.port,
    )
    assert flow.request.path.startswith("/claude-bridge/jobs/")
    assert len(flow.request.path) > len("/claude-bridge/jobs/") + 40, "job ids are unguessable"
    flow.response = tutils.tresp()
    bridge.responseheaders(flow)
    assert flow.request.url == "https://api.openai.com/v1/chat/completions?x=1"
    assert flow.request.host_header == "api.openai.com"
    assert callable(flow.response.stream)


async def test_a_refusal_from_the_headers_is_left_to_the_backend_and_the_body_to_nobody(bridge):
    from mitmproxy import ctx

    ctx.options.update(bridge_max_body=1024)
    flow = openai_flow("POST", "/v1/chat/completions")
    flow.request.content = None  # as mitmproxy hands a request to `requestheaders`
    flow.request.headers.update({"Content-Length": "4096", "Expect": "100-continue"})
    bridge.requestheaders(flow)
    assert flow.response is None, "an answer set here would be sent only after the whole body"
    assert "expect" not in flow.request.headers, "no 100 Continue asks for the body"
    assert list(flow.request.stream(b"body")) == []
    assert isinstance(
        bridge.diversions.backend._parked[flow.request.path.removeprefix("/claude-bridge/jobs/")], backend.Refusal
    )
    bridge.request(flow)  # at the end of the body, if the client sends it anyway
    assert flow.response is None
    flow.response = tutils.tresp(status_code=413)
    bridge.responseheaders(flow)
    bridge.response(flow)
    assert flow.request.url == "https://api.openai.com/v1/chat/completions"
    assert flow.comment.startswith("claude-bridge: refused with 413")


async def test_a_flow_that_fails_before_the_backend_forgets_its_job(bridge):
    flow = openai_flow(
        "POST", "/v1/chat/completions", {"model": "sonnet", "messages": [{"role": "user", "content": "hi"}]}
    )
    bridge.request(flow)
    job_path = flow.request.path
    flow.error = tflow.terr()
    bridge.error(flow)
    assert flow.request.url == "https://api.openai.com/v1/chat/completions"
    assert job_path.removeprefix("/claude-bridge/jobs/") not in bridge.diversions.backend._parked


async def test_a_bridged_request_whose_body_could_not_be_read_says_so_in_mitmweb(bridge):
    flow = openai_flow("POST", "/v1/chat/completions")
    flow.request.timestamp_end = None  # as mitmproxy leaves it when the body breaks off
    flow.error = tflow.terr("HTTP/1 protocol error: illegal chunk header")
    bridge.error(flow)
    assert flow.comment == (
        "claude-bridge: its body could not be read, and mitmproxy closed without an answer: "
        "HTTP/1 protocol error: illegal chunk header"
    )


async def test_a_passed_through_request_that_fails_upstream_is_not_said_to_be_unread(bridge):
    flow = openai_flow("POST", "/v1/files")
    flow.error = tflow.terr("connection refused")
    bridge.error(flow)
    assert flow.comment == ""


@pytest.mark.parametrize(
    ("modes", "listen_host", "exposed"),
    [
        (["regular"], "", ["*:8080"]),
        (["regular"], "127.0.0.1", []),
        (["reverse:https://api.openai.com@3456"], "::1", []),
        (["reverse:https://api.openai.com@3456", "regular@0.0.0.0:8081"], "localhost", ["0.0.0.0:8081"]),
        (["wireguard"], "192.168.1.5", ["192.168.1.5:51820"]),
        (["local"], "", []),
    ],
)
def test_exposed_listen_addresses(modes, listen_host, exposed):
    assert access.exposed_listen_addresses(modes, listen_host) == exposed


async def test_listening_beyond_loopback_without_a_key_is_refused_at_start(claude_bin, caplog):
    addon = ClaudeBridge()
    with taddons.context(Proxyserver(), addon) as tctx:
        tctx.configure(addon, claude_bin=claude_bin, listen_host="0.0.0.0")
        await addon.running()
        assert "without an access key" in caplog.text
        assert not addon._running
        tctx.configure(addon, bridge_access_key="k")
        await addon.running()
        assert addon._running
        with pytest.raises(exceptions.OptionsError, match="without an access key"):
            tctx.configure(addon, bridge_access_key="")
        await addon.done()


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        (None, 401),
        ("Bearer wrong", 401),
        ("Bearer the-key", 200),
        ("bearer the-key", 200),
        ("Basic the-key", 401),
        ("Bearer \udcff", 401),  # an undecodable byte, as mitmproxy passes it on
    ],
)
async def test_the_access_key_is_required_when_set(bridge, authorization, status):
    from mitmproxy import ctx

    ctx.options.update(bridge_access_key="the-key")
    flow = openai_flow("GET", "/v1/models")
    if authorization:
        flow.request.headers["Authorization"] = authorization
    bridge.requestheaders(flow)
    bridge.request(flow)
    assert flow.response.status_code == status
    if status == 401:
        assert json.loads(flow.response.content)["error"]["code"] == "invalid_api_key"


async def test_the_access_key_never_passes_through(bridge):
    from mitmproxy import ctx

    ctx.options.update(bridge_access_key="the-key", bridge_other_endpoints="passthrough")
    flow = openai_flow("POST", "/v1/embeddings", {"input": "x"})
    flow.request.headers["Authorization"] = "Bearer the-key"
    bridge.requestheaders(flow)
    bridge.request(flow)
    assert flow.response is None
    assert "authorization" not in flow.request.headers


def test_listen_port_option_counts_for_exposure():
    assert access.exposed_listen_addresses(["regular"], "0.0.0.0", 9000) == ["0.0.0.0:9000"]


async def test_an_allowed_pages_preflight_is_answered_before_the_access_key_is_asked_for(bridge):
    from mitmproxy import ctx

    ctx.options.update(bridge_access_key="the-key")
    flow = openai_flow("OPTIONS", "/v1/chat/completions")
    flow.request.headers.update(
        {"Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"},
        **{"Access-Control-Request-Headers": "authorization,content-type"},
    )
    bridge.requestheaders(flow)
    assert flow.response.status_code == 204
    assert flow.response.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
    assert flow.response.headers["Access-Control-Allow-Headers"] == "authorization,content-type"
    foreign = openai_flow("OPTIONS", "/v1/chat/completions")
    foreign.request.headers.update({"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    bridge.requestheaders(foreign)
    assert foreign.response.status_code == 403
    assert "access-control-allow-origin" not in foreign.response.headers


async def test_reverse_mode_keeps_the_clients_host_for_the_check_and_sends_the_targets_on(bridge):
    flow = openai_flow("GET", "/v1/models")
    flow.client_conn.proxy_mode = ProxyMode.parse("reverse:https://api.openai.com@3456")
    flow.request.headers["Host"] = "localhost:3456"
    bridge.requestheaders(flow)
    assert flow.request.host_header == "api.openai.com"
    bridge.request(flow)
    assert flow.response.status_code == 200
    rebound = openai_flow("GET", "/v1/models")
    rebound.client_conn.proxy_mode = ProxyMode.parse("reverse:https://api.openai.com@3456")
    rebound.client_conn.sockname = ("127.0.0.1", 3456)  # reached over loopback, as a rebinding page's request is
    rebound.request.headers["Host"] = "rebind.example:3456"
    bridge.requestheaders(rebound)
    assert rebound.response.status_code == 403
    assert json.loads(rebound.response.content)["error"]["code"] == "host_not_allowed"
