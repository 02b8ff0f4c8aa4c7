"""Which requests the bridge claims, in every proxy mode: by the mode's target, the request, the SNI and the Host."""

from __future__ import annotations

import re

import pytest
from mitmproxy.proxy import mode_specs
from mitmproxy.test import tflow, tutils

from claude_bridge import interception
from claude_bridge.destination import Claim, claim

BRIDGED = ["api.openai.com"]
OPENAI_IP = "192.0.2.10"  # what transparent, local and WireGuard capture put in the request


def flow_in(mode: str, host: str, sni: str | None, host_header: str | None):
    request = tutils.treq(host=host, port=443, path=b"/v1/chat/completions")
    if host_header is not None:
        request.headers["Host"] = host_header
    flow = tflow.tflow(req=request)
    flow.client_conn.proxy_mode = mode_specs.ProxyMode.parse(mode)
    flow.client_conn.sni = sni
    return flow


@pytest.mark.parametrize(
    ("mode", "host", "sni", "host_header", "expected"),
    [
        # Explicit proxy: the CONNECT target or absolute URL names the host.
        ("regular", "api.openai.com", "api.openai.com", "api.openai.com", Claim.BRIDGED),
        ("regular", "api.openai.com", None, "api.openai.com:443", Claim.BRIDGED),
        ("regular", "API.OpenAI.com.", "api.openai.com", "Api.Openai.Com", Claim.BRIDGED),
        ("regular", "example.com", "example.com", "example.com", Claim.NOT_OURS),
        # Capture modes see an address: the SNI or, for plain HTTP, the Host header names the host.
        ("transparent", OPENAI_IP, "api.openai.com", "api.openai.com", Claim.BRIDGED),
        ("transparent", OPENAI_IP, None, "api.openai.com", Claim.BRIDGED),
        ("transparent", OPENAI_IP, "api.openai.com", None, Claim.BRIDGED),
        ("local", OPENAI_IP, "api.openai.com", OPENAI_IP, Claim.BRIDGED),
        ("wireguard", OPENAI_IP, "api.openai.com", "api.openai.com", Claim.BRIDGED),
        ("transparent", OPENAI_IP, "example.com", "example.com", Claim.NOT_OURS),
        ("transparent", OPENAI_IP, None, None, Claim.NOT_OURS),
        # Names that disagree: never answered as the other host, never forwarded.
        ("transparent", OPENAI_IP, "api.openai.com", "example.com", Claim.MISDIRECTED),
        ("transparent", OPENAI_IP, "example.com", "api.openai.com", Claim.MISDIRECTED),
        ("regular", "example.com", "api.openai.com", "example.com", Claim.MISDIRECTED),
        ("regular", "api.openai.com", "api.openai.com", "not a host", Claim.MISDIRECTED),
        # Reverse mode: the target decides; the client's SNI and Host name the bridge itself.
        ("reverse:https://api.openai.com", "api.openai.com", "localhost", "localhost:3456", Claim.BRIDGED),
        ("reverse:https://example.com", "example.com", "api.openai.com", "api.openai.com", Claim.NOT_OURS),
    ],
)
def test_the_bridge_claims_requests_by_every_name_they_carry(mode, host, sni, host_header, expected):
    assert claim(flow_in(mode, host, sni, host_header), BRIDGED) is expected


@pytest.mark.parametrize("name", ["api.openai.com:443", "API.OPENAI.COM:443", "api.openai.com.:8443"])
def test_every_spelling_of_a_bridged_name_is_decrypted(name):
    patterns = interception.bridged_host_patterns(BRIDGED)
    assert any(re.search(pattern, name, re.IGNORECASE) for pattern in patterns)  # as mitmproxy matches allow_hosts
    assert not any(re.search(pattern, "api.openai.com.evil.example:443", re.IGNORECASE) for pattern in patterns)
