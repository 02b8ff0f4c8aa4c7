"""Apps with api.openai.com hard-coded: the bridge as their proxy, only OpenAI decrypted, its CA in certs/."""

from __future__ import annotations

import http.client
import json
import ssl
import stat
import subprocess
import sys

import openai
import pytest

from claude_bridge import redirector
from conftest import ROOT, Bridge, bridge_env, free_port
from tls_server import TlsServer

# Test machines preset these; trust must come from what each test sets, not from the machine.
TRUST_AND_PROXY_VARIABLES = (
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "CURL_CA_BUNDLE",
    "NIX_SSL_CERT_FILE", "AWS_CA_BUNDLE", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy",
    "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy",
)  # fmt: skip
USER_HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in TRUST_AND_PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def proxy_bridge(start_bridge):
    return start_bridge(mode="regular")


@pytest.fixture
def stand_in(tmp_path):
    with TlsServer(tmp_path) as server:
        yield server


def hard_coded_app(bridge, monkeypatch) -> openai.OpenAI:
    """An app that never heard of the bridge: default base_url, only the proxy and the CA set around it."""
    monkeypatch.setenv("HTTPS_PROXY", bridge.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(bridge.ca_cert))
    return openai.OpenAI(api_key="sk-app-key", max_retries=0, _strict_response_validation=True)


def through_proxy(bridge, host: str, port: int, trust: ssl.SSLContext) -> http.client.HTTPSConnection:
    connection = http.client.HTTPSConnection("127.0.0.1", bridge.port, timeout=30, context=trust)
    connection.set_tunnel(host, port)
    return connection


def test_hard_coded_app_gets_claude_through_the_proxy(proxy_bridge, fake, monkeypatch):
    client = hard_coded_app(proxy_bridge, monkeypatch)
    assert str(client.base_url).startswith("https://api.openai.com")
    completion = client.chat.completions.create(model="gpt-4o", messages=USER_HI)
    assert completion.choices[0].message.content == "ECHO: hi"
    stream = client.chat.completions.create(model="gpt-4o", messages=USER_HI, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "ECHO: hi"
    assert len(fake.requests) == 2


def test_reverse_mode_port_also_speaks_tls(bridge, fake, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(bridge.ca_cert))
    client = openai.OpenAI(
        base_url=f"https://localhost:{bridge.port}/v1", api_key="x", max_retries=0, _strict_response_validation=True
    )
    stream = client.chat.completions.create(model="sonnet", messages=USER_HI, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "ECHO: hi"
    assert client.chat.completions.create(model="sonnet", messages=USER_HI).choices[0].message.content == "ECHO: hi"


def test_other_hosts_are_tunnelled_untouched(proxy_bridge, stand_in):
    trust_stand_in_only = ssl.create_default_context(cafile=stand_in.ca)
    connection = through_proxy(proxy_bridge, "localhost", stand_in.port, trust_stand_in_only)
    connection.request("GET", "/pinned", headers={"Authorization": "Bearer other-service"})
    assert json.loads(connection.getresponse().read()) == {"stand_in": True, "path": "/pinned"}
    assert connection.sock.getpeercert(binary_form=True) == stand_in.certificate_der, "no mitmproxy certificate"
    assert stand_in.received[0].headers["Authorization"] == "Bearer other-service"


@pytest.mark.parametrize("policy", ["error", "passthrough"])
def test_other_openai_endpoints_follow_the_policy(start_bridge, stand_in, fake, policy):
    # The stand-in plays api.openai.com: bridged, so decrypted with the bridge's CA; upstream it trusts the stand-in.
    bridge = start_bridge(
        "bridge_hosts=api.openai.com",
        "bridge_hosts=localhost",
        f"bridge_other_endpoints={policy}",
        f"ssl_verify_upstream_trusted_ca={stand_in.ca}",
        mode="regular",
    )
    trust_bridge = ssl.create_default_context(cafile=bridge.ca_cert)
    connection = through_proxy(bridge, "localhost", stand_in.port, trust_bridge)
    body = json.dumps({"model": "text-embedding-3-small", "input": "x"})
    connection.request("POST", "/v1/embeddings", body, {"Authorization": "Bearer sk-app-key"})
    response = connection.getresponse()
    answer = json.loads(response.read())
    if policy == "passthrough":
        assert (response.status, answer) == (200, {"stand_in": True, "path": "/v1/embeddings"})
        (received,) = stand_in.received
        assert received.headers["Authorization"] == "Bearer sk-app-key", "the app's own key goes to the real API"
    else:
        assert response.status == 404
        assert answer["error"]["code"] == "unknown_url"
        assert stand_in.received == [], "nothing leaves the machine"
    headers = {"Authorization": "Bearer sk-app-key", "Content-Type": "application/json"}
    connection.request("POST", "/v1/moderations", json.dumps({"input": "hi"}), headers)
    moderation = json.loads(connection.getresponse().read())
    if policy == "passthrough":
        assert moderation == {"stand_in": True, "path": "/v1/moderations"}
    else:
        assert moderation["results"][0]["flagged"] is False, "answered by the bridge"
    chat = json.dumps({"model": "sonnet", "messages": USER_HI})
    connection.request("POST", "/v1/chat/completions", chat, {"Content-Type": "application/json"})
    assert json.loads(connection.getresponse().read())["choices"][0]["message"]["content"] == "ECHO: hi"


def test_ca_is_made_in_certs_with_a_private_key_git_never_shows(start_bridge):
    certs = ROOT / "certs"
    start_bridge(confdir=certs)
    key = certs / "mitmproxy-ca.pem"
    assert (certs / "mitmproxy-ca-cert.pem").exists()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all", "certs"], cwd=ROOT, capture_output=True, text=True
    )
    assert status.returncode == 0 and status.stdout == ""


def test_several_modes_at_once(tmp_path, fake, claude_bin, monkeypatch):
    regular, reverse, wireguard = free_port(), free_port(), free_port()
    argv = [sys.executable, "-m", "claude_bridge", "--claude-bin", claude_bin, "--confdir", str(tmp_path / "certs")]
    argv += ["--mode", f"regular@{regular}", "--mode", f"reverse@{reverse}", "--mode", f"wireguard@{wireguard}"]
    as_proxy = Bridge(argv, bridge_env(tmp_path, fake.url), tmp_path / "bridge.log", regular, tmp_path / "certs", True)
    try:
        reverse_client = openai.OpenAI(base_url=f"http://127.0.0.1:{reverse}/v1", api_key="x", max_retries=0)
        assert reverse_client.chat.completions.create(model="sonnet", messages=USER_HI).choices[0].message.content
        app = hard_coded_app(as_proxy, monkeypatch)
        assert app.chat.completions.create(model="gpt-4o", messages=USER_HI).choices[0].message.content == "ECHO: hi"
        listening = f"WireGuard server listening at 127.0.0.1:{wireguard}"
        as_proxy.log_once(lambda log: listening in log, "the WireGuard server's start")
    finally:
        as_proxy.stop()


def test_local_mode_without_sudo_is_refused_at_start(tmp_path):
    """mitmproxy elevates its redirector through sudo even as root; without one it fails with "Failed to run sudo"."""
    started = subprocess.run(
        [sys.executable, "-m", "claude_bridge", "--mode", "local"],
        env={"PATH": str(tmp_path), "HOME": str(tmp_path)},
        capture_output=True,
        timeout=60,
    )
    assert started.returncode == 1
    assert "there is no sudo on PATH" in started.stderr.decode()


@pytest.mark.parametrize(
    ("mountinfo", "expected"),
    [
        ("35 24 0:30 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate", "cgroup2"),
        ("35 24 0:30 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755", "tmpfs"),
        (
            "35 24 0:30 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n36 35 0:31 / /sys/fs/cgroup/unified rw - cgroup2 c rw",
            "tmpfs",
        ),
        ("36 35 0:31 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n40 35 0:40 / /sys/fs/cgroup rw - cgroup2 c rw", "cgroup2"),
        ("22 1 0:21 / /proc rw - proc proc rw", None),
    ],
)
def test_the_cgroup_hierarchy_local_capture_attaches_to_is_read_from_mountinfo(tmp_path, mountinfo, expected):
    path = tmp_path / "mountinfo"
    path.write_text(mountinfo + "\n")
    assert redirector.mount_type("/sys/fs/cgroup", path) == expected
