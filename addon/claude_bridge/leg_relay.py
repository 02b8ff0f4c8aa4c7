"""The Claude leg's login, kept off its flows: taken off at the flow's first hook, put back by a loopback relay.

mitmproxy sends a request exactly as its flow holds it, and mitmweb publishes a flow when its request headers
arrive (View's requestheaders hook), after every hook, and to `GET /flows` at any moment. A flow that carried the
CLI's token to the API would show it while the call is in flight. So the token never is on the flow: ahead of every
other addon (`first_in_chain`, before View), the credential headers are taken off into a side table under an
unguessable id and replaced by a placeholder, and the flow is pointed at the relay, a loopback server of the bridge
(backend.Loopback: only parked ids served, each once). The relay puts the credentials back, sends the request on
to the host the CLI meant (TLS verified as mitmproxy would) and streams the answer back as it comes. The flow is
shown under its real URL again once the answer starts, as divert.py does for bridged flows.

The relay takes one request a connection ("Connection: close" to the API and back to mitmproxy), so it passes the
bytes through as they come, with no HTTP framing of its own. A parked id is a one-time pass to the API host the
flow named, for whoever reads it off mitmweb before mitmproxy uses it: never the token, nor any other host.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import certifi
from mitmproxy import addonmanager, http

from . import backend, redact
from .divert import Origin

logger = logging.getLogger(__name__)

RELAY_PATH_PREFIX = "/claude-bridge/relay/"
TAKEN_HEADERS = frozenset({*redact.CREDENTIAL_HEADERS, "cookie"})
# Ours to set on the way out: the API host's own name, and one request a connection.
REPLACED_HEADERS = frozenset({"host", "connection", "keep-alive", "proxy-connection"})
CONNECT_TIMEOUT = 30.0
PIECE = 64 * 1024


@dataclass(frozen=True)
class Parcel:
    """A leg request's way out: the URL the CLI asked for and the credentials it sent."""

    origin: Origin
    credentials: tuple[tuple[str, str], ...]


def api_tls(insecure: bool, ca_file: str | None, ca_dir: str | None) -> ssl.SSLContext:
    """How the relay checks the API's certificate: as mitmproxy would, by ssl_insecure and
    ssl_verify_upstream_trusted_ca/_confdir, else certifi's roots. Raises OSError (ssl.SSLError) for a bad CA file."""
    if ca_file is None and ca_dir is None:
        ca_file = certifi.where()
    context = ssl.create_default_context(
        cafile=ca_file and str(Path(ca_file).expanduser()), capath=ca_dir and str(Path(ca_dir).expanduser())
    )
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])  # the bytes it passes on are HTTP/1.1
    return context


class Relay(backend.Loopback[Parcel]):
    """The side table and the relay, one registry: a flow that ends before it reached the relay leaves no parcel."""

    def __init__(self) -> None:
        super().__init__(RELAY_PATH_PREFIX)
        self.tls = api_tls(False, None, None)
        self._flows: dict[str, tuple[str, Origin]] = {}

    def take(self, flow: http.HTTPFlow) -> None:
        """The flow's credentials off it (a placeholder in their place), and the flow pointed at the relay."""
        headers, request = flow.request.headers, flow.request
        # As latin-1, the relay's reading of a head: the bytes go out exactly as the CLI sent them.
        raw = ((name.decode("latin-1"), value.decode("latin-1")) for name, value in headers.fields)
        credentials = tuple((name, value) for name, value in raw if name.lower() in TAKEN_HEADERS)
        for name in {name.lower() for name, _ in credentials}:
            headers[name] = redact.REDACTED
        origin = Origin(request.scheme, request.host, request.port, request.path, request.host_header)
        path = self.park(Parcel(origin, credentials))
        request.scheme, request.host, request.port, request.path = "http", "127.0.0.1", self.port, path
        self._flows[flow.id] = (path, origin)

    def restore(self, flow: http.HTTPFlow) -> None:
        """The flow under its own URL again (its answer started, or it ended), its parcel forgotten if unused."""
        taken = self._flows.pop(flow.id, None)
        if taken is None:
            return
        path, origin = taken
        self.unpark(path)
        request = flow.request
        request.scheme, request.host, request.port, request.path, request.host_header = origin

    async def _handle(
        self, parcel: Parcel, head: backend.Head, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        origin = parcel.origin
        tls = self.tls if origin.scheme == "https" else None
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                api_reader, api_writer = await asyncio.open_connection(
                    origin.host, origin.port, ssl=tls, server_hostname=origin.host if tls else None
                )
        except (OSError, TimeoutError) as e:
            failure = str(e) or f"no answer in {CONNECT_TIMEOUT:g} s"  # a timeout says nothing itself
            why = f"claude-bridge could not reach {origin.host}:{origin.port}: {failure}\n"
            await backend.write_head(writer, 502, {"Content-Type": "text/plain"}, why.encode())
            return
        try:
            api_writer.write(_outgoing_head(head, parcel))
            await _both_ways(reader, writer, api_reader, api_writer)
        finally:
            api_writer.close()
            with contextlib.suppress(OSError):
                await api_writer.wait_closed()


def _outgoing_head(head: backend.Head, parcel: Parcel) -> bytes:
    """The request head the API gets: the CLI's path, host and credentials back, one request a connection."""
    origin = parcel.origin
    host = origin.host_header or (origin.host if origin.port in (80, 443) else f"{origin.host}:{origin.port}")
    kept = _without(head.lines, TAKEN_HEADERS | REPLACED_HEADERS)
    lines = [f"{head.method} {origin.path} HTTP/1.1", f"Host: {host}", *kept]
    lines += [f"{name}: {value}" for name, value in parcel.credentials]
    lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _without(lines: list[str], names: frozenset[str]) -> list[str]:
    return [line for line in lines if line.partition(":")[0].strip().lower() not in names]


async def _both_ways(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    api_reader: asyncio.StreamReader,
    api_writer: asyncio.StreamWriter,
) -> None:
    """The body on to the API as mitmproxy sends it and the answer back as the API sends it, until the API closes
    (as it was asked to) or mitmproxy hangs up (the CLI went away)."""
    sending = asyncio.create_task(_pipe(reader, api_writer))
    answering = asyncio.create_task(_answer(api_reader, writer))
    try:
        await asyncio.wait({sending, answering}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sending, answering):
            task.cancel()
        for outcome in await asyncio.gather(sending, answering, return_exceptions=True):
            if isinstance(outcome, Exception):
                logger.debug("relay connection ended: %r", outcome)


async def _answer(api_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = await api_reader.readuntil(b"\r\n\r\n")  # bounded by the reader's limit (64 KiB)
    status, *lines = head.decode("latin-1").removesuffix("\r\n\r\n").split("\r\n")
    # One request a connection: mitmproxy must not send another on it.
    kept = _without(lines, REPLACED_HEADERS)
    writer.write(("\r\n".join([status, *kept, "Connection: close"]) + "\r\n\r\n").encode("latin-1"))
    await _pipe(api_reader, writer)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(PIECE):
        writer.write(data)
        await writer.drain()


class _First:
    """The leg's look at a request, ahead of every other addon: mitmproxy's View publishes the flow in its own."""

    name = "claudebridge_leg_first"

    def __init__(self, look: Callable[[http.HTTPFlow], None]) -> None:
        self.requestheaders = look


def first_in_chain(manager: addonmanager.AddonManager, look: Callable[[http.HTTPFlow], None]) -> None:
    """Run `look` on every request's headers before any other addon (the one put there before, if any, replaced).

    For a hook (`running`), not `load`: `AddonManager.add` appends to the chain it had before loading the addon.
    """
    if (before := manager.get(_First.name)) is not None:
        manager.remove(before)
    # A new list: mitmproxy is iterating the chain to call the hook this runs in, and an insert would shift it.
    manager.chain = [manager.register(_First(look)), *manager.chain]
