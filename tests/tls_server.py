"""A loopback HTTPS server with a CA of its own (or one given): the stand-in for hosts the bridge must not decrypt,
for the real OpenAI API when other endpoints are passed through, and for a site signed by the bridge's CA."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


CA = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _valid_now(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return builder.not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))


def make_ca(common_name: str) -> CA:
    """A CA that strict verifiers (Python 3.13's VERIFY_X509_STRICT) accept: key identifiers included."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _valid_now(x509.CertificateBuilder())
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_leaf(ca: CA, host: str = "localhost") -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A server certificate for `host` and 127.0.0.1, issued by `ca`."""
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName(host), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        _valid_now(x509.CertificateBuilder())
        .subject_name(_name(host))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def server_context(folder: Path, host: str = "localhost") -> tuple[ssl.SSLContext, Path]:
    """A server context for `host` signed by a new CA, and the CA's certificate file, for its clients to trust."""
    ca = make_ca(f"{host} test CA")
    leaf, key = make_leaf(ca, host)
    ca_file, chain = folder / f"{host}-ca.pem", folder / f"{host}.pem"
    ca_file.write_bytes(cert_pem(ca[0]))
    chain.write_bytes(cert_pem(leaf) + key_pem(key))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain)
    return context, ca_file


class TlsServer:
    """Answers every request with JSON naming what it received, and records it.

    By default on a free loopback port as `localhost`; as the real API's stand-in, on that host's address and name
    (and, with `tls=False`, as its plain HTTP port).
    """

    def __init__(
        self,
        folder: Path,
        ca: CA | None = None,
        *,
        host: str = "localhost",
        address: tuple[str, int] = ("127.0.0.1", 0),
        tls: bool = True,
    ) -> None:
        ca = ca or make_ca("tls-server test CA")
        leaf, key = make_leaf(ca, host)
        self.ca = folder / "tls-server-ca.pem"
        self.ca.write_bytes(cert_pem(ca[0]))
        chain = folder / "tls-server-leaf.pem"
        chain.write_bytes(cert_pem(leaf) + key_pem(key))
        self.certificate_der = leaf.public_bytes(serialization.Encoding.DER)
        self.received: list[Received] = []
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(chain)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.received.append(Received(self.command, self.path, dict(self.headers), body))
                answer = json.dumps({"stand_in": True, "path": self.path}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self._httpd = ThreadingHTTPServer(address, Handler)
        self._httpd.daemon_threads = True
        if tls:
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> TlsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
