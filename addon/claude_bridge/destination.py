"""Which host a request is for, in every proxy mode, and whether the bridge must answer it.

The name a client asked for is carried in different places per mode: reverse mode has its own target; an explicit
proxy gets it in the request line or CONNECT; transparent, local and WireGuard capture see only an IP address, and
the name lives in the TLS SNI and the Host header. The bridge reads all of them, so that a request for a bridged
host is never left to mitmproxy, which would forward it (with the app's key) to wherever the connection points.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable

from mitmproxy import connection, http
from mitmproxy.net.http import url
from mitmproxy.proxy import mode_specs

from .openai.errors import OpenAIError


class Claim(enum.Enum):
    """What the bridge makes of a request."""

    NOT_OURS = "not ours"
    """No name in it is a bridged host: mitmproxy handles it as usual."""
    BRIDGED = "bridged"
    """Every name in it is a bridged host: the bridge answers it."""
    MISDIRECTED = "misdirected"
    """It names a bridged host and another one (say SNI api.openai.com, Host other.example): refused, since
    forwarding it anywhere could hand the app's OpenAI key to a host it was not meant for."""


def normalise(host: str) -> str:
    """Host names compare without case and without the root's trailing dot, as DNS does."""
    return host.lower().rstrip(".")


def claim(flow: http.HTTPFlow, bridged_hosts: Iterable[str]) -> Claim:
    bridged = {normalise(host) for host in bridged_hosts}
    named = request_names(flow)
    if not named & bridged:
        return Claim.NOT_OURS
    if any(name not in bridged and not _is_address(name) for name in named):
        return Claim.MISDIRECTED
    return Claim.BRIDGED


def request_names(flow: http.HTTPFlow) -> set[str]:
    """Every name the client gave for where this request goes, normalised."""
    mode = flow.client_conn.proxy_mode
    if isinstance(mode, mode_specs.ReverseMode):
        # The client's SNI and Host name the bridge itself (localhost); the mode's target is the destination.
        return {normalise(mode.address[0])}
    request = flow.request
    names = {normalise(request.host), *connection_names(flow.client_conn)}
    if request.host_header:
        names.add(normalise(_authority_host(request.host_header)))
    return names


def connection_names(client: connection.Client) -> set[str]:
    """The names a client connection carries before any request on it: its SNI, or its reverse mode's target."""
    mode = client.proxy_mode
    if isinstance(mode, mode_specs.ReverseMode):
        return {normalise(mode.address[0])}
    return {normalise(client.sni)} if client.sni else set()


def misdirected(flow: http.HTTPFlow, bridged_hosts: Iterable[str]) -> OpenAIError:
    bridged = {normalise(host) for host in bridged_hosts}
    others = sorted(name for name in request_names(flow) - bridged if not _is_address(name))
    return OpenAIError(
        421,
        f"This request names a host claude-bridge answers ({', '.join(sorted(request_names(flow) & bridged))}) and "
        f"another ({', '.join(others)}) in its TLS server name, Host header or proxy target; claude-bridge neither "
        "answers nor forwards such a request. Send it with one host name throughout.",
        code="misdirected_request",
    )


def bridged_names_of_connection(
    client: connection.Client, address: tuple[str, int] | None, bridged_hosts: Iterable[str]
) -> set[str]:
    """The bridged names a server connection is for: its address, the client's SNI, or reverse mode's target."""
    names = connection_names(client) | ({normalise(address[0])} if address else set())
    return names & {normalise(host) for host in bridged_hosts}


def _authority_host(authority: str) -> str:
    try:
        host, _ = url.parse_authority(authority, check=True)
    except ValueError:
        return authority  # unparseable: kept as it is, a name that is not a bridged host
    return host


def _is_address(name: str) -> bool:
    """An IP address names no host (transparent capture puts the destination address in the request)."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
