"""The Claude leg's relay: the login off the flow, back on only on the way to the API, and only parked calls served.

The relay in process on its real loopback port, the fake API (plain HTTP, and HTTPS with a CA of the test's), each
request sent to the relay as mitmproxy sends a flow's request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mitmproxy import http
from mitmproxy.net.http import http1
from mitmproxy.test import tflow

from claude_bridge import leg_relay
from claude_bridge.redact import REDACTED
from fake_anthropic import TEST_TOKEN, FakeAnthropic
from tls_server import server_context

ASKED = {"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def relay() -> AsyncIterator[leg_relay.Relay]:
    served = leg_relay.Relay()
    await served.start()
    yield served
    await served.stop()


def api_call(base_url: str) -> http.HTTPFlow:
    """A flow of the CLI's API call as mitmproxy holds it when the request's headers arrive."""
    flow = tflow.tflow()
    host = base_url.split("://")[1]
    headers = {"Host": host, "Authorization": f"Bearer {TEST_TOKEN}", "Cookie": "session=abc"}
    flow.request = http.Request.make(
        "POST", f"{base_url}/v1/messages?beta=true", json.dumps(ASKED), headers | {"Content-Type": "application/json"}
    )
    return flow


async def send(request: http.Request) -> tuple[int, bytes]:
    """`request` sent where it points, as mitmproxy sends it; the status and the whole answer (the relay closes)."""
    reader, writer = await asyncio.open_connection(request.host, request.port)
    writer.write(http1.assemble_request(request))
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    return int(answer.split(b" ", 2)[1]), answer


async def test_the_login_leaves_the_flow_and_reaches_the_api_through_the_relay(relay, fake):
    flow = api_call(fake.url)
    relay.take(flow)

    assert (flow.request.headers["authorization"], flow.request.headers["cookie"]) == (REDACTED, REDACTED)
    assert TEST_TOKEN not in str(flow.get_state())
    assert flow.request.url.startswith(f"http://127.0.0.1:{relay.port}{leg_relay.RELAY_PATH_PREFIX}")
    status, answer = await send(flow.request)
    assert status == 200 and b"ECHO: hi" in answer
    assert b"\r\nConnection: close\r\n" in answer, "mitmproxy must not send another request on this connection"
    (received,) = fake.requests
    assert received.path == "/v1/messages?beta=true"
    assert received.headers["Authorization"] == "<redacted>", "the fake's record of the test login itself"
    assert (received.headers["Cookie"], received.headers["Host"]) == ("session=abc", fake.url.split("://")[1])

    relay.restore(flow)
    assert flow.request.url == f"{fake.url}/v1/messages?beta=true"
    assert flow.request.headers["authorization"] == REDACTED


async def test_a_parked_call_is_relayed_once_and_nothing_else_is(relay, fake):
    flow = api_call(fake.url)
    relay.take(flow)
    assert (await send(flow.request))[0] == 200
    assert (await send(flow.request))[0] == 404

    for path in (f"{leg_relay.RELAY_PATH_PREFIX}not-parked", "/v1/messages?beta=true", "/"):
        stranger = api_call(f"http://127.0.0.1:{relay.port}")
        stranger.request.path = path
        assert (await send(stranger.request))[0] == 404
    assert len(fake.requests) == 1


async def test_a_flow_that_ends_before_it_reaches_the_relay_leaves_no_login_behind(relay, fake):
    flow = api_call(fake.url)
    relay.take(flow)
    relay_request = flow.request.copy()
    relay.restore(flow)

    assert flow.request.url == f"{fake.url}/v1/messages?beta=true"
    assert (await send(relay_request))[0] == 404
    assert fake.requests == []


async def test_the_apis_certificate_is_checked_by_the_cas_mitmproxy_would_trust(relay, tmp_path: Path):
    context, api_ca = server_context(tmp_path)
    with FakeAnthropic(tls=context) as api:
        untrusted = api_call(api.url)
        relay.take(untrusted)
        status, answer = await send(untrusted.request)
        assert status == 502
        assert f"could not reach localhost:{api.url.rsplit(':', 1)[1]}".encode() in answer
        assert b"certificate verify failed" in answer
        assert api.requests == []

        relay.tls = leg_relay.api_tls(False, str(api_ca), None)
        trusted = api_call(api.url)
        relay.take(trusted)
        assert (await send(trusted.request))[0] == 200
        assert api.requests[-1].headers["Authorization"] == "<redacted>"


def test_a_ca_file_that_cannot_be_read_is_an_error():
    with pytest.raises(OSError):
        leg_relay.api_tls(False, "/nonexistent/ca.pem", None)
