"""The Claude side of each translation, on request: the CLI's own API calls through the bridge's proxy, in mitmweb.

With `bridge_inspect_claude` on, the bridge adds a proxy listener of its own on loopback (`regular@127.0.0.1:0`, a
free port) and starts every CLI with HTTPS_PROXY/HTTP_PROXY pointed at it and NODE_EXTRA_CA_CERTS naming the bridge's
CA. The API's base URL is left alone, so the CLI sends exactly what it would send uninspected; only its API host is
decrypted on that listener, anything else the CLI reaches there is tunnelled untouched.

Linking: each CLI sends a tag of its own with its API calls (ANTHROPIC_CUSTOM_HEADERS, taken off before the call
leaves); the runner knows which request's run the tagged process serves at that moment (`runner.on_behalf_of`), so
an Anthropic flow names the OpenAI flow it served, and the OpenAI flow, once answered, names its Anthropic flows.
Warm and live CLIs serve many requests over their life: the link is made per run, never per process.

The API calls carry the user's login, which no flow ever holds: leg_relay.py takes it off each flow before any other
addon sees it and puts it back on the way out.
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mitmproxy import ctx, exceptions, http
from mitmproxy.addons.next_layer import NextLayer
from mitmproxy.proxy import layer, layers, mode_specs
from pydantic import BaseModel

from . import backend, leg_relay
from .background import Background
from .claude import runner as claude_runner
from .claude.invocation import TAG_HEADER, ApiProxy

logger = logging.getLogger(__name__)

LEG_MODE = "regular@127.0.0.1:0"
"""The listener the CLIs' API calls go through: loopback, on a port the system picks."""
DEFAULT_API = "https://api.anthropic.com"
CA_FILE = "mitmproxy-ca-cert.pem"
TLS_OPTIONS = ("ssl_insecure", "ssl_verify_upstream_trusted_ca", "ssl_verify_upstream_trusted_confdir")
MAX_KEPT_BODY = 32 * 1024 * 1024
"""How much of an API answer is kept for mitmweb (it is passed on whole regardless)."""


def api_address(base_url: str | None) -> tuple[str, int]:
    """The host and port the CLI sends its API calls to, from ANTHROPIC_BASE_URL as the bridge's environment has it."""
    parts = urlsplit(base_url or DEFAULT_API)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"ANTHROPIC_BASE_URL={base_url!r} is not an http(s) URL the CLI could call")
    return parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


@dataclass
class RunLink:
    """One bridged request's run, and the API calls its CLI made for it."""

    flow_id: str
    what: str  # "POST /v1/chat/completions"
    calls: list[str] = field(default_factory=list)  # the Anthropic flows' ids

    @property
    def label(self) -> str:
        return short(self.flow_id)

    def summary(self) -> str:
        """For the OpenAI flow's comment, once answered."""
        calls = ", ".join(short(call) for call in self.calls) if self.calls else "none"
        return f" | run {self.label}: Claude API flows {calls}"


def short(flow_id: str) -> str:
    """A flow's id as a person can search for it in mitmweb (`~comment ID`) and read it."""
    return flow_id[:8]


class _DecryptingLayers(NextLayer):
    """mitmproxy's own choice of layers, without allow_hosts/ignore_hosts: for the API host on the leg only."""

    def _ignore_connection(self, *args: Any) -> bool:
        return False


class AnthropicLeg:
    """A child addon of the bridge: the leg's listener, the CLIs' proxy settings, and the Anthropic flows."""

    def __init__(self, runner: claude_runner.ClaudeRunner, settings_changed: Callable[[], None]) -> None:
        """`settings_changed`: called when `proxy` changes, for the runner's next CLIs."""
        self._runner = runner
        self._settings_changed = settings_changed
        self.proxy: ApiProxy | None = None
        """Where the CLIs send their API calls; None while the option is off (or its listener not up yet)."""
        self._mode = mode_specs.ProxyMode.parse(LEG_MODE)
        self._api = api_address(None)
        self._links: dict[str, RunLink] = {}
        self._decrypting = _DecryptingLayers()
        self._relay = leg_relay.Relay()
        self._running = False
        self._background = Background()

    def configure(self, updated: set[str]) -> None:
        on = ctx.options.bridge_inspect_claude
        if "bridge_inspect_claude" in updated and on:
            try:
                self._api = api_address(os.environ.get("ANTHROPIC_BASE_URL"))
            except ValueError as e:
                raise exceptions.OptionsError(f"bridge_inspect_claude: {e}") from e
        if on and ({"bridge_inspect_claude", *TLS_OPTIONS} & updated):
            self._relay.tls = _api_tls()
        if {"bridge_inspect_claude", "mode"} & updated:
            self._keep_listener(on)  # also when the modes are set anew (config.yaml read after the command line)
        if "bridge_inspect_claude" in updated and self._running:
            self._background.start(self._open() if on else self._close())

    def _keep_listener(self, on: bool) -> None:
        others = [mode for mode in ctx.options.mode if mode != LEG_MODE]
        wanted = [*others, LEG_MODE] if on else others
        if wanted != list(ctx.options.mode):
            ctx.options.update(mode=wanted)

    async def running(self) -> None:
        leg_relay.first_in_chain(ctx.master.addons, self._first_look)  # before any leg flow: the leg opens below
        self._running = True
        if ctx.options.bridge_inspect_claude:
            await self._open()

    async def done(self) -> None:
        self._running = False
        await self._background.cancel()
        await self._relay.stop()

    async def _open(self) -> None:
        """Once the leg listens: its address and the bridge's CA for the CLIs to come."""
        if not self._relay.started:
            await self._relay.start()
        proxyserver = ctx.master.addons.get("proxyserver")
        await proxyserver.setup_servers()  # waits for a listener being added by the option's change
        try:
            port = proxyserver.servers[self._mode].listen_addrs[0][1]
        except (KeyError, IndexError):
            logger.error("bridge_inspect_claude: the proxy listener for the CLI's API calls did not start.")
            return
        ca_file = Path(ctx.options.confdir).expanduser() / CA_FILE
        self.proxy = ApiProxy(f"http://127.0.0.1:{port}", str(ca_file))
        self._settings_changed()
        host, api_port = self._api
        logger.info(
            "Claude's API calls (to %s:%d) go through 127.0.0.1:%d and show beside each bridged request.",
            host,
            api_port,
            port,
        )

    async def _close(self) -> None:
        self.proxy = None
        self._settings_changed()

    # The OpenAI side: a run is linked while the request's job runs, its links shown once it is answered.

    def on_behalf(self, flow: http.HTTPFlow, job: backend.Job) -> backend.Job:
        """`job`, run as serving `flow`: the CLI it runs on is linked to the flow for that run."""
        if self.proxy is None:
            return job
        link = RunLink(flow.id, f"{flow.request.method} {flow.request.path.split('?')[0]}")
        self._links[flow.id] = link
        match job:
            case backend.StreamJob(items=items, sse=framing):
                return backend.StreamJob(lambda: _items_for(link, items), framing)
            case backend.JsonJob(answer=answer):
                return backend.JsonJob(lambda: _answer_for(link, answer))
        return job

    def labelled(self, flow: http.HTTPFlow, tee: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
        """`tee` (which writes the flow's comment at the end of its stream), with the run's links added after."""
        if flow.id not in self._links:
            return tee

        def stream(data: bytes) -> bytes:
            passed = tee(data)
            if not data:
                flow.comment += self.links_of(flow)
            return passed

        return stream

    def links_of(self, flow: http.HTTPFlow) -> str:
        """The comment's end naming the run's API flows, once (the flow's link is forgotten)."""
        link = self._links.pop(flow.id, None)
        return link.summary() if link is not None else ""

    def forget(self, flow: http.HTTPFlow) -> None:
        self._links.pop(flow.id, None)

    # The Anthropic side: the flows of the leg.

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        """On the leg, decrypt the API host whatever allow_hosts says, and tunnel anything else untouched."""
        context = nextlayer.context
        if self.proxy is None or context.client.proxy_mode != self._mode or context.server.address is None:
            return
        if tuple(context.server.address[:2]) == self._api:
            if isinstance(nextlayer.layer, layers.TCPLayer):  # allow_hosts names only the bridged hosts
                nextlayer.layer = None
                self._decrypting.next_layer(nextlayer)
        elif not isinstance(nextlayer.layer, layers.TCPLayer):
            nextlayer.layer = layers.TCPLayer(context, ignore=True)

    def _first_look(self, flow: http.HTTPFlow) -> None:
        """Before any other addon (mitmweb's view among them): the login off the flow, and the flow labelled."""
        if not self._is_leg(flow):
            return
        if (flow.request.host, flow.request.port) != self._api:
            # Plain HTTP to any other host: left to the bridge's own hooks (a bridged host is answered or refused).
            return
        self._relay.take(flow)
        tag = flow.request.headers.pop(TAG_HEADER, None)  # the bridge's own: it never leaves
        owner = self._runner.serving(tag) if tag else None
        if isinstance(owner, RunLink):
            owner.calls.append(flow.id)
            flow.comment = (
                f"claude-bridge: Claude API call {len(owner.calls)} ({short(flow.id)}) of run {owner.label}: "
                f"{owner.what}"
            )
        elif tag:
            flow.comment = f"claude-bridge: Claude API call ({short(flow.id)}) of CLI {tag}, serving no request"
        else:
            flow.comment = f"claude-bridge: not from a CLI the bridge runs ({short(flow.id)})"

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        self._relay.restore(flow)
        if not self._is_leg(flow) or flow.response is None:
            return
        # Buffered, the answer would reach the CLI (and the client) only once complete.
        flow.response.stream = _Kept(flow)

    def response(self, flow: http.HTTPFlow) -> None:
        self._relay.restore(flow)  # answered by some addon, never sent

    def error(self, flow: http.HTTPFlow) -> None:
        self._relay.restore(flow)

    def _is_leg(self, flow: http.HTTPFlow) -> bool:
        return self.proxy is not None and flow.client_conn.proxy_mode == self._mode


async def _items_for(link: RunLink, items: Callable[[], AsyncGenerator[BaseModel]]) -> AsyncGenerator[BaseModel]:
    # The job runs in a task of its own: the variable goes with the task, no reset needed.
    claude_runner.on_behalf_of.set(link)
    async with contextlib.aclosing(items()) as stream:
        async for item in stream:
            yield item


async def _answer_for(link: RunLink, answer: Callable[[], Awaitable[BaseModel]]) -> BaseModel:
    claude_runner.on_behalf_of.set(link)
    return await answer()


def _api_tls() -> ssl.SSLContext:
    options = ctx.options
    try:
        return leg_relay.api_tls(
            options.ssl_insecure, options.ssl_verify_upstream_trusted_ca, options.ssl_verify_upstream_trusted_confdir
        )
    except OSError as e:
        raise exceptions.OptionsError(f"bridge_inspect_claude: the CA to check the Claude API with: {e}") from e


class _Kept:
    """Passes the API's answer on as it comes and keeps a copy (as received, compressed or not) for mitmweb."""

    def __init__(self, flow: http.HTTPFlow) -> None:
        self._flow = flow
        self._body = bytearray()
        self._whole = True

    def __call__(self, data: bytes) -> bytes:
        if data and self._whole:
            # Past the limit nothing more is kept: a copy with a gap in it would show an answer never sent.
            self._whole = len(self._body) + len(data) <= MAX_KEPT_BODY
            if self._whole:
                self._body += data
        elif not data and self._flow.response is not None:
            self._flow.response.raw_content = bytes(self._body)
        return data
