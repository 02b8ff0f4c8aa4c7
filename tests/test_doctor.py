"""`claude-bridge doctor` run as a user runs it, in a clean environment: each planted problem named, with its fix."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NamedTuple

import certifi
import pytest
from mitmproxy import certs

from claude_bridge.ledger import FILENAME, Ledger
from claude_bridge.planlimits import PlanLimits
from conftest import ROOT, bridge_env, free_port
from fake_anthropic import ApiError
from tls_server import cert_pem, make_ca

# What a user's shell may hold that would change the verdicts: proxies, CA files, the base URL.
AMBIENT = (
    *("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "OPENAI_BASE_URL"),
    *("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "NO_COLOR"),
)


class Line(NamedTuple):
    status: str
    found: str
    fixes: list[str]


@dataclass(frozen=True)
class Report:
    returncode: int
    output: str
    lines: dict[str, Line]

    def __getitem__(self, name: str) -> Line:
        return self.lines[name]


def parse(output: str) -> dict[str, Line]:
    """Check lines by name: `  STATUS  NAME (18 wide) FOUND`, then indented `fix:` lines."""
    lines: dict[str, Line] = {}
    name = ""
    for text in output.splitlines():
        if text.strip().startswith("fix: "):
            lines[name].fixes.append(text.strip().removeprefix("fix: "))
        elif text.startswith("  ") and text[2:6].strip():
            name = text[8:26].strip()
            lines[name] = Line(text[2:6].strip(), text[27:], [])
    return lines


@pytest.fixture
def env(tmp_path, fake) -> dict[str, str]:
    """The environment of a user whose CLI is logged in (to the fake API) and who set nothing else."""
    (tmp_path / "home").mkdir()
    clean = bridge_env(tmp_path / "home", fake.url)
    return {k: v for k, v in clean.items() if k.upper() not in AMBIENT}


def doctor(*args: str | Path, env: dict[str, str], stdout: int | None = subprocess.PIPE) -> Report:
    result = subprocess.run(
        [sys.executable, "-m", "claude_bridge", "doctor", *map(str, args)],
        env=env, stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=120,
    )  # fmt: skip
    assert result.stderr == ""
    if stdout is not subprocess.PIPE:
        return Report(result.returncode, "", {})
    assert "\x1b[" not in result.stdout  # no colour unless stdout is a terminal
    return Report(result.returncode, result.stdout, parse(result.stdout))


def test_a_missing_cli_fails_with_how_to_install_it(env):
    report = doctor("--claude-bin", "/nonexistent/claude", "--port", free_port(), env=env)
    assert report.returncode == 1
    assert report["Claude CLI"].status == "FAIL" and "/nonexistent/claude" in report["Claude CLI"].found
    assert "npm install -g @anthropic-ai/claude-code" in report["Claude CLI"].fixes
    assert report["login"].status == "skip"


def test_a_healthy_setup_passes_with_a_one_token_probe(env, fake, claude_bin):
    port = free_port()
    report = doctor("--probe", "--claude-bin", claude_bin, "--port", port, env=env)
    assert report.returncode == 0, report.output
    assert report["Claude CLI"].status == "ok" and "(Claude Code)" in report["Claude CLI"].found
    assert report["login"].status == "ok" and "CLAUDE_CODE_OAUTH_TOKEN" in report["login"].found
    assert report["API probe"].status == "ok"
    compatible = report["CLI compatibility"]
    assert compatible == Line("ok", "plain ok, tools ok, resume ok, live ok", []), report.output
    assert report["plan limits"].status == "skip"
    assert report[f"port {port}"] == Line("ok", f"127.0.0.1:{port} is free", [])
    assert report["CA"].status == "skip"
    assert report[f"bridge :{port}"].status == "warn"
    start = f"{ROOT}/scripts/bridge --claude-bin {claude_bin} --port {port}   # starts it"
    assert report[f"bridge :{port}"] == Line("warn", "not running", [start])
    # At max_tokens the CLI asks the model to go on by itself; the run is stopped then, but on a loaded machine a
    # second request may leave first.
    assert fake.requests[0].body["max_tokens"] == 1


def test_not_logged_in_is_found_by_the_probe_with_the_login_command(env, fake, claude_bin):
    expired = ApiError(401, "authentication_error", "OAuth token has expired")
    fake.enqueue(expired, expired)  # the CLI retries a 401 once, even with retries off
    report = doctor("--probe", "--claude-bin", claude_bin, "--port", free_port(), env=env)
    assert report.returncode == 1
    probe = report["API probe"]
    assert probe.status == "FAIL" and probe.found.startswith("401: ") and "OAuth token has expired" in probe.found
    assert probe.fixes[0] == f"{claude_bin} auth login"


def test_without_a_login_the_cli_says_so_and_nothing_is_sent(env, fake, claude_bin):
    del env["CLAUDE_CODE_OAUTH_TOKEN"]
    report = doctor("--claude-bin", claude_bin, "--port", free_port(), env=env)
    assert report.returncode == 1
    assert report["login"].status == "FAIL" and "not logged in" in report["login"].found
    assert report["login"].fixes[0] == f"{claude_bin} auth login"
    assert report["API probe"].status == "skip" and "--probe" in report["API probe"].found
    assert fake.requests == []


@pytest.mark.parametrize("line", ['bridge_access_key: "k3y"', "'bridge_access_key': k3y"])
def test_an_access_key_in_a_config_file_others_can_read_is_flagged_with_the_chmod(env, tmp_path, line):
    config = tmp_path / "certs" / "config.yaml"
    config.parent.mkdir()
    config.write_text(f"bridge_history: flatten\n{line}\n")
    config.chmod(0o644)  # as `echo ... >> certs/config.yaml` leaves it under the usual umask
    args = ("--claude-bin", "/nonexistent", "--port", free_port(), "--confdir", tmp_path / "certs")

    flagged = doctor(*args, env=env)["config"]

    assert flagged.status == "warn"
    assert flagged.found == (
        f"bridge_access_key is readable by other users of this machine, who could use your plan with it: "
        f"{config} (mode 0644)"
    )
    assert flagged.fixes == [f"chmod 600 {config}"]
    config.chmod(0o600)
    assert doctor(*args, env=env)["config"].status == "ok"


def test_a_config_file_others_can_read_without_an_access_key_is_fine(env, tmp_path):
    config = tmp_path / "certs" / "config.yaml"
    config.parent.mkdir()
    config.write_text("bridge_history: flatten\n# bridge_access_key: kept elsewhere\n")
    config.chmod(0o644)
    report = doctor("--claude-bin", "/nonexistent", "--port", free_port(), "--confdir", tmp_path / "certs", env=env)
    assert report["config"].status == "ok"


@pytest.fixture
def other_program() -> Iterator[int]:
    """A port held by an HTTP server that is not the bridge."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_taken_port_names_the_port_and_how_to_find_its_holder(env, other_program):
    report = doctor("--claude-bin", "/nonexistent", "--port", other_program, env=env)
    assert report.returncode == 1
    port = report[f"port {other_program}"]
    assert port.status == "FAIL" and port.found == f"127.0.0.1:{other_program} is in use by another program"
    holder = f"ss -ltnp 'sport = :{other_program}'" if sys.platform == "linux" else f"lsof -nP -iTCP:{other_program}"
    assert port.fixes[0].startswith(holder) and "--port" in port.fixes[1]
    assert report[f"bridge :{other_program}"].status == "skip"


def test_a_running_bridge_is_reachable_not_a_taken_port(env, bridge, claude_bin):
    report = doctor("--claude-bin", claude_bin, "--port", bridge.port, env=env)
    assert report.returncode == 0, report.output
    assert report[f"port {bridge.port}"].found == f"127.0.0.1:{bridge.port} is held by the running claude-bridge"
    reachable = report[f"bridge :{bridge.port}"]
    assert reachable.status == "ok" and "CLI 2." in reachable.found and "0 run(s) in flight" in reachable.found


@pytest.fixture
def confdir(tmp_path) -> Path:
    """A confdir with the CA the bridge generates at its first start."""
    certs.CertStore.create_store(tmp_path / "certs", "mitmproxy", 2048)
    return tmp_path / "certs"


def fake_store(root: Path, *pems: bytes) -> Path:
    """A Debian system bundle under a trust root (as scripts/trust-ca sees it), holding these certificates."""
    bundle = root / "etc/ssl/certs/ca-certificates.crt"
    bundle.parent.mkdir(parents=True)
    bundle.write_bytes(b"".join(pems))
    return bundle


def test_an_untrusted_ca_fails_for_the_system_python_and_node(env, tmp_path, confdir, claude_bin):
    fake_store(tmp_path / "root", cert_pem(make_ca("Some Public Root CA")[0]))
    env["CLAUDE_BRIDGE_TRUST_ROOT"] = str(tmp_path / "root")
    port = free_port()
    args = ("--mode", "regular", "--port", port, "--confdir", confdir, "--claude-bin", claude_bin)
    report = doctor(*args, env=env)
    assert report.returncode == 1
    cert = confdir / "mitmproxy-ca-cert.pem"
    assert report["CA"].status == "ok"
    trust = f'eval "$({ROOT}/scripts/trust-ca --cert {cert})"'
    assert report["CA: system store"] == Line(
        "FAIL", f"not in {tmp_path}/root/etc/ssl/certs/ca-certificates.crt", [trust]
    )
    assert report["CA: Python"].status == "FAIL" and "ssl default" in report["CA: Python"].found
    assert report["CA: Python"].fixes[0].startswith(trust)
    assert report["CA: Node.js"].status == "FAIL"
    assert report["CA: Node.js"].fixes[0].startswith(f"export NODE_EXTRA_CA_CERTS={cert}")
    assert report["HTTPS_PROXY"].status == "warn"
    assert f"proxy-env --host 127.0.0.1 --port {port}" in report["HTTPS_PROXY"].fixes[0]


def test_a_ca_trusted_everywhere_passes(env, tmp_path, confdir, claude_bin):
    cert = confdir / "mitmproxy-ca-cert.pem"
    bundle = fake_store(tmp_path / "root", Path(certifi.where()).read_bytes(), cert.read_bytes())
    port = free_port()
    env |= {
        "CLAUDE_BRIDGE_TRUST_ROOT": str(tmp_path / "root"),
        **dict.fromkeys(("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"), str(bundle)),
        "NODE_EXTRA_CA_CERTS": str(cert),
        "HTTPS_PROXY": f"http://127.0.0.1:{port}",
        "NO_PROXY": "localhost,127.0.0.1,::1",
    }
    report = doctor("--mode", "regular", "--port", port, "--confdir", confdir, "--claude-bin", claude_bin, env=env)
    assert report.returncode == 0, report.output
    for name in ("CA", "CA: system store", "CA: Python", "CA: Node.js", "HTTPS_PROXY"):
        assert report[name].status == "ok", report.output


def test_an_api_key_is_named_and_fails_when_the_bridge_would_pass_it_on(env, claude_bin):
    env["ANTHROPIC_API_KEY"] = "sk-ant-api03-test"
    report = doctor("--claude-bin", claude_bin, "--port", free_port(), env=env)
    assert report["ANTHROPIC_API_KEY"].status == "warn" and "withholds it" in report["ANTHROPIC_API_KEY"].found
    assert report["ANTHROPIC_API_KEY"].fixes[0].startswith("unset ANTHROPIC_API_KEY")
    allowed = doctor("--claude-bin", claude_bin, "--port", free_port(), "--set", "claude_allow_api_key=true", env=env)
    assert allowed.returncode == 1
    assert allowed["ANTHROPIC_API_KEY"].status == "FAIL" and "bill this API key" in allowed["ANTHROPIC_API_KEY"].found


def test_colour_only_on_a_terminal_and_never_with_no_color(env):
    def on_a_terminal(env: dict[str, str]) -> bytes:
        main, terminal = pty.openpty()
        try:
            doctor("--claude-bin", "/nonexistent", "--port", free_port(), env=env, stdout=terminal)
            os.close(terminal)
            output = b""
            while chunk := _read(main):
                output += chunk
            return output
        finally:
            os.close(main)

    assert b"\x1b[31mFAIL" in on_a_terminal(env)
    assert b"\x1b[" not in on_a_terminal(env | {"NO_COLOR": "1"})


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the terminal's other side is closed and all is read
        return b""


def test_the_plan_limits_a_run_last_reported_are_shown_and_paid_overage_is_flagged(env, tmp_path, claude_bin):
    confdir = tmp_path / "certs"
    book = Ledger(confdir / FILENAME)
    try:
        seen = time.time()
        book.save_plan_limits(
            PlanLimits(
                status="rejected",
                window="five_hour",
                resets_at=int(seen) + 3600,
                overage_status="allowed",
                using_overage=True,
                seen_at=seen,
            )
        )
    finally:
        book.close()
    report = doctor("--claude-bin", claude_bin, "--port", free_port(), "--confdir", confdir, env=env)
    line = report["plan limits"]
    assert line.status == "warn" and "rejected, five_hour window" in line.found
    assert "paid overage in use; new requests are refused until it resets" in line.found
