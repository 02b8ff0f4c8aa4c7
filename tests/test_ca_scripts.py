"""scripts/trust-ca and scripts/untrust-ca against a fake system under CLAUDE_BRIDGE_TRUST_ROOT (never the real one)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tls_server import TlsServer, cert_pem, key_pem, make_ca

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
ANCHORS = {
    "debian": "usr/local/share/ca-certificates/claude-bridge-mitmproxy.crt",
    "fedora": "etc/pki/ca-trust/source/anchors/claude-bridge-mitmproxy.pem",
}
SYSTEM_BUNDLES = {
    "debian": "etc/ssl/certs/ca-certificates.crt",
    "fedora": "etc/pki/tls/certs/ca-bundle.crt",
    "macos": "etc/ssl/cert.pem",
}


@pytest.fixture(scope="module")
def bridge_ca():
    return make_ca("mitmproxy")


@pytest.fixture
def confdir(tmp_path, bridge_ca) -> Path:
    """A mitmproxy confdir: the public cert, and the key + cert file that must never be installed."""
    certs = tmp_path / "certs"
    certs.mkdir()
    cert, key = bridge_ca
    (certs / "mitmproxy-ca-cert.pem").write_bytes(cert_pem(cert))
    (certs / "mitmproxy-ca.pem").write_bytes(key_pem(key) + cert_pem(cert))
    return certs


@pytest.fixture
def system_ca():
    return make_ca("Some Public Root CA")[0]


def fake_system(root: Path, platform: str, system_ca: x509.Certificate) -> None:
    """The directories the platform's store already has, and a system bundle holding one CA."""
    bundle = root / SYSTEM_BUNDLES[platform]
    bundle.parent.mkdir(parents=True)
    bundle.write_bytes(cert_pem(system_ca))
    if platform in ANCHORS:
        (root / ANCHORS[platform]).parent.mkdir(parents=True)
    if platform == "debian":  # what update-ca-certificates rebuilds the bundle from
        (root / "usr/share/ca-certificates/public").mkdir(parents=True)
        (root / "usr/share/ca-certificates/public/root.crt").write_bytes(cert_pem(system_ca))
        (root / "etc/ca-certificates.conf").write_text("public/root.crt\n")


@pytest.fixture(params=["debian", "fedora"])
def linux(request, tmp_path, system_ca) -> tuple[str, Path]:
    fake_system(tmp_path / "root", request.param, system_ca)
    return request.param, tmp_path / "root"


@pytest.fixture
def macos(tmp_path, system_ca) -> Path:
    fake_system(tmp_path / "root", "macos", system_ca)
    return tmp_path / "root"


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without CA variables a test machine may preset."""
    preset = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS")
    return {k: v for k, v in os.environ.items() if k not in preset} | extra


def run(script: str, root: Path, platform: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCRIPTS / script, "--platform", platform, *map(str, args)],
        env=clean_env(CLAUDE_BRIDGE_TRUST_ROOT=str(root)), capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def exports(stdout: str) -> dict[str, str]:
    """The variables from trust-ca's stdout, which holds nothing else (it is meant for `eval`)."""
    words = [shlex.split(line) for line in stdout.splitlines()]
    assert all(len(w) == 2 and w[0] == "export" for w in words), stdout
    return dict(w[1].split("=", 1) for w in words)


def fingerprints(pem_file: str | Path) -> set[bytes]:
    return {c.fingerprint(hashes.SHA256()) for c in x509.load_pem_x509_certificates(Path(pem_file).read_bytes())}


def snapshot(root: Path) -> dict[str, bytes | str]:
    return {
        str(p.relative_to(root)): os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else "dir"
        for p in sorted(root.rglob("*"))
    }


def test_trust_installs_the_certificate_and_never_the_key(linux, confdir):
    platform, root = linux
    result = run("trust-ca", root, platform, "--cert", confdir / "mitmproxy-ca-cert.pem")
    assert result.returncode == 0, result.stderr
    assert (root / ANCHORS[platform]).read_bytes() == (confdir / "mitmproxy-ca-cert.pem").read_bytes()
    assert not any(b"PRIVATE KEY" in path.read_bytes() for path in root.rglob("*") if path.is_file())


def test_exports_name_the_ca_and_a_bundle_of_system_cas_plus_ours(linux, confdir, system_ca, bridge_ca):
    platform, root = linux
    result = run("trust-ca", root, platform, "--cert", confdir / "mitmproxy-ca-cert.pem")
    env = exports(result.stdout)
    assert env["NODE_EXTRA_CA_CERTS"] == str(confdir / "mitmproxy-ca-cert.pem")
    assert env["SSL_CERT_FILE"] == env["REQUESTS_CA_BUNDLE"] == str(confdir / "ca-bundle-with-claude-bridge.pem")
    ours, theirs = bridge_ca[0].fingerprint(hashes.SHA256()), system_ca.fingerprint(hashes.SHA256())
    assert {ours, theirs} <= fingerprints(env["SSL_CERT_FILE"])


def test_fedora_store_refresh_is_printed_not_run_under_a_trust_root(tmp_path, confdir, system_ca):
    fake_system(tmp_path / "root", "fedora", system_ca)
    result = run("trust-ca", tmp_path / "root", "fedora", "--cert", confdir / "mitmproxy-ca-cert.pem")
    assert "not run (CLAUDE_BRIDGE_TRUST_ROOT is set): update-ca-trust extract" in result.stderr


def test_debian_refresh_adds_our_ca_to_the_system_bundle_and_untrust_takes_it_out(tmp_path, confdir, bridge_ca):
    root, ours = tmp_path / "root", bridge_ca[0].fingerprint(hashes.SHA256())
    fake_system(root, "debian", make_ca("Some Public Root CA")[0])
    assert run("trust-ca", root, "debian", "--cert", confdir / "mitmproxy-ca-cert.pem").returncode == 0
    assert ours in fingerprints(root / SYSTEM_BUNDLES["debian"])
    assert (root / "etc/ssl/certs/claude-bridge-mitmproxy.pem").is_symlink()
    assert run("untrust-ca", root, "debian", "--cert", confdir / "mitmproxy-ca-cert.pem").returncode == 0
    assert ours not in fingerprints(root / SYSTEM_BUNDLES["debian"])
    assert not (root / "etc/ssl/certs/claude-bridge-mitmproxy.pem").is_symlink()


def test_untrust_removes_the_certificate_and_the_bundle(linux, confdir):
    platform, root = linux
    run("trust-ca", root, platform, "--cert", confdir / "mitmproxy-ca-cert.pem")
    result = run("untrust-ca", root, platform, "--cert", confdir / "mitmproxy-ca-cert.pem")
    assert result.returncode == 0, result.stderr
    assert not (root / ANCHORS[platform]).exists()
    assert not (confdir / "ca-bundle-with-claude-bridge.pem").exists()
    assert result.stdout == "unset SSL_CERT_FILE REQUESTS_CA_BUNDLE NODE_EXTRA_CA_CERTS\n"


def test_missing_cert_fails_and_says_how_to_generate_it(linux, tmp_path):
    platform, root = linux
    before = snapshot(root)
    result = run("trust-ca", root, platform, "--cert", tmp_path / "certs/mitmproxy-ca-cert.pem")
    assert result.returncode != 0
    assert "no CA certificate at" in result.stderr and "./scripts/bridge --mode regular" in result.stderr
    assert result.stdout == "" and snapshot(root) == before


def test_a_file_with_the_private_key_is_refused(linux, confdir):
    platform, root = linux
    result = run("trust-ca", root, platform, "--cert", confdir / "mitmproxy-ca.pem")
    assert result.returncode != 0 and "contains a private key" in result.stderr
    assert not (root / ANCHORS[platform]).exists()


def test_dry_run_changes_nothing_but_prints_every_command(linux, confdir):
    platform, root = linux
    before = snapshot(root)
    result = run("trust-ca", root, platform, "--dry-run", "--cert", confdir / "mitmproxy-ca-cert.pem")
    assert result.returncode == 0, result.stderr
    assert snapshot(root) == before
    assert f"would run: install -m 644 {confdir}/mitmproxy-ca-cert.pem {root}/{ANCHORS[platform]}" in result.stderr
    assert Path(exports(result.stdout)["SSL_CERT_FILE"]).is_file()  # the bundle is written, beside the cert


def test_untrust_dry_run_leaves_the_installed_certificate(linux, confdir):
    platform, root = linux
    run("trust-ca", root, platform, "--cert", confdir / "mitmproxy-ca-cert.pem")
    before = snapshot(root)
    result = run("untrust-ca", root, platform, "--dry-run", "--cert", confdir / "mitmproxy-ca-cert.pem")
    assert result.returncode == 0, result.stderr
    assert snapshot(root) == before and (confdir / "ca-bundle-with-claude-bridge.pem").exists()
    assert f"would run: rm -f {root}/{ANCHORS[platform]}" in result.stderr


def test_macos_dry_run_prints_the_keychain_commands_and_exports(macos, confdir, system_ca):
    before, cert = snapshot(macos), confdir / "mitmproxy-ca-cert.pem"
    result = run("trust-ca", macos, "macos", "--dry-run", "--cert", cert)
    assert result.returncode == 0, result.stderr
    keychain = macos / "Library/Keychains/System.keychain"
    assert f"would run: security add-trusted-cert -d -r trustRoot -k {keychain} {cert}" in result.stderr
    assert snapshot(macos) == before
    env = exports(result.stdout)
    assert env["NODE_EXTRA_CA_CERTS"] == str(cert)
    assert system_ca.fingerprint(hashes.SHA256()) in fingerprints(env["SSL_CERT_FILE"])
    result = run("untrust-ca", macos, "macos", "--dry-run", "--cert", cert)
    assert f"would run: security remove-trusted-cert -d {cert}" in result.stderr
    assert "would run: security delete-certificate -Z " in result.stderr


@pytest.fixture
def tls_server(tmp_path, bridge_ca):
    """https://127.0.0.1:PORT/ with a certificate issued by the bridge's CA, as the bridge presents one."""
    with TlsServer(tmp_path, bridge_ca) as server:
        yield f"https://127.0.0.1:{server.port}/"


CLIENTS = {
    "python": [sys.executable, "-c", "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read())"],
    "node": ["node", "-e", "require('https').get(process.argv[1], r => r.pipe(process.stdout))"],
}


@pytest.mark.parametrize("client", CLIENTS)
def test_exported_variables_make_clients_trust_the_bridge(client, tls_server, tmp_path, confdir, system_ca):
    fake_system(tmp_path / "root", "fedora", system_ca)
    env = exports(run("trust-ca", tmp_path / "root", "fedora", "--cert", confdir / "mitmproxy-ca-cert.pem").stdout)
    assert subprocess.run([*CLIENTS[client], tls_server], env=clean_env(), capture_output=True).returncode != 0
    result = subprocess.run([*CLIENTS[client], tls_server], env=clean_env(**env), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "stand_in" in result.stdout
