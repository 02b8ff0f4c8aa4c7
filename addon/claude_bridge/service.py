"""`claude-bridge service install|uninstall|status`: keep a bridge running, as a systemd user unit or a LaunchAgent.

A service starts with almost no environment, so everything the bridge needs is fixed at install time: this
interpreter, the options given (checked now, so a typo fails here and not at boot), the CLI's absolute path and a
PATH holding the CLI's and node's directories. Nothing secret goes into the file: the CLI's login lives in the home.
"""

from __future__ import annotations

import argparse
import os
import plistlib
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import interception, launch

NAME = "claude-bridge"
LABEL = "dev.claude-bridge"
# After the CLI's and node's own directories: where system tools live when a service's PATH is bare.
SYSTEM_PATH = {
    "linux": ["/usr/local/bin", "/usr/bin", "/bin"],
    "darwin": ["/opt/homebrew/bin", "/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"],
}
# mitmproxy options holding credentials: a unit file is not the place for them; the confdir's config.yaml is.
CREDENTIAL_OPTIONS = ("proxyauth", "upstream_auth", "web_password", "bridge_access_key")
# Set in a shell but deliberately not copied into the unit.
LOGIN_VARIABLES = ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_AUTH_TOKEN")
RESTART_DELAY = 5
LOG_TAIL = 10


class ServiceError(Exception):
    """A problem the person at the terminal can act on; the message says how."""


class NoManager(ServiceError):
    """The platform's service manager cannot be reached from here; the message says why and what to do."""


@dataclass(frozen=True)
class Command:
    """What the unit runs: argv and the environment the service manager gives it."""

    argv: list[str]
    env: dict[str, str]


def bridge_command(flags: Sequence[str], platform: str) -> Command:
    """The bridge as it would run now with `flags`, pinned so that the boot-time PATH and directory don't matter."""
    parser = launch.parser()
    parser.prog = "claude-bridge service install"
    parsed = launch.parse(flags, parser)
    args, specs = parsed.args, parsed.specs
    if problems := interception.mode_problems(specs):
        raise ServiceError("the bridge could not start with these options:\n" + "\n".join(f"  - {p}" for p in problems))
    for setting in args.setoptions:
        name = setting.partition("=")[0]
        if name in CREDENTIAL_OPTIONS:
            raise ServiceError(
                f"--set {name} would write a credential into the unit file; put `{name}: ...` in "
                f"{args.confdir.resolve() / 'config.yaml'} instead (mitmproxy reads it at start)"
            )
        if name == "claude_bin":
            raise ServiceError("give the CLI as --claude-bin PATH, so that its directory goes on the service's PATH")
    found = shutil.which(args.claude_bin or "claude")
    if found is None:
        raise ServiceError(
            f"the Claude Code CLI was not found at {args.claude_bin or '`claude` on PATH'}: install it "
            "(npm install -g @anthropic-ai/claude-code) or pass --claude-bin /path/to/claude"
        )
    claude = os.path.abspath(found)
    pinned = list(flags)
    # argparse keeps the last value given, so appending overrides a relative or PATH-dependent one.
    if args.claude_bin != claude:
        pinned += ["--claude-bin", claude]
    if not args.confdir.is_absolute():
        pinned += ["--confdir", str(args.confdir.resolve())]
    if args.web and not any(setting.startswith("web_open_browser=") for setting in args.setoptions):
        pinned += ["--set", "web_open_browser=false"]  # a service has no one to open a browser for
    # The CLI may be a node script (`#!/usr/bin/env node`), so node must be on the PATH too.
    dirs = [os.path.dirname(claude)]
    if node := shutil.which("node"):
        dirs.append(os.path.dirname(os.path.abspath(node)))
    path = os.pathsep.join(dict.fromkeys(dirs + SYSTEM_PATH[platform]))
    # Unbuffered, so the log file shows each line as it is written.
    return Command([sys.executable, "-m", "claude_bridge", *pinned], {"PATH": path, "PYTHONUNBUFFERED": "1"})


class Systemd:
    """A systemd user unit: started with the user's manager (at login, or at boot with lingering)."""

    platform = "linux"
    unit_name = f"{NAME}.service"

    def __init__(self) -> None:
        home = Path.home()
        config = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
        state = Path(os.environ.get("XDG_STATE_HOME") or home / ".local" / "state")
        self.home = home
        self.unit = config / "systemd" / "user" / self.unit_name
        self.log = state / NAME / "bridge.log"
        self.load_commands = f"systemctl --user daemon-reload && systemctl --user enable --now {self.unit_name}"

    def render(self, command: Command) -> bytes:
        lines = [
            "[Unit]",
            "Description=claude-bridge: OpenAI API calls answered by the Claude Code CLI",
            "",
            "[Service]",
            # ExecStart also expands $VARIABLES; Environment= does not.
            "ExecStart=" + " ".join(_systemd_word(arg).replace("$", "$$") for arg in command.argv),
            *(f"Environment={_systemd_word(f'{k}={v}')}" for k, v in command.env.items()),
            f"WorkingDirectory={_specifier_escape(str(self.home))}",
            "Restart=on-failure",
            f"RestartSec={RESTART_DELAY}",
            # The log (it may hold mitmweb's token URL) and the CA the bridge creates: the user's alone.
            "UMask=0077",
            f"StandardOutput=append:{_specifier_escape(str(self.log))}",
            f"StandardError=append:{_specifier_escape(str(self.log))}",
            "",
            "[Install]",
            "WantedBy=default.target",
        ]
        return "\n".join(lines).encode() + b"\n"

    def load(self) -> None:
        # restart, not enable --now: a reinstall with new options must replace a running bridge.
        for args in (["daemon-reload"], ["enable", self.unit_name], ["restart", self.unit_name]):
            done = self._systemctl(*args)
            if done.returncode != 0:
                raise ServiceError(f"`systemctl --user {' '.join(args)}` failed: {done.stderr.strip()}")

    def unload(self) -> str | None:
        """Stop and disable the unit and remove its file; says what was stopped, if anything."""
        try:
            done = self._systemctl("disable", "--now", self.unit_name)
        finally:
            # Also by hand, for when systemd cannot be reached: what `enable` made, then the unit.
            (self.unit.parent / "default.target.wants" / self.unit_name).unlink(missing_ok=True)
            self.unit.unlink()
        self._systemctl("daemon-reload")
        return f"Stopped and disabled {self.unit_name}." if done.returncode == 0 else None

    def state(self) -> tuple[bool, str]:
        done = self._systemctl("is-active", self.unit_name)
        state = done.stdout.strip()
        return state == "active", f"{state} (systemctl --user is-active {self.unit_name})"

    def _systemctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        try:
            done = subprocess.run(["systemctl", "--user", *args], capture_output=True, text=True, timeout=60)
        except FileNotFoundError as e:
            raise NoManager(
                "systemctl was not found: this system does not run systemd; start `claude-bridge` from its own "
                "init system or a login script"
            ) from e
        if done.returncode != 0 and (no_bus := re.search(r"^.*Failed to connect to .*bus.*$", done.stderr, re.M)):
            raise NoManager(
                f"`systemctl --user` cannot reach your user's systemd: {no_bus.group(0)}. That happens without a "
                "login session (in containers, or over SSH when the user does not linger); on a server, "
                "`sudo loginctl enable-linger $USER` and a new login fix it"
            )
        return done


class Launchd:
    """A LaunchAgent in the user's GUI session: started at login."""

    platform = "darwin"

    def __init__(self) -> None:
        self.home = Path.home()
        self.unit = self.home / "Library" / "LaunchAgents" / f"{LABEL}.plist"
        self.log = self.home / "Library" / "Logs" / f"{NAME}.log"
        self.domain = f"gui/{os.getuid()}"
        self.target = f"{self.domain}/{LABEL}"
        self.load_commands = f"launchctl enable {self.target} && launchctl bootstrap {self.domain} {self.unit}"

    def render(self, command: Command) -> bytes:
        return plistlib.dumps(
            {
                "Label": LABEL,
                "ProgramArguments": command.argv,
                "EnvironmentVariables": command.env,
                "WorkingDirectory": str(self.home),
                "RunAtLoad": True,
                # Restart after a failure (not after a clean stop), at most once per ThrottleInterval.
                "KeepAlive": {"SuccessfulExit": False},
                "Umask": 0o077,  # the log (it may hold mitmweb's token URL) is the user's alone
                "ThrottleInterval": RESTART_DELAY,
                "StandardOutPath": str(self.log),
                "StandardErrorPath": str(self.log),
            }
        )

    def load(self) -> None:
        # A loaded agent keeps its old definition: take it out first (failing when it is not loaded is fine).
        self._launchctl("bootout", self.target)
        for args in (["enable", self.target], ["bootstrap", self.domain, str(self.unit)]):
            done = self._launchctl(*args)
            if done.returncode != 0:
                raise ServiceError(
                    f"`launchctl {' '.join(args)}` failed: {(done.stderr or done.stdout).strip()}. A LaunchAgent "
                    "loads into the user's GUI session: over SSH alone, log in on the Mac itself first"
                )

    def unload(self) -> str | None:
        """Stop and unload the agent and remove its file; says what was stopped, if anything."""
        done = self._launchctl("bootout", self.target)
        self.unit.unlink()
        return f"Stopped and unloaded {LABEL}." if done.returncode == 0 else None

    def state(self) -> tuple[bool, str]:
        done = self._launchctl("print", self.target)
        if done.returncode != 0:
            return False, f"not loaded (launchctl print {self.target})"
        state = re.search(r"^\s*state = (.+)$", done.stdout, re.MULTILINE)
        text = state.group(1).strip() if state else "unknown"
        return text == "running", f"{text} (launchctl print {self.target})"

    def _launchctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["launchctl", *args], capture_output=True, text=True, timeout=60)


type Manager = Systemd | Launchd


def manager() -> Manager:
    """This platform's service manager, with paths read from the environment now."""
    if sys.platform.startswith("linux"):
        return Systemd()
    if sys.platform == "darwin":
        return Launchd()
    raise ServiceError(
        f"autostart supports Linux (systemd) and macOS (launchd), not {sys.platform}; "
        "start `claude-bridge` with this system's own service manager"
    )


def install(m: Manager, flags: Sequence[str], start: bool) -> int:
    command = bridge_command(flags, m.platform)
    m.unit.parent.mkdir(parents=True, exist_ok=True)
    m.log.parent.mkdir(parents=True, exist_ok=True)
    m.unit.write_bytes(m.render(command))
    print(f"Wrote {m.unit}\n  runs: {shlex.join(command.argv)}\n  logs: {m.log}")
    if present := [name for name in LOGIN_VARIABLES if os.environ.get(name)]:
        print(
            f"Note: {', '.join(present)} is set here but not written into the unit; the service uses the CLI's "
            "own login (`claude auth login` as this user)."
        )
    if not start:
        print(f"Not loaded (--no-start). To start it now and at every login:\n  {m.load_commands}")
        return 0
    try:
        m.load()
    except ServiceError as e:
        raise ServiceError(
            f"{str(e).rstrip('.')}.\n"
            f"The unit file is in place but the bridge is not running (as after --no-start): {m.unit}\n"
            f"Start it later with:\n  {m.load_commands}\nor remove it with:\n  claude-bridge service uninstall"
        ) from e
    print("Started; it starts again at every login and after a failure. `claude-bridge service status` shows it.")
    return 0


def uninstall(m: Manager) -> int:
    if not m.unit.exists():
        print(f"Not installed (no {m.unit}); nothing to do.")
        return 0
    try:
        if stopped := m.unload():
            print(stopped)
    except NoManager as e:
        print(f"Could not stop a bridge it may have started: {e}")
    print(f"Removed {m.unit}.")
    if m.log.exists():
        print(f"The log stays at {m.log}.")
    return 0


def status(m: Manager) -> int:
    running = False
    if m.unit.exists():
        try:
            running, state = m.state()
        except NoManager as e:
            state = f"unknown: {e}"
        print(f"Installed: {m.unit}\nState: {state}")
    else:
        print(f"Not installed (no {m.unit}).")
    print(f"Log: {m.log}" + ("" if m.log.exists() else " (none yet)"))
    for line in _tail(m.log):
        print(f"  {line}")
    return 0 if running else 1


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="claude-bridge service",
        description="Keep a bridge running: a systemd user unit on Linux, a LaunchAgent on macOS, started at login "
        "and restarted after a failure.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    install_parser = commands.add_parser(
        "install",
        usage="claude-bridge service install [--no-start] [claude-bridge options]",
        help="write the unit and start it",
        description="Write the unit and start it. It runs `claude-bridge` with the options given here, e.g. "
        "`claude-bridge service install --port 3456 --set claude_pool_size=1` (see `claude-bridge --help`).",
    )
    install_parser.add_argument("--no-start", action="store_true", help="write the unit only, and say how to load it")
    commands.add_parser("uninstall", help="stop the bridge and remove the unit (the log stays)")
    commands.add_parser("status", help="installed? running? the log's last lines; exit 0 when running")
    args, flags = parser.parse_known_args(argv)
    if flags and args.command != "install":
        parser.error(f"unrecognized arguments: {' '.join(flags)}")
    try:
        m = manager()
        if args.command == "install":
            return install(m, flags, start=not args.no_start)
        return uninstall(m) if args.command == "uninstall" else status(m)
    except ServiceError as e:
        print(f"claude-bridge service: {e}", file=sys.stderr)
        return 1


def _systemd_word(word: str) -> str:
    """One word of a systemd command line or assignment list: specifiers escaped, quoted when it has to be."""
    word = _specifier_escape(word)
    if re.fullmatch(r"[\w@%+=:,./-]+", word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _specifier_escape(text: str) -> str:
    return text.replace("%", "%%")


def _tail(path: Path) -> list[str]:
    """The log's last lines, reading only its end (it grows for as long as the service runs)."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 64 * 1024))
            return f.read().decode(errors="replace").splitlines()[-LOG_TAIL:]
    except FileNotFoundError:
        return []
