"""Who may use the bridge: anyone on this machine over loopback, and beyond it only callers holding the access key."""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping, Sequence

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


def keys_required(access_key: str, app_keys: Mapping[str, str]) -> bool:
    """Whether callers must hold a key: the bridge's access key, or one of the apps' named keys (bridge_app_keys)."""
    return bool(access_key or app_keys)


def admitted(authorization: str | None, access_key: str, app_keys: Mapping[str, str]) -> bool:
    """Whether a request carries a key the bridge takes: its access key or any app's named key."""
    if not keys_required(access_key, app_keys):
        return True
    holder = app_of_key(authorization, app_keys)  # compared first and always: the time taken tells nothing
    return (bool(access_key) and has_key(authorization, access_key)) or holder is not None


def has_key(authorization: str | None, access_key: str) -> bool:
    """Whether the request carries `Authorization: Bearer <access_key>`, compared in constant time."""
    sent = _bearer(authorization)
    return sent is not None and hmac.compare_digest(sent, _bytes(access_key))


def app_of_key(authorization: str | None, app_keys: Mapping[str, str]) -> str | None:
    """The app whose named key the request carries, or None.

    Every key is compared, in constant time, with no early exit: how long it takes says nothing of which key matched,
    or how much of one.
    """
    sent = _bearer(authorization)
    holder = None
    for app, key in app_keys.items():
        if hmac.compare_digest(sent or b"", _bytes(key)) and sent is not None:
            holder = app
    return holder


def _bearer(authorization: str | None) -> bytes | None:
    """The token of `Authorization: Bearer <token>`, as bytes: mitmproxy hands over undecodable header bytes as
    surrogates, which must not raise."""
    scheme, _, token = (authorization or "").partition(" ")
    return _bytes(token.strip()) if scheme.lower() == "bearer" else None


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def unauthorized() -> OpenAIError:
    return OpenAIError(
        401,
        "claude-bridge needs its access key: use the bridge's bridge_access_key, or your app's key from "
        "bridge_app_keys, as your API key (Authorization: Bearer <key>).",
        code="invalid_api_key",
    )
