"""`claude-bridge doctor`: checks the set-up the bridge would run with, and says how to fix each problem.

It takes the bridge's own flags, so it checks the CLI, port, modes and CA that `claude-bridge` with the same flags
would use. Nothing here spends quota unless `--probe` asks for one real one-token request.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import json
import logging
import os
import platform
import re
import shlex
import shutil
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import certifi
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from mitmproxy import certs, exceptions, options, optmanager
from mitmproxy import version as mitmproxy_version
from mitmproxy.proxy import mode_specs

from . import access, interception, launch, ledger, probe
from . import options as bridge_options
from .claude.invocation import ClaudeInvocation, ClaudeSettings, child_env
from .claude.runner import ClaudeRunner, Limits
from .openai.errors import OpenAIError
from .report import TurnReport
from .translate.turn import turn

Status = Literal["ok", "info", "warn", "fail", "skipped"]

LABELS: dict[Status, tuple[str, str]] = {
    "ok": ("ok", "32"),
    "info": ("info", ""),
    "warn": ("warn", "33"),
    "fail": ("FAIL", "31"),
    "skipped": ("skip", ""),
}
"""How each status is printed, and its ANSI colour on a terminal."""

# One word back, one output token, no thinking: the cheapest request that proves the login works.
PROBE = ClaudeInvocation(
    model="haiku", prompt=[{"type": "text", "text": "Reply with the word OK."}], max_output_tokens=1, thinking=False
)
CONFIG_FILES = ("config.yaml", "config.yml")  # in the confdir, as mitmproxy reads them
CLI_TIMEOUT = 30
PROBE_TIMEOUT = 120
HEALTH_TIMEOUT = 2
SYSTEM_BUNDLES = ("etc/ssl/certs/ca-certificates.crt", "etc/pki/tls/certs/ca-bundle.crt")
"""The system CA bundles scripts/trust-ca has rebuilt with the CA in them (Debian/Ubuntu, Fedora/RHEL)."""
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
ACCESS_KEY_LINE = re.compile(r"""^["']?bridge_access_key["']?\s*:""", re.MULTILINE)
PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    found: str
    fix: tuple[str, ...] = ()


@dataclass(frozen=True)
class Setup:
    """The bridge's flags resolved as the launcher resolves them."""

    specs: list[str]
    listen_host: str
    opts: options.Options
    settings: ClaudeSettings
    launcher: str  # claude-bridge, or scripts/bridge in a checkout
    flags: list[str]
    probe: bool
    config_error: str | None

    @property
    def launch(self) -> str:
        """The command that starts this bridge."""
        return shlex.join([self.launcher, *self.flags])

    @property
    def modes(self) -> list[mode_specs.ProxyMode]:
        return [mode_specs.ProxyMode.parse(spec) for spec in self.specs]

    @property
    def confdir(self) -> Path:
        return Path(self.opts.confdir).expanduser()


def parse(argv: Sequence[str]) -> Setup:
    p = launch.parser()
    p.prog = "claude-bridge doctor"
    p.description = "Check the set-up `claude-bridge` with these flags would run with; exit 1 if a check fails."
    p.epilog = None
    p.add_argument("--probe", action="store_true", help="send one real one-token request (spends a little quota)")
    flags = launch.parse(argv, p)
    args, specs = flags.args, flags.specs
    opts = options.Options()
    bridge_options.load(opts)
    mitmproxy_argv = flags.mitmproxy_argv
    pairs = zip(mitmproxy_argv[::2], mitmproxy_argv[1::2], strict=True)
    settings_given = [value for flag, value in pairs if flag == "--set"]  # the launcher's own first
    config_error = None
    try:
        # As the launcher: the command line, then CONFDIR/config.yaml, then the command line again, which wins.
        # Options of mitmproxy's own addons wait unused.
        opts.set(*settings_given, defer=True)
        try:
            optmanager.load_paths(opts, *(Path(opts.confdir).expanduser() / name for name in CONFIG_FILES))
        except exceptions.OptionsError as e:
            config_error = str(e)
        opts.set(*settings_given, defer=True)
    except exceptions.OptionsError as e:
        p.error(str(e))
    # As the bridge's runs get them, but without CLI retries: a rate limit answers the probe at once.
    settings = ClaudeSettings(
        claude_bin=os.path.abspath(found) if (found := shutil.which(opts.claude_bin)) else opts.claude_bin,
        max_retries=0,
        idle_timeout=opts.claude_idle_timeout,
        total_timeout=min(opts.claude_total_timeout, PROBE_TIMEOUT),
        allow_api_key=opts.claude_allow_api_key,
    )
    script = interception.SCRIPTS / "bridge"
    launcher = str(script) if script.exists() else "claude-bridge"
    flags = [a for a in argv if a != "--probe"]
    return Setup(specs, args.listen_host, opts, settings, launcher, flags, args.probe, config_error)


def main(argv: Sequence[str]) -> int:
    """Print every check as it is made; 1 if one failed."""
    setup = parse(argv)
    logging.getLogger("claude_bridge").addHandler(logging.NullHandler())  # the report says it; no log lines too
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    print(f"claude-bridge doctor: {', '.join(setup.specs)} on {setup.listen_host or '*'}, confdir {setup.confdir}")
    counts = {"fail": 0, "warn": 0}
    for check in checks(setup):
        print(render(check, colour), flush=True)
        if check.status in counts:
            counts[check.status] += 1
    verdict = f"{counts['fail']} FAIL, {counts['warn']} warn"
    print(
        f"\n{verdict}: "
        + ("fix the FAIL lines, then run doctor again." if counts["fail"] else "nothing blocks the bridge.")
    )
    return 1 if counts["fail"] else 0


def render(check: Check, colour: bool) -> str:
    label, code = LABELS[check.status]
    status = f"\x1b[{code}m{label:<4}\x1b[0m" if colour and code else f"{label:<4}"
    lines = [f"  {status}  {check.name:<18} {check.found}"]
    lines += [f"{'':26} fix: {fix}" for fix in check.fix]
    return "\n".join(lines)


def checks(setup: Setup) -> Iterator[Check]:
    yield _python()
    yield _mitmproxy()
    yield _config(setup)
    yield _modes(setup)
    cli_check, cli_path = _claude_cli(setup)
    yield cli_check
    yield _node(cli_path)
    if cli_path is None:
        yield Check("login", "skipped", "no Claude CLI to ask")
        yield Check("CLI compatibility", "skipped", "no Claude CLI to check")
    else:
        yield asyncio.run(_compatibility(setup))
        yield _login(setup, cli_path)
        yield (
            asyncio.run(_probe(setup))
            if setup.probe
            else Check("API probe", "skipped", "a real one-token request spends a little quota: run with --probe")
        )
    yield _api_key(setup)
    yield _plan_limits(setup)
    ports = [_listener(setup, mode) for mode in setup.modes if mode.listen_port() is not None]
    yield from (_port(listener) for listener in ports)
    if any(not isinstance(mode, mode_specs.ReverseMode | mode_specs.DnsMode) for mode in setup.modes):
        yield from _ca(setup)
    else:
        yield Check("CA", "skipped", "reverse mode serves plain HTTP: no CA needed")
    yield from _proxy_variables(setup)
    yield from (_reachable(setup, listener) for listener in ports if listener.speaks_http)


def _python() -> Check:
    """Always at least 3.12 here (the package requires it); said for bug reports."""
    return Check("Python", "ok", f"{platform.python_version()} at {sys.executable}")


def _mitmproxy() -> Check:
    found = mitmproxy_version.VERSION
    if int(found.split(".")[0]) >= 12:
        return Check("mitmproxy", "ok", found)
    upgrade = f"{shlex.quote(sys.executable)} -m pip install --upgrade 'mitmproxy>=12'"
    return Check("mitmproxy", "fail", f"{found}; the bridge needs 12 or newer", (upgrade,))


def _config(setup: Setup) -> Check:
    files = [setup.confdir / name for name in CONFIG_FILES if (setup.confdir / name).is_file()]
    if setup.config_error:
        return Check("config", "fail", setup.config_error, (f"edit {shlex.quote(str(files[-1]))}",) if files else ())
    if exposed := [file for file in files if _holds_access_key(file) and file.stat().st_mode & 0o077]:
        found = "; ".join(f"{file} (mode {file.stat().st_mode & 0o777:04o})" for file in exposed)
        return Check(
            "config",
            "warn",
            f"bridge_access_key is readable by other users of this machine, who could use your plan with it: {found}",
            tuple(f"chmod 600 {shlex.quote(str(file))}" for file in exposed),
        )
    if files:
        return Check("config", "ok", f"{', '.join(map(str, files))} (the command line wins over it)")
    return Check("config", "info", f"no config.yaml in {setup.confdir}; defaults and --set only")


def _holds_access_key(config: Path) -> bool:
    """A top-level `bridge_access_key:` line, quoted or not (the file has loaded as YAML by now)."""
    try:
        text = config.read_text(errors="replace")
    except OSError:
        return False
    return ACCESS_KEY_LINE.search(text) is not None


def _modes(setup: Setup) -> Check:
    """What would stop the launcher: a mode this machine cannot run, or listening beyond loopback without a key."""
    problems = interception.mode_problems(setup.specs)
    exposed = access.exposed_listen_addresses(setup.specs, setup.listen_host)
    if exposed and not setup.opts.bridge_access_key:
        problems.append(f"listening on {', '.join(exposed)} needs an access key (anyone there could use your plan)")
        fix = ("--set bridge_access_key=<a long random key>   # clients send it as their API key",)
        return Check("modes", "fail", "; ".join(problems), (*fix, "or listen on loopback: --listen-host 127.0.0.1"))
    if problems:
        return Check("modes", "fail", "; ".join(problems))
    return Check("modes", "ok", ", ".join(setup.specs) + (" beyond loopback, with an access key" if exposed else ""))


def _claude_cli(setup: Setup) -> tuple[Check, str | None]:
    """The CLI the bridge would run, and its path if it answers `--version`."""
    install = (
        "npm install -g @anthropic-ai/claude-code",
        "or tell the bridge where it is: --claude-bin /path/to/claude",
    )
    path = shutil.which(setup.settings.claude_bin)
    if path is None:
        return Check("Claude CLI", "fail", f"{setup.opts.claude_bin!r} not found (or not executable)", install), None
    try:
        result = _run_cli(setup, path, "--version")
    except (OSError, subprocess.TimeoutExpired) as e:
        return Check("Claude CLI", "fail", f"`{path} --version` failed: {e}", install), None
    if result.returncode != 0:
        return Check("Claude CLI", "fail", f"`{path} --version` failed: {_last_line(result)}", install), None
    return Check("Claude CLI", "ok", f"{result.stdout.strip()} at {path}"), path


def _run_cli(setup: Setup, path: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with the environment and empty working directory the bridge gives it."""
    with tempfile.TemporaryDirectory(prefix="claude-bridge-doctor-") as cwd:
        return subprocess.run(
            [path, *args],
            env=child_env(setup.settings, PROBE),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
        )


def _last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit code {result.returncode}"


async def _compatibility(setup: Setup) -> Check:
    """The probe the bridge runs at start for a version new to it: against a loopback stand-in, nothing billed."""
    compatibility = await probe.probe(setup.settings)
    probe.remember(setup.confdir, compatibility)
    broken = compatibility.broken
    found = compatibility.summary().partition(": ")[2]
    if not broken:
        return Check("CLI compatibility", "ok", found)
    details = "; ".join(f"{capability}: {compatibility.verdicts[capability].detail}" for capability in broken)
    if compatibility.refusal("tools") is None:  # resume or live follow-ups only: the bridge falls back
        fallbacks = ", ".join(f"{name}={value}" for name, value in compatibility.fallbacks().items())
        return Check("CLI compatibility", "warn", f"{found} ({details}); the bridge falls back: {fallbacks}")
    return Check("CLI compatibility", "fail", f"{found} ({details})", (compatibility.fix(),))


def _plan_limits(setup: Setup) -> Check:
    """Where the plan's limits stood when a run last reported them (the bridge's ledger; nothing is sent)."""
    path = setup.confdir / ledger.FILENAME
    if not path.exists():
        return Check("plan limits", "skipped", "no request bridged yet with this confdir")
    try:
        book = ledger.Ledger(path, keep_days=None)
    except ledger.LedgerError as e:
        return Check("plan limits", "fail", str(e))
    try:
        limits = book.plan_limits()
    finally:
        book.close()
    if limits is None:
        return Check("plan limits", "skipped", "no run has reported them yet")
    if limits.using_overage:
        refusing = setup.opts.bridge_refuse_overage
        then = "new requests are refused until it resets" if refusing else "requests are billed as paid usage"
        return Check("plan limits", "warn", f"{limits.text()}: paid overage in use; {then}")
    return Check("plan limits", "warn" if limits.rejected or limits.warning else "ok", limits.text())


def _node(cli_path: str | None) -> Check:
    """Node.js: needed by an npm-installed JavaScript CLI (the native one runs alone), and by Node apps."""
    first_line = b""
    with contextlib.suppress(OSError):
        if cli_path:
            with open(cli_path, "rb") as f:
                first_line = f.readline(200)
    needed = first_line.startswith(b"#!") and b"node" in first_line
    node = shutil.which("node")
    if node is None:
        if needed:
            return Check("Node.js", "fail", f"not on PATH; {cli_path} runs on it", ("install Node.js 18 or newer",))
        return Check("Node.js", "info", "not on PATH (this Claude CLI does not need it; Node apps would)")
    try:
        version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=CLI_TIMEOUT).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        return Check("Node.js", "fail" if needed else "warn", f"{node} does not run: {e}")
    unneeded = " (this Claude CLI does not need it)" if cli_path and not needed else ""
    return Check("Node.js", "ok", f"{version.strip()} at {node}{unneeded}")


def _login(setup: Setup, cli_path: str) -> Check:
    """The CLI's own view of its login (`claude auth status`): no request, no quota."""
    try:
        result = _run_cli(setup, cli_path, "auth", "status")
        status: dict[str, Any] = json.loads(result.stdout)
    except (OSError, subprocess.TimeoutExpired, ValueError) as e:
        return Check("login", "warn", f"`claude auth status` gave no answer ({e})", ("run with --probe",))
    if not status.get("loggedIn"):
        where = status.get("configDirectory")
        return Check("login", "fail", f"the CLI is not logged in (its config: {where})", _login_fix(setup))
    method = status.get("authMethod")
    unverified = "" if setup.probe else "; not verified: run with --probe to check for real"
    if method == "api_key":
        return Check(
            "login",
            "warn",
            "the CLI would use ANTHROPIC_API_KEY (billed per token, not your subscription)",
            _login_fix(setup),
        )
    if method == "claude.ai":
        found = f"Claude subscription ({status.get('subscriptionType') or 'plan unknown'})"
    elif method == "oauth_token":
        found = "CLAUDE_CODE_OAUTH_TOKEN"
    else:
        found = f"{method} via {status.get('apiProvider')}"
    return Check("login", "ok", found + unverified)


def _login_fix(setup: Setup) -> tuple[str, ...]:
    """As the user who runs the bridge, with the CLI it runs."""
    path = setup.settings.claude_bin
    cli = "claude" if shutil.which("claude") == path else shlex.quote(path)
    return (
        f"{cli} auth login",
        f"or, without a browser: {cli} setup-token, then export CLAUDE_CODE_OAUTH_TOKEN=<the token> for the bridge",
    )


async def _probe(setup: Setup) -> Check:
    """One tiny request run exactly as the bridge runs one; failures read as the bridge would report them."""
    report = TurnReport()
    runner = ClaudeRunner(setup.settings, Limits(pool_size=0, live_sessions=0))
    try:
        async for _ in turn(PROBE, runner, report):
            pass
    except OpenAIError as e:
        return _probe_failure(setup, e)
    finally:
        await runner.close()
    took = ((report.finished or time.monotonic()) - report.started) * 1000
    return Check(
        "API probe", "ok", f"{report.claude_model or 'claude'} answered in {took:.0f} ms (${report.cost_usd:.4f})"
    )


def _probe_failure(setup: Setup, error: OpenAIError) -> Check:
    found = f"{error.status}: {error.error.message}"
    match error.error.code:
        case "claude_not_logged_in":
            return Check("API probe", "fail", found, _login_fix(setup))
        case "rate_limit_exceeded":
            return Check("API probe", "warn", f"logged in, but at the plan's limit now ({found})", ("wait for it",))
        case "claude_overloaded" | "claude_api_error" | "claude_api_timeout":
            return Check(
                "API probe", "warn", f"the API is failing now; login not confirmed ({found})", ("retry later",)
            )
        case "claude_request_rejected":
            return Check("API probe", "fail", found, ("see README, 'Usage and billing'",))
        case _:
            own_words = f"{shlex.quote(setup.settings.claude_bin)} -p 'Reply with the word OK.'"
            return Check("API probe", "fail", found, (f"{own_words}   # the CLI alone, with all it says",))


def _api_key(setup: Setup) -> Check:
    if not os.environ.get("ANTHROPIC_API_KEY"):
        return Check("ANTHROPIC_API_KEY", "ok", "not set")
    if setup.opts.claude_allow_api_key:
        return Check(
            "ANTHROPIC_API_KEY",
            "fail",
            "set, and claude_allow_api_key passes it to the CLI: requests would bill this API key, "
            "not your subscription",
            ("unset ANTHROPIC_API_KEY", "or drop --set claude_allow_api_key=true"),
        )
    return Check(
        "ANTHROPIC_API_KEY",
        "warn",
        "set; the bridge withholds it from the CLI, but a `claude` you run in this shell bills it",
        ("unset ANTHROPIC_API_KEY   # and remove it from your shell profile",),
    )


@dataclass(frozen=True)
class Listener:
    """One listening mode: whether its port is free, and what holds it if not."""

    mode: mode_specs.ProxyMode
    host: str
    port: int
    error: OSError | None
    health: dict[str, Any] | None  # /health of a Claude proxy already on the port

    @property
    def speaks_http(self) -> bool:
        return isinstance(self.mode, mode_specs.ReverseMode | mode_specs.RegularMode)

    @property
    def is_bridge(self) -> bool:
        return self.health is not None and ("runs_in_flight" in self.health or "error" in self.health)

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host or '*'}:{self.port}"


def _listener(setup: Setup, mode: mode_specs.ProxyMode) -> Listener:
    host, port = mode.listen_host(setup.listen_host), mode.listen_port(setup.opts.listen_port)
    assert port is not None
    error = _bind_error(host, port, mode.transport_protocol)
    health = None
    if (
        error is not None
        and error.errno == errno.EADDRINUSE
        and isinstance(mode, mode_specs.ReverseMode | mode_specs.RegularMode)
    ):
        proxy = isinstance(mode, mode_specs.RegularMode)
        health = _health(_connect_host(host), port, proxy=proxy, access_key=setup.opts.bridge_access_key)
    return Listener(mode, host, port, error, health)


def _bind_error(host: str, port: int, protocol: Literal["tcp", "udp", "both"]) -> OSError | None:
    """Why the mode could not listen there, if it could not."""
    kinds = {"tcp": [socket.SOCK_STREAM], "udp": [socket.SOCK_DGRAM]}.get(
        protocol, [socket.SOCK_STREAM, socket.SOCK_DGRAM]
    )
    for kind in kinds:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind) as s:
            if kind == socket.SOCK_STREAM:  # as asyncio's servers do: a closed connection's TIME_WAIT is no hindrance
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as e:
                return e
    return None


def _connect_host(listen_host: str) -> str:
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(listen_host, listen_host)


def _health(host: str, port: int, *, proxy: bool, access_key: str) -> dict[str, Any] | None:
    """GET /health: directly in reverse mode, as a request for api.openai.com through a proxy mode; the bridge's
    answer (503 while it starts), or its refusal of the access key (an OpenAI error naming claude-bridge).

    Never through the user's own proxy variables: this asks the program on the port, nothing else.
    """
    origin = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": origin} if proxy else {}))
    url = "http://api.openai.com/health" if proxy else f"{origin}/health"
    headers = {"Authorization": f"Bearer {access_key}"} if access_key else {}
    try:
        try:
            response = opener.open(urllib.request.Request(url, headers=headers), timeout=HEALTH_TIMEOUT)
        except urllib.error.HTTPError as e:
            response = e
        with response:
            body = json.load(response)
    except (OSError, ValueError):
        return None
    if not isinstance(body, dict):
        return None
    refused = isinstance(body.get("error"), dict) and "claude-bridge" in str(body["error"].get("message"))
    return body if refused or body.get("provider") == "claude-code-cli" else None


def _port(listener: Listener) -> Check:
    name, port, error = f"port {listener.port}", listener.port, listener.error
    if error is None:
        return Check(name, "ok", f"{listener.address} is free")
    if listener.is_bridge:
        return Check(name, "ok", f"{listener.address} is held by the running claude-bridge")
    if error.errno == errno.EACCES:
        return Check(name, "fail", f"{listener.address}: {error.strerror}", (f"--port {_free_port_near(listener)}",))
    if error.errno != errno.EADDRINUSE:
        return Check(
            name, "fail", f"cannot listen on {listener.address}: {error.strerror}", ("--listen-host 127.0.0.1",)
        )
    who = "another Claude proxy (the npm claude-max-api-proxy?)" if listener.health else "another program"
    udp = listener.mode.transport_protocol == "udp"
    if sys.platform == "linux":
        holder = f"ss -l{'u' if udp else 't'}np 'sport = :{port}'"
    else:
        holder = f"lsof -nP -i{'UDP' if udp else 'TCP'}:{port}" + ("" if udp else " -sTCP:LISTEN")
    return Check(
        name,
        "fail",
        f"{listener.address} is in use by {who}",
        (f"{holder}   # who holds it; stop that", f"or use a free port, e.g. --port {_free_port_near(listener)}"),
    )


def _free_port_near(listener: Listener) -> int:
    protocol = listener.mode.transport_protocol
    return next(
        port for port in range(max(listener.port, 1023) + 1, 65536) if not _bind_error(listener.host, port, protocol)
    )


def _reachable(setup: Setup, listener: Listener) -> Check:
    name = f"bridge :{listener.port}"
    if listener.error is None:
        return Check(name, "warn", "not running", (f"{setup.launch}   # starts it",))
    if not listener.is_bridge:
        return Check(name, "skipped", "the port is held by another program (see above)")
    health = listener.health or {}
    if "error" in health:
        return Check(
            name,
            "warn",
            f"running, but it refused: {health['error'].get('message')}",
            ("run doctor with the bridge's key: --set bridge_access_key=KEY (or keep it in CONFDIR/config.yaml)",),
        )
    claude = health.get("claude") or {}
    if claude.get("version") is None:
        return Check(
            name,
            "warn",
            f"running, but it could not run its CLI {claude.get('path')!r}",
            (f"{claude.get('path')} --version", "then restart the bridge, with --claude-bin if the path is wrong"),
        )
    found = (
        f"answers /health: {health.get('status')}, CLI {claude.get('version')} at {claude.get('path')}, "
        f"{health.get('runs_in_flight')} run(s) in flight, {health.get('runs_queued')} queued"
    )
    return Check(name, "ok" if health.get("status") == "ok" else "warn", found)


def _ca(setup: Setup) -> Iterator[Check]:
    cert, key = setup.confdir / interception.CA_CERT, setup.confdir / interception.CA_KEY
    if not cert.exists():
        yield Check(
            "CA",
            "fail",
            f"not generated yet in {setup.confdir}",
            (f"{setup.launch}   # creates it at start; then Ctrl-C", interception.trust_command(cert)),
        )
        return
    if not key.exists():
        yield Check(
            "CA",
            "fail",
            f"{cert} has no key beside it ({key}): the bridge will make a new CA at its next start",
            (f"{setup.launch}   # then Ctrl-C, and trust the new CA: {interception.trust_command(cert)}",),
        )
    elif key.stat().st_mode & 0o077:
        yield Check("CA", "warn", f"{key} is readable by others", (f"chmod 600 {shlex.quote(str(key))}",))
    else:
        yield Check("CA", "ok", f"{cert} (key {key.name}: mode {key.stat().st_mode & 0o777:04o})")
    yield _system_store(cert)
    try:
        server = LoopbackTls(cert, key)
    except (OSError, ValueError) as e:
        yield Check("CA: clients", "skipped", f"cannot issue a test certificate with the CA's key: {e}")
        return
    with server:
        yield _python_trust(cert, server.port)
        yield _node_trust(cert, server.port)


def _system_store(cert: Path) -> Check:
    """The bundle scripts/trust-ca updates (under CLAUDE_BRIDGE_TRUST_ROOT if set), or macOS's keychain."""
    name, fix = "CA: system store", (interception.trust_command(cert),)
    root = os.environ.get("CLAUDE_BRIDGE_TRUST_ROOT", "")
    if sys.platform == "darwin" and not root:
        try:
            verified = subprocess.run(
                ["security", "verify-cert", "-c", str(cert)], capture_output=True, timeout=CLI_TIMEOUT
            ).returncode
        except (OSError, subprocess.TimeoutExpired) as e:
            return Check(name, "warn", f"`security verify-cert` failed: {e}")
        if verified == 0:
            return Check(name, "ok", "trusted by the macOS keychain")
        return Check(name, "fail", "not trusted by the macOS keychain", fix)
    bundle = next((Path(root + "/" + b) for b in SYSTEM_BUNDLES if Path(root + "/" + b).is_file()), None)
    if bundle is None:
        return Check(name, "skipped", f"no system CA bundle found ({', '.join('/' + b for b in SYSTEM_BUNDLES)})")
    ours = ssl.PEM_cert_to_DER_cert(cert.read_text())
    listed = {ssl.PEM_cert_to_DER_cert(pem.decode()) for pem in PEM_CERT.findall(bundle.read_bytes())}
    if ours in listed:
        return Check(name, "ok", f"in {bundle}")
    return Check(name, "fail", f"not in {bundle}", fix)


class LoopbackTls(socketserver.TCPServer):
    """127.0.0.1 with a certificate for localhost issued by the bridge's CA, just as the bridge issues one for
    api.openai.com: a client that completes the handshake trusts the bridge."""

    def __init__(self, ca_cert: Path, ca_key: Path) -> None:
        ca = x509.load_pem_x509_certificate(ca_cert.read_bytes())
        key = serialization.load_pem_private_key(ca_key.read_bytes(), None)
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ValueError(f"unsupported key type {type(key).__name__}")
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        leaf = certs.dummy_cert(key, ca, "localhost", x509.GeneralNames(names))
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        with tempfile.NamedTemporaryFile(suffix=".pem") as leaf_file:
            leaf_file.write(leaf.to_pem())
            leaf_file.flush()
            self.context.load_cert_chain(leaf_file.name, ca_key)  # mitmproxy signs leaves for the CA's own key
        super().__init__(("127.0.0.1", 0), _Handshake)
        self.port: int = self.server_address[1]
        self._thread = threading.Thread(target=self.serve_forever, name="doctor-tls", daemon=True)

    def __enter__(self) -> LoopbackTls:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.shutdown()
        self.server_close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client refusing the certificate is an answer, not an error to print."""


class _Handshake(socketserver.BaseRequestHandler):
    server: LoopbackTls

    def handle(self) -> None:
        self.request.settimeout(CLI_TIMEOUT)
        with contextlib.suppress(OSError), self.server.context.wrap_socket(self.request, server_side=True):
            pass


def _python_trust(cert: Path, port: int) -> Check:
    """As Python clients verify: ssl's default (which honours SSL_CERT_FILE), httpx's and requests' CA files."""
    env = os.environ
    ssl_cert_file = "SSL_CERT_FILE" if env.get("SSL_CERT_FILE") else None
    bundle = next((name for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE") if env.get(name)), None)
    clients: dict[str, tuple[str, str | None]] = {  # client -> (where its CAs come from, the file it loads)
        "ssl default": (ssl_cert_file or "OpenSSL's default", None),
        "httpx/openai": (ssl_cert_file or "certifi", env.get("SSL_CERT_FILE") or certifi.where()),
        "requests": (bundle or "certifi", env[bundle] if bundle else certifi.where()),
    }
    refused, reasons = [], set()
    for client, (source, cafile) in clients.items():
        try:
            with (
                socket.create_connection(("127.0.0.1", port), CLI_TIMEOUT) as s,
                ssl.create_default_context(cafile=cafile).wrap_socket(s, server_hostname="localhost"),
            ):
                pass
        except ssl.SSLCertVerificationError as e:
            refused.append(f"{client} ({source})")
            reasons.add(e.verify_message)
        except OSError as e:
            refused.append(f"{client} ({source})")
            reasons.add(str(e))
    if not refused:
        return Check("CA: Python", "ok", "trusted by " + ", ".join(f"{c} ({s})" for c, (s, _) in clients.items()))
    fix = f"{interception.trust_command(cert)}   # sets SSL_CERT_FILE and REQUESTS_CA_BUNDLE"
    return Check("CA: Python", "fail", f"not trusted by {', '.join(refused)}: {'; '.join(sorted(reasons))}", (fix,))


NODE_HANDSHAKE = """\
const s = require('tls').connect({host: '127.0.0.1', port: +process.argv[1], servername: 'localhost'}, () => {
  s.end(); process.exit(0) })
s.on('error', e => { console.log(e.code || e.message); process.exit(1) })"""


def _node_trust(cert: Path, port: int) -> Check:
    node = shutil.which("node")
    if node is None:
        return Check("CA: Node.js", "skipped", "node is not on PATH")
    try:
        result = subprocess.run(
            [node, "-e", NODE_HANDSHAKE, str(port)], capture_output=True, text=True, timeout=CLI_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return Check("CA: Node.js", "warn", f"node did not answer: {e}")
    if result.returncode == 0:
        extra = os.environ.get("NODE_EXTRA_CA_CERTS")
        return Check("CA: Node.js", "ok", "trusted" + (f" (NODE_EXTRA_CA_CERTS={extra})" if extra else ""))
    fix = f"export NODE_EXTRA_CA_CERTS={shlex.quote(str(cert))}   # or {interception.trust_command(cert)}"
    return Check("CA: Node.js", "fail", f"not trusted: {_last_line(result)}", (fix,))


def _proxy_variables(setup: Setup) -> Iterator[Check]:
    for mode in setup.modes:
        host, port = _connect_host(mode.listen_host(setup.listen_host)), mode.listen_port(setup.opts.listen_port)
        if isinstance(mode, mode_specs.ReverseMode):
            yield _base_url(host, port)
        elif isinstance(mode, mode_specs.RegularMode):
            yield _https_proxy(setup.launcher, host, port)


def _points_at(url: str, host: str, port: int | None) -> bool:
    parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
    return parts.port == port and (parts.hostname == host or {parts.hostname, host} <= LOOPBACK)


def _base_url(host: str, port: int | None) -> Check:
    wanted = f"http://{host}:{port}/v1"
    base_url = os.environ.get("OPENAI_BASE_URL")
    proxies = urllib.request.getproxies_environment()
    if (proxies.get("http") or proxies.get("all")) and not urllib.request.proxy_bypass(host):
        return Check(
            "OPENAI_BASE_URL",
            "warn",
            f"HTTP_PROXY is set and NO_PROXY does not cover {host}: clients would send bridge requests to the proxy",
            ("export NO_PROXY=localhost,127.0.0.1,::1 no_proxy=localhost,127.0.0.1,::1",),
        )
    if base_url is None:
        return Check("OPENAI_BASE_URL", "info", f"not set here; apps reach the bridge with OPENAI_BASE_URL={wanted}")
    if _points_at(base_url, host, port):
        return Check("OPENAI_BASE_URL", "ok", f"{base_url} (this bridge)")
    return Check("OPENAI_BASE_URL", "info", f"{base_url}: apps started here use that, not the bridge ({wanted})")


def _https_proxy(launcher: str, host: str, port: int | None) -> Check:
    wanted = f"http://{host}:{port}"
    set_env = (f'eval "$({launcher} proxy-env --host {host} --port {port})"',)
    proxy = urllib.request.getproxies_environment().get("https")
    if proxy is None:
        return Check("HTTPS_PROXY", "warn", f"not set here; apps reach the bridge with HTTPS_PROXY={wanted}", set_env)
    if not _points_at(proxy, host, port):
        return Check("HTTPS_PROXY", "fail", f"{proxy}: not this bridge ({wanted})", set_env)
    if urllib.request.proxy_bypass("api.openai.com"):
        no_proxy = os.environ.get("no_proxy") or os.environ.get("NO_PROXY")
        return Check("HTTPS_PROXY", "fail", f"NO_PROXY={no_proxy} sends api.openai.com around the bridge", set_env)
    return Check("HTTPS_PROXY", "ok", f"{proxy} (this bridge)")
