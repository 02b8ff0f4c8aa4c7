"""Transparent, local and WireGuard capture end to end, each in network and mount namespaces of its own.

An app with api.openai.com hard-coded (the openai SDK, default base_url, no proxy settings, trusting only the
bridge's CA) is answered by the bridge, and a stand-in for the real API on the address api.openai.com resolves to
receives nothing unless the user chose passthrough (tests/capture.py sets the scene).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

CAPTURE = ROOT / "tests" / "capture.py"
NEEDS = {"transparent": ["iptables"], "wireguard": ["wireguard-go", "wg"], "local": ["sudo"]}
MODES = ["transparent", "wireguard", "local"]


def _namespaces_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "capture modes are tested as root, in network and mount namespaces of their own"
    probe = subprocess.run(["unshare", "--net", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        return f"this machine cannot create network and mount namespaces: {probe.stderr.decode().strip()}"
    return None


pytestmark = pytest.mark.skipif(bool(reason := _namespaces_unavailable()), reason=reason or "")


def captured(mode: str, claude_bin: str, *options: str) -> dict:
    missing = [tool for tool in NEEDS[mode] if shutil.which(tool) is None]
    assert not missing, f"{mode} mode's test needs {', '.join(missing)} (.ci/run installs them with apt-get)"
    argv = ["unshare", "--net", "--mount", "--fork", "--", sys.executable, str(CAPTURE), mode, *options]
    scene = subprocess.run([*argv, "--claude-bin", claude_bin], capture_output=True, timeout=300)
    assert scene.returncode == 0, scene.stderr.decode()[-3000:]
    result: dict = json.loads(scene.stdout)
    return result


def error_code(answer: list) -> tuple[int, str]:
    status, body = answer
    return status, body["error"]["code"]


@pytest.mark.parametrize("mode", MODES)
def test_a_hard_coded_app_is_answered_and_nothing_reaches_the_real_api(mode, claude_bin):
    result = captured(mode, claude_bin)
    app = result["app"]
    assert app["health"] == 200, result["bridge_log"]
    assert app["chat"] == app["stream"] == app["plain_http_chat"] == "ECHO: hi", result["bridge_log"]
    assert error_code(app["embeddings"]) == error_code(app["plain_http_embeddings"]) == (404, "unknown_url")
    assert error_code(app["misdirected"]) == (421, "misdirected_request")
    assert result["fake_api_requests"] == 3
    assert result["real_api_received"] == []
    assert (result["bridge_exit"], result["left_running"]) == (0, []), result["bridge_log"]


@pytest.mark.parametrize("mode", MODES)
def test_other_endpoints_reach_the_real_api_only_when_passthrough_is_chosen(mode, claude_bin):
    result = captured(mode, claude_bin, "--passthrough")
    app = result["app"]
    stand_in = {"stand_in": True, "path": "/v1/embeddings"}
    assert app["embeddings"] == app["plain_http_embeddings"] == [200, stand_in], result["bridge_log"]
    assert app["chat"] == "ECHO: hi"
    assert error_code(app["misdirected"]) == (421, "misdirected_request")
    assert result["real_api_received"] == ["POST /v1/embeddings", "POST /v1/embeddings"]


def test_ctrl_c_stops_local_capture_cleanly(claude_bin):
    """SIGINT to the whole process group reaches mitmproxy's redirector too, which crashed mitmproxy on its way out."""
    result = captured("local", claude_bin, "--ctrl-c")
    assert result["app"]["chat"] == "ECHO: hi"
    assert (result["bridge_exit"], result["left_running"]) == (0, []), result["bridge_log"]


def test_losing_local_capture_stops_the_bridge_and_says_why(claude_bin):
    result = captured("local", claude_bin, "--kill-redirector")
    assert result["bridge_exit"] == 1
    assert "local capture failed: mitmproxy's redirector exited" in result["bridge_log"]
    assert result["left_running"] == []


def test_local_mode_is_refused_at_start_without_a_cgroup2_hierarchy(claude_bin):
    """As on cgroup v1 and hybrid hosts, where the redirector's eBPF program cannot attach."""
    launch = f"mount -t tmpfs tmpfs /sys/fs/cgroup && exec {sys.executable} -m claude_bridge --mode local"
    started = subprocess.run(["unshare", "--mount", "sh", "-c", launch], capture_output=True, timeout=60)
    assert started.returncode == 1
    assert "claude-bridge cannot start" in started.stderr.decode()
    assert "cgroup2 hierarchy at /sys/fs/cgroup, and this machine has tmpfs mounted there" in started.stderr.decode()
    doctor = f"mount -t tmpfs tmpfs /sys/fs/cgroup && exec {sys.executable} -m claude_bridge doctor --mode local"
    checked = subprocess.run(["unshare", "--mount", "sh", "-c", doctor], capture_output=True, timeout=120)
    assert checked.returncode == 1
    assert "has tmpfs mounted there" in checked.stdout.decode()
