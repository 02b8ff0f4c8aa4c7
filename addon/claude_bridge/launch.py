"""From the bridge's flags to a running mitmproxy: flags -> mode specs -> mitmproxy arguments, once.

`cli.py` dispatches the subcommands; doctor and service read the same flags through `parse`, so they see what the
bridge would run with.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mitmproxy import hooks, master, options
from mitmproxy.proxy import mode_specs
from mitmproxy.tools import cmdline
from mitmproxy.tools import main as mitmproxy_main

from . import interception
from .addon import ClaudeBridge
from .options import OPTIONS

REVERSE_PORT = 3456
REVERSE_TARGET = "https://api.openai.com"
WEB_COLUMNS = ("tls", "icon", "path", "method", "status", "size", "time", "comment")
# A checkout keeps its CA in certs/ (git-ignored); an installed copy uses mitmproxy's own ~/.mitmproxy.
CHECKOUT_CERTS = Path(__file__).resolve().parents[2] / "certs"
DEFAULT_CONFDIR = CHECKOUT_CERTS if (CHECKOUT_CERTS / "README.md").exists() else Path("~/.mitmproxy").expanduser()


def _option_entries() -> list[str]:
    """Each bridge option with its default and help, for --help."""
    entries = []
    for option in OPTIONS:
        summary = f"{option.help} Choices: {', '.join(option.choices)}." if option.choices else option.help
        indent = " " * 6
        described = textwrap.fill(summary, 100, initial_indent=indent, subsequent_indent=indent)
        entries.append(f"  {option.name} (default: {_shown(option.default)})\n{described}")
    return entries


def _shown(default: object) -> str:
    if isinstance(default, list | tuple):
        return ", ".join(default) or "none"
    if isinstance(default, bool):
        return str(default).lower()
    return str(default) if default != "" else "none"


def _paragraphs(*texts: str) -> str:
    return "\n\n".join(textwrap.fill(text, 100) for text in texts)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="claude-bridge",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=_paragraphs(
            "Answer OpenAI API calls with the Claude Code CLI. Reverse mode: point OPENAI_BASE_URL at "
            "http://127.0.0.1:3456/v1. Interception: --mode regular and HTTPS_PROXY=http://127.0.0.1:8080."
        ),
        epilog=_paragraphs(
            "Also: `claude-bridge ca` (where the CA is, how to trust it), `claude-bridge proxy-env` "
            "(HTTPS_PROXY/NO_PROXY lines for a shell), `claude-bridge doctor` (check the set-up), "
            "`claude-bridge usage` (today's and this month's spend per app, and the plan's limits), "
            "`claude-bridge service install|uninstall|status` (keep it running: systemd user unit, LaunchAgent).",
            "Bridge options: give them with --set NAME=VALUE, or keep them in CONFDIR/config.yaml as NAME: VALUE "
            "(lists as YAML lists); the command line wins over the file. Any mitmproxy option works the same way.",
        )
        + "\n\n"
        + "\n".join(_option_entries()),
    )
    p.add_argument(
        "--mode",
        action="append",
        metavar="MODE",
        help="reverse (default: reverse proxy for api.openai.com), regular (explicit/system proxy), "
        "local[:PROCESS], transparent, wireguard, or any mitmproxy mode spec; repeat for several at once "
        "(then give ports as MODE@PORT)",
    )
    p.add_argument(
        "--port", type=int, help=f"port to listen on (default: {REVERSE_PORT} in reverse mode, else mitmproxy's)"
    )
    p.add_argument(
        "--listen-host", default="127.0.0.1", help="address to listen on (default: %(default)s, loopback only)"
    )
    p.add_argument(
        "--web", action="store_true", help="run the mitmweb UI to inspect bridged flows, instead of terminal logs"
    )
    p.add_argument("--claude-bin", metavar="PATH", help="the Claude Code CLI to run (default: `claude` on PATH)")
    p.add_argument(
        "--confdir",
        type=Path,
        default=DEFAULT_CONFDIR,
        help="where the CA and config.yaml live (default: %(default)s); --set confdir=DIR says the same, and of "
        "the two the one given last wins",
    )
    p.add_argument(
        "--set",
        metavar="NAME=VALUE",
        action=_SetOption,
        default=[],
        dest="setoptions",
        help="set any mitmproxy or bridge option, e.g. --set bridge_history=flatten (repeatable)",
    )
    return p


class _SetOption(argparse.Action):
    """`--set NAME=VALUE`, collected in order; `--set confdir=DIR` is --confdir by another name.

    The launcher hands mitmproxy one confdir (it refuses two values for one option), so the two spellings share
    one destination, where argparse lets the one given last win.
    """

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, value: Any, _: Any = None
    ) -> None:
        name, _equals, directory = str(value).partition("=")
        if name.strip() != "confdir":
            namespace.setoptions = [*namespace.setoptions, value]
        elif not directory:
            parser.error("--set confdir=DIR needs a directory")
        else:
            namespace.confdir = Path(directory)


def mode_specs_for(modes: Sequence[str], port: int | None) -> list[str]:
    """mitmproxy mode specs: `reverse` means reverse to api.openai.com on 3456, and --port sets a single mode's port."""
    if port is not None and len(modes) > 1:
        raise ValueError("--port applies to one mode; with several, give each its port as MODE@PORT")
    specs = []
    for mode in modes:
        name, at, listen_port = mode.partition("@")
        if name == "reverse":
            name, at, listen_port = f"reverse:{REVERSE_TARGET}", "@", listen_port or str(REVERSE_PORT)
        if port is not None:
            at, listen_port = "@", str(port)
        spec = name + at + listen_port
        try:
            mode_specs.ProxyMode.parse(spec)
        except ValueError as e:
            raise ValueError(f"--mode {mode}: {e}") from e
        specs.append(spec)
    return specs


def mitmproxy_args(args: argparse.Namespace, specs: Sequence[str]) -> list[str]:
    argv = []
    for spec in specs:
        argv += ["--mode", spec]
    argv += ["--listen-host", args.listen_host, "--set", f"confdir={args.confdir}"]
    # The bridge logs one line per request; mitmproxy's own flow lines would repeat it.
    argv += ["--set", "flow_detail=0"]
    if args.web:
        # mitmweb's default columns plus the comment, where the bridge says what it did.
        argv += [arg for column in WEB_COLUMNS for arg in ("--set", f"web_columns={column}")]
    if args.claude_bin:
        argv += ["--set", f"claude_bin={args.claude_bin}"]
    for setting in args.setoptions:
        argv += ["--set", setting]
    return argv


def _with_bridge(master_cls: type[master.Master], started: list[master.Master]) -> type[master.Master]:
    """The mitmproxy master with the bridge added as an addon object (no script path to find when installed)."""

    class BridgeMaster(master_cls):  # type: ignore[misc,valid-type]
        def __init__(self, opts: options.Options, *a: object, **kw: object) -> None:
            super().__init__(opts, *a, **kw)
            started.append(self)
            bridge = ClaudeBridge()
            self.addons.add(bridge)
            # As mitmproxy's script loader does: an addon added in code sees every option once.
            self.addons.invoke_addon_sync(bridge, hooks.ConfigureHook(set(opts.keys())))

    return BridgeMaster


def _command_line_wins(masters: list[master.Master]) -> Callable[[argparse.Namespace], dict[str, Any]]:
    """mitmproxy reads CONFDIR/config.yaml after the --set options; setting them again lets the command line win."""

    def reapply(args: argparse.Namespace) -> dict[str, Any]:
        masters[0].options.set(*args.setoptions, defer=True)
        return {}

    return reapply


def _mitmweb_parser(opts: options.Options) -> argparse.ArgumentParser:
    """mitmweb's parser, with the filter arguments mitmproxy's runner reads whenever it is given `extra`."""
    web: argparse.ArgumentParser = cmdline.mitmweb(opts)
    web.set_defaults(filter_args=None)
    return web


@dataclass(frozen=True)
class Flags:
    """The bridge's command line, parsed, with the mode specs it means."""

    args: argparse.Namespace
    specs: list[str]

    @property
    def mitmproxy_argv(self) -> list[str]:
        return mitmproxy_args(self.args, self.specs)


def parse(argv: Sequence[str], p: argparse.ArgumentParser | None = None) -> Flags:
    """`argv` by `p` (the bridge's own parser unless given), exiting with argparse's usage error when wrong."""
    p = p or parser()
    args = p.parse_args(argv)
    try:
        return Flags(args, mode_specs_for(args.mode or ["reverse"], args.port))
    except ValueError as e:
        p.error(str(e))


def run(argv: Sequence[str]) -> None:
    """mitmdump (or mitmweb with --web) with the bridge loaded; exit 1 when the bridge stopped itself."""
    flags = parse(argv)
    if problems := interception.mode_problems(flags.specs):
        sys.exit("claude-bridge cannot start:\n" + "\n".join(f"  - {problem}" for problem in problems))
    for note in interception.mode_notes(flags.specs):
        print(f"claude-bridge: {note}", file=sys.stderr)
    started: list[master.Master] = []
    if flags.args.web:
        from mitmproxy.tools.web.master import WebMaster

        web = _with_bridge(WebMaster, started)
        mitmproxy_main.run(web, _mitmweb_parser, flags.mitmproxy_argv, _command_line_wins(started))
    else:
        from mitmproxy.tools.dump import DumpMaster

        dump = _with_bridge(DumpMaster, started)
        mitmproxy_main.run(dump, cmdline.mitmdump, flags.mitmproxy_argv, _command_line_wins(started))
    bridge = started[0].addons.get("claudebridge") if started else None
    if bridge is not None and bridge.failure:
        # Without the interpreter's teardown: mitmproxy_rs can crash (SIGSEGV) tearing down the redirector that
        # failed under it, and the exit status must say the bridge failed, not that it crashed.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
