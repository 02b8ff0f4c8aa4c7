"""What leaves for a server: mitmproxy's connection options set for the bridge, and a backstop for bridged hosts.

A child addon of the bridge: it decrypts only the bridged hosts (every other host is tunnelled untouched), makes
mitmproxy connect only when a request goes on (so the real api.openai.com is never dialled for a bridged request),
keeps reverse mode's client Host for admission to see (`rewrites_host_header`), and refuses any connection to a
bridged host that no request hook answered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from mitmproxy import ctx
from mitmproxy.proxy import mode_specs, server_hooks

from . import destination, interception

logger = logging.getLogger(__name__)


class Upstream:
    def __init__(self, ours: Callable[[tuple[str, int] | None], bool]) -> None:
        """`ours`: whether an address is the bridge's own loopback backend (diverted flows keep the client's SNI)."""
        self._ours = ours
        self._allow_hosts: list[str] = []
        self.rewrites_host_header = False
        """Whether the bridge sets reverse mode's Host to the target's itself (see `_own_the_connections`)."""

    def configure(self, updated: set[str]) -> None:
        if {"connection_strategy", "keep_host_header"} <= set(ctx.options.keys()):
            self._own_the_connections()
        if "bridge_hosts" in updated:
            self._decrypt_only_bridged_hosts()

    def _own_the_connections(self) -> None:
        """Set at the first configure, before mitmproxy takes a connection (`running` comes after it listens)."""
        if ctx.options.connection_strategy != "lazy":
            # With `eager`, mitmproxy would dial the real api.openai.com before the bridge sees the request.
            ctx.options.update(connection_strategy="lazy")
        if not ctx.options.keep_host_header:
            # Reverse mode's Host is the client's only with this on; the bridge then sets the target's itself.
            self.rewrites_host_header = True
            ctx.options.update(keep_host_header=True)

    def _decrypt_only_bridged_hosts(self) -> None:
        """Tunnel every other host untouched (pinned certificates, the CLI's own traffic) unless the user chose."""
        patterns = interception.bridged_host_patterns(ctx.options.bridge_hosts)
        if ctx.options.ignore_hosts or ctx.options.allow_hosts not in ([], self._allow_hosts):
            logger.info("allow_hosts/ignore_hosts are set: the bridge leaves TLS interception to them.")
            return
        self._allow_hosts = patterns
        ctx.options.update(allow_hosts=patterns)

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        """Fail closed: nothing reaches a bridged host's server unless the user chose passthrough for other endpoints.

        The request hooks answer or refuse every bridged request; this catches whatever slips past them.
        """
        if ctx.options.bridge_other_endpoints == "passthrough":
            return
        address = data.server.address
        refused = destination.bridged_names_of_connection(data.client, address, ctx.options.bridge_hosts)
        if refused and not self._ours(address):
            data.server.error = f"claude-bridge: no connection to {', '.join(sorted(refused))} leaves this machine"
            logger.warning("Refused a connection to %s (a bridged host) that no request hook answered.", address)
        elif self.rewrites_host_header and isinstance(data.client.proxy_mode, mode_specs.ReverseMode):
            # What mitmproxy does without keep_host_header: the target's name, not the client's, as upstream SNI.
            data.server.sni = data.server.sni or data.client.proxy_mode.address[0]
