"""Who may use the bridge: anyone on this machine over loopback, and beyond it only callers holding the access key."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Sequence

from mitmproxy.proxy import mode_specs

from .openai.errors import OpenAIError


def exposed_listen_addresses(modes: Sequence[str], listen_host: str, listen_port: int | None = None) -> list[str]:
    """The modes' listen addresses other machines could reach ("" means every interface)."""
    exposed = []
    for spec in modes:
        mode = mode_specs.ProxyMode.parse(spec)
        port = mode.listen_port(listen_port)
        if port is None:  # local capture and tun: no socket to reach
            continue
        host = mode.listen_host(listen_host)
        if not _is_loopback(host):
            exposed.append(f"{host or '*'}:{port}")
    return exposed


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "" (all interfaces) or a name that may resolve anywhere


def has_key(authorization: str | None, access_key: str) -> bool:
    """Whether the request carries `Authorization: Bearer <access_key>`, compared in constant time.

    Compared as bytes: mitmproxy hands over undecodable header bytes as surrogates, which must not raise.
    """
    scheme, _, token = (authorization or "").partition(" ")
    sent = token.strip().encode("utf-8", "surrogateescape")
    return scheme.lower() == "bearer" and hmac.compare_digest(sent, access_key.encode("utf-8", "surrogateescape"))


def unauthorized() -> OpenAIError:
    return OpenAIError(
        401,
        "claude-bridge needs its access key: use the bridge's bridge_access_key as your API key "
        "(Authorization: Bearer <key>).",
        code="invalid_api_key",
    )
