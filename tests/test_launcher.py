"""The `claude-bridge` command line: modes, ports, the `ca` and `proxy-env` helpers."""

from __future__ import annotations

import subprocess
import sys

import pytest

from claude_bridge import interception, launch


@pytest.mark.parametrize(
    ("modes", "port", "specs"),
    [
        (["reverse"], None, ["reverse:https://api.openai.com@3456"]),
        (["reverse"], 9000, ["reverse:https://api.openai.com@9000"]),
        (["reverse@9001"], None, ["reverse:https://api.openai.com@9001"]),
        (["regular"], None, ["regular"]),
        (["regular"], 9090, ["regular@9090"]),
        (["regular@8081", "reverse"], None, ["regular@8081", "reverse:https://api.openai.com@3456"]),
        (["local:curl", "wireguard", "transparent"], None, ["local:curl", "wireguard", "transparent"]),
        (["reverse:https://example.com@7000"], None, ["reverse:https://example.com@7000"]),
    ],
)
def test_mode_specs(modes, port, specs):
    assert launch.mode_specs_for(modes, port) == specs


@pytest.mark.parametrize(
    ("modes", "port", "message"), [(["bogus"], None, "--mode bogus"), (["regular", "reverse"], 1, "MODE@PORT")]
)
def test_bad_modes_are_refused_with_a_reason(modes, port, message):
    with pytest.raises(ValueError, match=message):
        launch.mode_specs_for(modes, port)


def test_local_capture_without_root_on_linux_is_refused_up_front(monkeypatch):
    monkeypatch.setattr(interception.sys, "platform", "linux")
    monkeypatch.setattr(interception.os, "geteuid", lambda: 1000)
    problems = interception.mode_problems(["local:curl"])  # with sudo or cgroup2 missing, those problems too
    assert any("needs root" in problem for problem in problems)
    assert interception.mode_problems(["regular", "wireguard", "reverse:https://api.openai.com@3456"]) == []


@pytest.mark.parametrize(
    ("flags", "confdir"),
    [
        (["--set", "confdir=/set"], "/set"),
        (["--confdir", "/flag", "--set", "confdir=/set"], "/set"),
        (["--set", "confdir=/set", "--confdir", "/flag"], "/flag"),
        (["--set", "confdir=/one", "--set", "bridge_history=flatten", "--set", "confdir=/two"], "/two"),
    ],
)
def test_set_confdir_is_the_confdir_flag_by_another_name_and_the_last_one_given_wins(flags, confdir):
    args = launch.parser().parse_args(flags)
    argv = launch.mitmproxy_args(args, ["regular"])
    assert [value for value in argv if value.startswith("confdir=")] == [f"confdir={confdir}"]
    assert [value for value in argv if value.startswith("bridge_")] == [f for f in flags if f.startswith("bridge_")]


def test_a_bridge_started_with_set_confdir_keeps_its_ca_there(start_bridge, tmp_path):
    start_bridge(f"confdir={tmp_path}")
    assert (tmp_path / "mitmproxy-ca-cert.pem").is_file()


def test_launcher_exits_with_the_problem(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "claude_bridge", "--mode", "nonsense"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "--mode nonsense" in result.stderr


def test_ca_says_where_the_ca_is_and_how_to_trust_it():
    result = subprocess.run([sys.executable, "-m", "claude_bridge", "ca"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert f"{launch.DEFAULT_CONFDIR / 'mitmproxy-ca-cert.pem'}" in result.stdout
    assert "trust-ca" in result.stdout and "NODE_EXTRA_CA_CERTS" in result.stdout and "SSL_CERT_FILE" in result.stdout


def ca(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "claude_bridge", "ca", *args], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("mode", "said", "warned"),
    [
        (0o600, "(mode 0600, yours alone; never share or commit it)", False),
        (0o644, "(mode 0644: readable by others)", True),
    ],
)
def test_ca_with_a_confdir_names_that_ca_and_its_key_as_it_really_is(tmp_path, mode, said, warned):
    (tmp_path / "mitmproxy-ca-cert.pem").write_text("a certificate")
    key = tmp_path / "mitmproxy-ca.pem"
    key.write_text("a key")
    key.chmod(mode)

    result = ca("--confdir", str(tmp_path))

    assert result.returncode == 0, result.stderr
    assert f"CA certificate: {tmp_path / 'mitmproxy-ca-cert.pem'}\n" in result.stdout
    assert f"CA private key: {key}  {said}\n" in result.stdout
    assert ("WARNING: other users of this machine can read the CA's private key (mode 0644)" in result.stdout) is warned
    assert (f"chmod 600 {key}" in result.stdout) is warned
    assert f"trust-ca --cert {tmp_path / 'mitmproxy-ca-cert.pem'})" in result.stdout
    assert f"untrust-ca --cert {tmp_path / 'mitmproxy-ca-cert.pem'})" in result.stdout


def test_ca_before_the_ca_exists_says_so_of_the_key_too(tmp_path):
    result = ca("--confdir", str(tmp_path))
    assert f"CA private key: {tmp_path / 'mitmproxy-ca.pem'}  (not generated yet)" in result.stdout
    assert "WARNING" not in result.stdout


def test_proxy_env_is_sourceable_by_a_shell():
    printed = subprocess.run(
        [sys.executable, "-m", "claude_bridge", "proxy-env", "--port", "8111"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    seen = subprocess.run(
        ["sh", "-c", printed + '\necho "$HTTPS_PROXY|$NO_PROXY|$NODE_USE_ENV_PROXY"'], capture_output=True, text=True
    )
    assert seen.stdout.strip() == "http://127.0.0.1:8111|localhost,127.0.0.1,::1|1"
