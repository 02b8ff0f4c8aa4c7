"""The start-up banner: what listens where, and the line that points an app at it."""

from __future__ import annotations

import os
from importlib.metadata import version
from pathlib import Path
from typing import Any

from mitmproxy.proxy import mode_specs

from .anthropic_leg import LEG_MODE
from .planlimits import PlanLimits


def banner(options: Any, claude: str, claude_version: str | None, plan_limits: PlanLimits | None = None) -> list[str]:
    """`options` are mitmproxy's, with the bridge's; `plan_limits` as last seen (by an earlier run of the bridge)."""
    cli = f"Claude Code CLI {claude_version} at {claude}" if claude_version else f"no usable Claude CLI at {claude}"
    lines = [f"claude-bridge {version('claude-bridge')} ready, answering with {cli}"]
    uses_ca = False
    for spec in options.mode:
        if spec == LEG_MODE:  # the CLI's own listener (bridge_inspect_claude), not one for apps
            continue
        mode = mode_specs.ProxyMode.parse(spec)
        port = mode.listen_port(options.listen_port)
        host = mode.listen_host(options.listen_host)
        reach = "127.0.0.1" if host in ("", "0.0.0.0", "::") else f"[{host}]" if ":" in host else host
        where = f"{host or '*'}:{port}" if port is not None else "this machine's traffic"
        match mode:
            case mode_specs.ReverseMode():
                lines.append(f"  reverse proxy on {where}: export OPENAI_BASE_URL=http://{reach}:{port}/v1")
            case mode_specs.RegularMode():
                lines.append(f"  proxy on {where}: export HTTPS_PROXY=http://{reach}:{port} (see proxy-env)")
                uses_ca = True
            case _:
                lines.append(f"  {mode.type_name} mode on {where}: apps' api.openai.com traffic is bridged")
                uses_ca = True
    if uses_ca:
        ca_cert = Path(options.confdir).expanduser() / "mitmproxy-ca-cert.pem"
        lines.append(f"  CA certificate apps must trust: {ca_cert} (`claude-bridge ca` says how)")
    pool = f"{options.claude_pool_size} per request shape" if options.claude_pool_size else "off"
    live = "off"
    if options.claude_live_sessions:
        live = f"{options.claude_live_sessions}, each kept {options.claude_live_idle} s"
    keyed = options.bridge_access_key or options.bridge_app_keys
    lines.append(
        f"  runs: {options.claude_max_runs} at once, {options.claude_max_queued} queued; warm pool {pool}; "
        f"live sessions {live}; access key {'required' if keyed else 'off (loopback only)'}"
    )
    if plan_limits is not None:
        lines.append(f"  {plan_limits.text()} (last reported)")
    if os.environ.get("ANTHROPIC_API_KEY") and not options.claude_allow_api_key:
        lines.append("  ANTHROPIC_API_KEY is set but withheld from the CLI, which uses your subscription login.")
    return lines
