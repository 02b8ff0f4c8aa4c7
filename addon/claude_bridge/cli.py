"""`claude-bridge`: mitmproxy with the bridge loaded, in reverse mode on 127.0.0.1:3456 unless told otherwise."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from mitmproxy import master, options
from mitmproxy.tools import cmdline
from mitmproxy.tools import main as mitmproxy_main

from .addon import ClaudeBridge

DEFAULT_PORT = 3456
REVERSE_TARGET = "https://api.openai.com"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="claude-bridge",
        description="Answer OpenAI API calls with the Claude Code CLI: point OPENAI_BASE_URL at http://127.0.0.1:3456/v1.",
    )
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on (default: %(default)s)")
    p.add_argument(
        "--listen-host", default="127.0.0.1", help="address to listen on (default: %(default)s, loopback only)"
    )
    p.add_argument(
        "--web", action="store_true", help="run the mitmweb UI to inspect bridged flows, instead of terminal logs"
    )
    p.add_argument("--claude-bin", metavar="PATH", help="the Claude Code CLI to run (default: `claude` on PATH)")
    p.add_argument(
        "--set",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        dest="setoptions",
        help="set any mitmproxy or bridge option, e.g. --set bridge_history=flatten (repeatable)",
    )
    return p


def mitmproxy_args(args: argparse.Namespace) -> list[str]:
    argv = ["--mode", f"reverse:{REVERSE_TARGET}@{args.port}", "--listen-host", args.listen_host]
    # The bridge logs one line per request; mitmproxy's own flow lines would repeat it.
    argv += ["--set", "flow_detail=0"]
    if args.claude_bin:
        argv += ["--set", f"claude_bin={args.claude_bin}"]
    for setting in args.setoptions:
        argv += ["--set", setting]
    return argv


def _with_bridge(master_cls: type[master.Master]) -> type[master.Master]:
    """The mitmproxy master with the bridge added as an addon object (no script path to find when installed)."""

    class BridgeMaster(master_cls):  # type: ignore[misc,valid-type]
        def __init__(self, opts: options.Options, *a: object, **kw: object) -> None:
            super().__init__(opts, *a, **kw)
            self.addons.add(ClaudeBridge())

    return BridgeMaster


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.web:
        from mitmproxy.tools.web.master import WebMaster

        mitmproxy_main.run(_with_bridge(WebMaster), cmdline.mitmweb, mitmproxy_args(args))
    else:
        from mitmproxy.tools.dump import DumpMaster

        mitmproxy_main.run(_with_bridge(DumpMaster), cmdline.mitmdump, mitmproxy_args(args))
