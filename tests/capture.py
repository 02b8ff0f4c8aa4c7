"""An app with api.openai.com hard-coded, captured by the bridge in network and mount namespaces of its own.

`tests/test_capture_modes.py` runs, as root: `unshare --net --mount --fork python tests/capture.py MODE [OPTION...]`.
Inside, nothing can leave: api.openai.com resolves (a bind-mounted /etc/hosts) to an address on `lo` where a stand-in
for the real API listens, on 443 and 80, recording whatever reaches it. The bridge runs with the pinned CLI and the
fake Anthropic API, and captures the app's traffic by MODE (transparent: iptables REDIRECT of the app's group;
local: the eBPF redirector, scoped to the app's cgroup; wireguard: a userspace WireGuard peer in a namespace of
its own). The app is the openai SDK with its default base_url, no proxy settings, trusting only the bridge's CA.
Prints one JSON object: what the app got, what the stand-in and the fake API received, the bridge's log.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fake_anthropic import FakeAnthropic, bridge_env  # noqa: E402
from tls_server import TlsServer  # noqa: E402

API_HOST = "api.openai.com"
API_ADDRESS = "192.0.2.10"  # TEST-NET-1, on lo: where the "real API" is
PROBE_ADDRESS = "192.0.2.11"  # on lo too, where nothing listens
APP_GROUP = 65534  # the captured app runs in this group (nogroup); the bridge and the CLI do not
BRIDGE_PORT = 8080
APP_KEY = "sk-app-key"  # the app's API key, and the bridge's access key (WireGuard listens beyond loopback)
PEER_NAMESPACE = "claude-bridge-peer"
WIREGUARD_HOST, PEER_HOST = "198.18.0.1", "198.18.0.2"  # the bridge's and the WireGuard device's LAN addresses
MODES = {
    "transparent": f"transparent@{BRIDGE_PORT}",
    "wireguard": f"wireguard@{WIREGUARD_HOST}:51820",
    "local": "local:python",  # the app's process name; the capture is scoped to its cgroup besides
}
USER_HI = [{"role": "user", "content": "hi"}]


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def isolate(folder: Path) -> None:
    """Mounts private to this namespace; lo up with the API's address; api.openai.com resolving to it."""
    run("mount", "--make-rprivate", "/")
    run("ip", "link", "set", "lo", "up")
    for address in (API_ADDRESS, PROBE_ADDRESS):
        run("ip", "addr", "add", f"{address}/32", "dev", "lo")
    hosts = folder / "hosts"
    # This machine's own name too: sudo (local mode's redirector) looks it up, and no DNS answers here.
    hosts.write_text(f"127.0.0.1 localhost {socket.gethostname()}\n{API_ADDRESS} {API_HOST}\n")
    run("mount", "--bind", str(hosts), "/etc/hosts")


@contextlib.contextmanager
def bridge(
    folder: Path, fake_url: str, mode: str, claude_bin: str, options: list[str], ctrl_c: bool
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """The bridge as a user starts it, once it is ready; stopped by SIGTERM, or with `ctrl_c` as Ctrl-C in a
    terminal stops it: SIGINT to its whole process group."""
    home = folder / "bridge-home"
    home.mkdir()
    log = home / "bridge.log"
    argv = [sys.executable, "-m", "claude_bridge", "--mode", mode, "--claude-bin", claude_bin]
    argv += ["--confdir", str(home / "certs"), "--set", "claude_pool_size=0"]
    for option in options:
        argv += ["--set", option]
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, env=bridge_env(home, fake_url), stdout=out, stderr=subprocess.STDOUT, process_group=0
        )
    try:
        deadline = time.monotonic() + 60
        while b" ready, answering with " not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the bridge did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield process, log
    finally:
        if process.poll() is None:
            if ctrl_c:
                os.killpg(process.pid, signal.SIGINT)
            else:
                process.terminate()
        process.wait(20)


def redirect_transparently(port: int) -> list[str]:
    """The README's recipe, matching the app's group instead of its user: the bridge's own traffic stays out."""
    run(
        "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-m", "multiport", "--dports", "80,443",
        "-m", "owner", "--gid-owner", str(APP_GROUP), "-j", "REDIRECT", "--to-ports", str(port),
    )  # fmt: skip
    return []


@contextlib.contextmanager
def wireguard_peer(folder: Path, bridge_log: Path) -> Iterator[list[str]]:
    """Another "device": a namespace behind a veth link, with a userspace WireGuard peer (this kernel may have none)
    configured from what the bridge printed, and only the API's address routed into the tunnel.
    Yields the prefix that runs a command there."""
    printed = bridge_log.read_text()
    config = printed[printed.index("[Interface]") : printed.index("\n", printed.index("Endpoint = "))]
    address = next(line.split("=", 1)[1].strip() for line in config.splitlines() if line.startswith("Address"))
    setconf = folder / "peer.conf"
    setconf.write_text("\n".join(line for line in config.splitlines() if not line.startswith(("Address", "DNS"))))
    peer = ["ip", "netns", "exec", PEER_NAMESPACE]
    tunnel = subprocess.Popen([*peer, "wireguard-go", "-f", "cbwg"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        socket = Path("/run/wireguard/cbwg.sock")
        deadline = time.monotonic() + 30
        while not socket.exists():
            if tunnel.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"wireguard-go did not start: {tunnel.stderr.read().decode() if tunnel.stderr else ''}"
                )
            time.sleep(0.05)
        run(*peer, "wg", "setconf", "cbwg", str(setconf))
        run("ip", "-n", PEER_NAMESPACE, "addr", "add", address, "dev", "cbwg")
        run("ip", "-n", PEER_NAMESPACE, "link", "set", "cbwg", "mtu", "1420", "up")
        for address in (API_ADDRESS, PROBE_ADDRESS):
            run("ip", "-n", PEER_NAMESPACE, "route", "add", f"{address}/32", "dev", "cbwg")
        yield peer
    finally:
        tunnel.terminate()
        tunnel.wait(10)


@contextlib.contextmanager
def capture_cgroup() -> Iterator[list[str]]:
    """Local capture's eBPF program attaches to whatever cgroup2 hierarchy is at /sys/fs/cgroup: here a new child
    cgroup, so only the app is captured (not the bridge, its CLIs, the fake API or anything else on the machine).
    Yields the prefix that runs a command in it; the child cgroup is removed after."""
    # Mounted outside the scene's folder, whose clean-up must never walk into the machine's cgroups.
    hierarchy = Path(tempfile.mkdtemp(prefix="claude-bridge-cgroup2-"))
    run("mount", "-t", "cgroup2", "cgroup2", str(hierarchy))
    child = hierarchy / f"claude-bridge-app-{os.getpid()}"
    child.mkdir()
    try:
        run("mount", "--bind", str(child), "/sys/fs/cgroup")
        yield ["sh", "-c", 'echo $$ > /sys/fs/cgroup/cgroup.procs && exec "$@"', "sh"]
    finally:
        subprocess.run(["umount", "/sys/fs/cgroup"], capture_output=True)
        child.rmdir()
        run("umount", str(hierarchy))
        hierarchy.rmdir()


def link_peer_namespace() -> None:
    """A second namespace joined by a veth pair, as another device on the LAN; /run private so nothing shows outside."""
    run("mount", "-t", "tmpfs", "claude-bridge-run", "/run")
    run("ip", "netns", "add", PEER_NAMESPACE)
    run("ip", "link", "add", "cbveth0", "type", "veth", "peer", "name", "cbveth1", "netns", PEER_NAMESPACE)
    run("ip", "addr", "add", f"{WIREGUARD_HOST}/24", "dev", "cbveth0")
    run("ip", "link", "set", "cbveth0", "up")
    run("ip", "-n", PEER_NAMESPACE, "addr", "add", f"{PEER_HOST}/24", "dev", "cbveth1")
    run("ip", "-n", PEER_NAMESPACE, "link", "set", "cbveth1", "up")
    run("ip", "-n", PEER_NAMESPACE, "link", "set", "lo", "up")


def run_app(ca: Path, folder: Path, prefix: list[str], in_group: bool) -> dict[str, object]:
    env = {"PATH": os.environ["PATH"], "HOME": str(folder), "SSL_CERT_FILE": str(ca), "PYTHONPATH": str(HERE)}
    app = subprocess.run(
        [*prefix, sys.executable, str(Path(__file__)), "app"],
        env=env,
        capture_output=True,
        timeout=180,
        group=APP_GROUP if in_group else None,
        extra_groups=[] if in_group else None,
    )
    if app.returncode != 0:
        raise RuntimeError(f"the app failed:\n{app.stderr.decode()}")
    answers: dict[str, object] = json.loads(app.stdout)
    return answers


def request(scheme: str, method: str, path: str, body: object = None, host: str = API_HOST) -> tuple[int, object]:
    """One request to api.openai.com by the standard library, `host` in its Host header; the status and JSON."""
    connection = (
        http.client.HTTPSConnection(API_HOST, context=ssl.create_default_context(), timeout=30)
        if scheme == "https"
        else http.client.HTTPConnection(API_HOST, timeout=30)
    )
    headers = {"Host": host, "Authorization": "Bearer sk-app-key", "Content-Type": "application/json"}
    try:
        connection.request(method, path, json.dumps(body) if body is not None else None, headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def outcome(step: Callable[[], object]) -> object:
    """What a step returned, or the error it raised: every step runs, so the stand-in sees all that leaks."""
    try:
        return step()
    except Exception as e:
        return f"{type(e).__name__}: {e}"


def wait_until_captured() -> None:
    """Local capture starts a moment after the bridge. Nothing listens on the probe's address: a connection there
    is refused until the capture takes it, so no request is sent (and counted as leaked) before."""
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection((PROBE_ADDRESS, 443), timeout=5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def app() -> None:
    """The hard-coded app: what it gets for each request, as JSON on stdout."""
    import openai

    wait_until_captured()
    health, _ = request("http", "GET", "/health")
    client = openai.OpenAI(api_key=APP_KEY, max_retries=0, _strict_response_validation=True)
    assert str(client.base_url) == f"https://{API_HOST}/v1/"
    plain = openai.OpenAI(base_url=f"http://{API_HOST}/v1", api_key=APP_KEY, max_retries=0)
    chat_body = {"model": "gpt-4o", "messages": USER_HI}
    answers = {
        "health": health,
        "chat": outcome(lambda: client.chat.completions.create(**chat_body).choices[0].message.content),
        "stream": outcome(
            lambda: "".join(
                chunk.choices[0].delta.content or ""
                for chunk in client.chat.completions.create(**chat_body, stream=True)
                if chunk.choices
            )
        ),
        "plain_http_chat": outcome(lambda: plain.chat.completions.create(**chat_body).choices[0].message.content),
        "embeddings": outcome(lambda: request("https", "POST", "/v1/embeddings", {"input": "x"})),
        "plain_http_embeddings": outcome(lambda: request("http", "POST", "/v1/embeddings", {"input": "x"})),
        "misdirected": outcome(
            lambda: request("https", "POST", "/v1/chat/completions", chat_body, host="elsewhere.example")
        ),
    }
    print(json.dumps(answers))


def scenario(mode: str, claude_bin: str, passthrough: bool, ctrl_c: bool, kill_redirector: bool) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="claude-bridge-capture-") as tmp, contextlib.ExitStack() as stack:
        folder = Path(tmp)
        os.chmod(folder, 0o755)
        isolate(folder)
        fake = stack.enter_context(FakeAnthropic())
        (folder / "https").mkdir()
        (folder / "http").mkdir()
        https = stack.enter_context(TlsServer(folder / "https", host=API_HOST, address=(API_ADDRESS, 443)))
        plain = stack.enter_context(TlsServer(folder / "http", host=API_HOST, address=(API_ADDRESS, 80), tls=False))
        options = [f"ssl_verify_upstream_trusted_ca={https.ca}", f"bridge_access_key={APP_KEY}"]
        options += ["bridge_other_endpoints=passthrough"] if passthrough else []
        if mode == "wireguard":
            link_peer_namespace()
        in_cgroup = stack.enter_context(capture_cgroup()) if mode == "local" else []
        process, log = stack.enter_context(bridge(folder, fake.url, MODES[mode], claude_bin, options, ctrl_c))
        ca = folder / "bridge-ca.pem"  # readable by the app, whatever its group
        ca.write_bytes((log.parent / "certs" / "mitmproxy-ca-cert.pem").read_bytes())
        if mode == "transparent":
            redirect_transparently(BRIDGE_PORT)
        in_peer = stack.enter_context(wireguard_peer(folder, log)) if mode == "wireguard" else []
        answers = run_app(ca, folder, in_cgroup + in_peer, in_group=mode == "transparent")
        if kill_redirector:  # local capture lost while the bridge runs: the bridge must stop and say so
            for pid in find_processes(b"mitmproxy-linux-redirector"):
                if not Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sudo"):
                    os.kill(pid, signal.SIGKILL)
            process.wait(30)
        stack.close()  # the bridge stops as a user stops it; what it leaves behind is reported
        return {
            "app": answers,
            "real_api_received": [f"{r.method} {r.path}" for r in https.received + plain.received],
            "fake_api_requests": len(fake.requests),
            "bridge_exit": process.returncode,
            "left_running": left_running(),
            "bridge_log": log.read_text(),
        }


def left_running() -> list[str]:
    """Processes in this network namespace besides this one and its parent (`unshare`)."""
    return [
        Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        for pid in find_processes(b"")
        if pid not in (os.getpid(), os.getppid())
    ]


def find_processes(in_command_line: bytes) -> list[int]:
    """Processes in this network namespace whose command line has `in_command_line`."""
    here, found = os.readlink("/proc/self/ns/net"), []
    for process in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if os.readlink(process / "ns/net") == here and in_command_line in (process / "cmdline").read_bytes():
                found.append(int(process.name))
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["app", "transparent", "wireguard", "local"])
    parser.add_argument("--passthrough", action="store_true")
    parser.add_argument("--ctrl-c", action="store_true", help="stop the bridge with SIGINT to its process group")
    parser.add_argument("--kill-redirector", action="store_true", help="kill local capture's redirector")
    parser.add_argument("--claude-bin", default=str(HERE.parent / "node_modules" / ".bin" / "claude"))
    args = parser.parse_args()
    if args.mode == "app":
        app()
    else:
        print(json.dumps(scenario(args.mode, args.claude_bin, args.passthrough, args.ctrl_c, args.kill_redirector)))


if __name__ == "__main__":
    main()
