"""`claude-bridge service`: the unit files it writes, checked by the platforms' own tools, and the bridge they run.

HOME and the XDG directories point into tmp_path, and XDG_RUNTIME_DIR at an empty directory, so the real
`systemctl --user` finds no user manager here, as in a container or an SSH session without lingering.
"""

from __future__ import annotations

import json
import os
import plistlib
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from claude_bridge import service
from conftest import CLAUDE_BIN, Bridge, bridge_env, free_port
from fake_anthropic import TEST_TOKEN

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="systemd user units are Linux's")
CLAUDE_DIR = os.path.dirname(CLAUDE_BIN)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, claude_bin: str) -> Path:
    home = tmp_path / "home"
    runtime = tmp_path / "runtime"
    for directory in (home, runtime):
        directory.mkdir(mode=0o700)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)
    # The CLI is found on PATH, as `claude` installed by npm would be.
    monkeypatch.setenv("PATH", CLAUDE_DIR + os.pathsep + os.environ["PATH"])
    return home


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """`claude-bridge service ARGV` in this process: exit code (argparse's too), stdout, stderr."""
    try:
        code = service.main(argv)
    except SystemExit as e:
        code = e.code  # type: ignore[assignment]
    out, err = capsys.readouterr()
    return code, out, err


def unit_path(tmp_path: Path) -> Path:
    return tmp_path / "config" / "systemd" / "user" / "claude-bridge.service"


def read_unit(path: Path) -> dict[str, list[str]]:
    entries: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            entries.setdefault(key, []).append(value)
    return entries


def unquote(value: str) -> list[str]:
    """systemd's word splitting for the quoting the unit uses: double quotes, `%%` and `$$`."""
    return [word.replace("%%", "%").replace("$$", "$") for word in shlex.split(value)]


def exec_start(unit: dict[str, list[str]]) -> tuple[list[str], dict[str, str]]:
    (command,) = unit["ExecStart"]
    env = dict(word.split("=", 1) for value in unit["Environment"] for word in unquote(value))
    return unquote(command), env


@linux
@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze is not installed")
def test_install_no_start_writes_a_unit_systemd_analyze_accepts(home, tmp_path, capsys):
    confdir = tmp_path / "my $HOME 100% certs"  # quoting: a space, a variable and a specifier, all literal
    code, out, _ = run(capsys, "install", "--no-start", "--port", "3999", "--confdir", str(confdir))
    assert code == 0
    unit = unit_path(tmp_path)
    assert f"Wrote {unit}" in out
    assert "systemctl --user daemon-reload && systemctl --user enable --now claude-bridge.service" in out

    verify = subprocess.run(
        ["systemd-analyze", "verify", "--user", str(unit)], capture_output=True, text=True, timeout=60
    )
    output = verify.stdout + verify.stderr
    assert verify.returncode == 0, output
    assert [line for line in output.splitlines() if unit.name in line] == [], output
    argv, _ = exec_start(read_unit(unit))
    assert argv[argv.index("--confdir") + 1] == str(confdir)


@linux
def test_the_unit_runs_the_bridge_with_the_flags_a_fixed_path_and_restarts(home, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CLAUDE_CODE_OAUTH_TOKEN", TEST_TOKEN)
    code, out, _ = run(capsys, "install", "--no-start", "--port", "3999", "--set", "claude_pool_size=0")
    assert code == 0
    assert "CLAUDE_CODE_OAUTH_TOKEN is set here but not written into the unit" in out
    text = unit_path(tmp_path).read_text()
    assert TEST_TOKEN not in text

    unit = read_unit(unit_path(tmp_path))
    argv, env = exec_start(unit)
    flags = ["--port", "3999", "--set", "claude_pool_size=0", "--claude-bin", CLAUDE_BIN]
    assert argv == [sys.executable, "-m", "claude_bridge", *flags]
    path = env.pop("PATH").split(os.pathsep)
    assert env == {"PYTHONUNBUFFERED": "1"}
    assert path[0] == CLAUDE_DIR
    if node := shutil.which("node"):
        assert os.path.dirname(node) in path
    assert {"/usr/bin", "/bin"} <= set(path)
    assert unit["Restart"] == ["on-failure"]
    log = tmp_path / "state" / "claude-bridge" / "bridge.log"
    assert unit["StandardOutput"] == unit["StandardError"] == [f"append:{log}"]
    assert log.parent.is_dir()
    assert unit["WorkingDirectory"] == [str(home)]
    assert unit["WantedBy"] == ["default.target"]


@linux
def test_a_web_ui_service_opens_no_browser(home, tmp_path, capsys):
    code, _, _ = run(capsys, "install", "--no-start", "--web")
    assert code == 0
    argv, _ = exec_start(read_unit(unit_path(tmp_path)))
    assert argv[-2:] == ["--set", "web_open_browser=false"]


@linux
def test_relative_paths_are_pinned_at_install(home, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(Path(CLAUDE_DIR).parent.parent)
    code, _, _ = run(capsys, "install", "--no-start", "--claude-bin", "node_modules/.bin/claude", "--confdir", "c")
    assert code == 0
    argv, _ = exec_start(read_unit(unit_path(tmp_path)))
    # argparse keeps the last value, so the absolute ones appended win.
    assert argv[-4:] == ["--claude-bin", CLAUDE_BIN, "--confdir", str(Path("c").resolve())]


@linux
def test_the_units_command_line_starts_a_bridge(home, tmp_path, capsys, fake_server):
    port = free_port()
    flags = ["--port", str(port), "--claude-bin", CLAUDE_BIN, "--confdir", str(tmp_path / "certs")]
    assert run(capsys, "install", "--no-start", *flags, "--set", "claude_pool_size=0")[0] == 0
    argv, unit_env = exec_start(read_unit(unit_path(tmp_path)))

    bridge = Bridge(argv, bridge_env(home, fake_server.url, unit_env), tmp_path / "run.log", port)
    try:
        deadline = time.monotonic() + 30
        while True:
            with bridge.get("/health") as response:
                health = json.load(response)
            # The version comes from running the CLI with the unit's PATH.
            if health["claude"]["version"] is not None or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert health["claude"]["path"] == CLAUDE_BIN
        assert health["claude"]["version"] is not None, (tmp_path / "run.log").read_text()
    finally:
        bridge.stop()


@linux
def test_install_without_a_user_systemd_says_what_to_do_and_leaves_the_unit_in_place(home, tmp_path, capsys):
    code, out, err = run(capsys, "install")
    unit = unit_path(tmp_path)
    assert code == 1
    assert f"Wrote {unit}" in out
    if shutil.which("systemctl"):
        assert "`systemctl --user` cannot reach your user's systemd: Failed to connect to bus" in err
        assert "sudo loginctl enable-linger $USER" in err
    else:
        assert "this system does not run systemd" in err
    assert f"The unit file is in place but the bridge is not running (as after --no-start): {unit}" in err
    assert "claude-bridge service uninstall" in err
    assert unit.exists()


@linux
def test_status_reports_not_installed_then_installed_and_not_running(home, tmp_path, capsys):
    code, out, _ = run(capsys, "status")
    assert code == 1
    assert f"Not installed (no {unit_path(tmp_path)})." in out

    run(capsys, "install", "--no-start")
    log = tmp_path / "state" / "claude-bridge" / "bridge.log"
    log.write_text("".join(f"line {n}\n" for n in range(15)))
    code, out, _ = run(capsys, "status")
    assert code == 1
    assert f"Installed: {unit_path(tmp_path)}" in out
    reason = "Failed to connect to bus" if shutil.which("systemctl") else "this system does not run systemd"
    assert "State: unknown: " in out and reason in out
    assert f"Log: {log}" in out
    assert "  line 14" in out and "  line 5" in out and "line 4" not in out


@linux
def test_uninstall_removes_the_unit_keeps_the_log_and_can_run_twice(home, tmp_path, capsys):
    run(capsys, "install", "--no-start")
    # What `systemctl --user enable` makes; with no systemd to ask, uninstall removes it itself.
    wants = unit_path(tmp_path).parent / "default.target.wants" / "claude-bridge.service"
    wants.parent.mkdir()
    wants.symlink_to(unit_path(tmp_path))
    log = tmp_path / "state" / "claude-bridge" / "bridge.log"
    log.write_text("kept\n")
    code, out, _ = run(capsys, "uninstall")
    assert code == 0
    assert f"Removed {unit_path(tmp_path)}." in out
    assert f"The log stays at {log}." in out
    assert not unit_path(tmp_path).exists() and not wants.is_symlink()
    assert log.read_text() == "kept\n"

    code, out, _ = run(capsys, "uninstall")
    assert code == 0
    assert "nothing to do" in out


@pytest.mark.parametrize(
    ("flags", "code", "message"),
    [
        (["--prot", "1"], 2, "unrecognized arguments: --prot 1"),
        (["--mode", "bogus"], 2, "--mode bogus"),
        (["--claude-bin", "/nonexistent/claude"], 1, "the Claude Code CLI was not found at /nonexistent/claude"),
        (["--set", "upstream_auth=user:secret"], 1, "--set upstream_auth would write a credential"),
        (["--set", "bridge_access_key=k"], 1, "--set bridge_access_key would write a credential"),
    ],
)
def test_bad_flags_are_refused_at_install(home, tmp_path, capsys, flags, code, message):
    exit_code, _, err = run(capsys, "install", "--no-start", *flags)
    assert exit_code == code, err
    assert message in err
    assert not (tmp_path / "config").exists() and not (home / "Library").exists()


def test_the_launcher_runs_service_and_passes_its_exit_code(home):
    done = subprocess.run(
        [sys.executable, "-m", "claude_bridge", "service", "install", "--no-start", "--prot", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "claude-bridge service install: error: unrecognized arguments: --prot 1" in done.stderr


def launch_agent() -> tuple[service.Launchd, bytes]:
    agent = service.Launchd()
    return agent, agent.render(service.bridge_command(["--port", "3999"], "darwin"))


def test_launch_agent_plist_round_trips_with_what_launchd_needs(home):
    agent, data = launch_agent()
    plist = plistlib.loads(data)
    assert plist["Label"] == "dev.claude-bridge"
    assert plist["ProgramArguments"] == [
        sys.executable,
        "-m",
        "claude_bridge",
        "--port",
        "3999",
        "--claude-bin",
        CLAUDE_BIN,
    ]
    assert plist["EnvironmentVariables"]["PATH"].split(os.pathsep)[0] == CLAUDE_DIR
    assert "/opt/homebrew/bin" in plist["EnvironmentVariables"]["PATH"].split(os.pathsep)
    assert plist["KeepAlive"] == {"SuccessfulExit": False} and plist["ThrottleInterval"] == 5
    assert plist["RunAtLoad"] is True and plist["WorkingDirectory"] == str(home)
    assert plist["StandardOutPath"] == plist["StandardErrorPath"] == str(home / "Library/Logs/claude-bridge.log")
    assert plistlib.dumps(plist) == data
    assert agent.unit == home / "Library/LaunchAgents/dev.claude-bridge.plist"


@pytest.mark.skipif(sys.platform != "darwin", reason="plutil is macOS's")
def test_launch_agent_plist_passes_plutil_lint(home):
    agent, data = launch_agent()
    agent.unit.parent.mkdir(parents=True)
    agent.unit.write_bytes(data)
    lint = subprocess.run(["plutil", "-lint", str(agent.unit)], capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout + lint.stderr
