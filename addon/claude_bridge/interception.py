"""What interception needs from the machine: which hosts to decrypt, the CA to trust, proxy variables, mode checks."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from mitmproxy.proxy import mode_specs

from . import redirector

CA_CERT = "mitmproxy-ca-cert.pem"
CA_KEY = "mitmproxy-ca.pem"
SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def bridged_host_patterns(hosts: Iterable[str]) -> list[str]:
    """`allow_hosts` patterns (matched against host:port, without case) so that only the bridged hosts are decrypted.

    A name with the root's trailing dot is the same host: left out, its traffic would reach the real API encrypted.
    """
    return [rf"^{re.escape(host.rstrip('.'))}\.?:\d+$" for host in hosts]


def helper(name: str) -> Path:
    """A script from scripts/ (trust-ca, untrust-ca): its full path in a checkout, else as the README names it."""
    return SCRIPTS / name if (SCRIPTS / name).exists() else Path("scripts") / name


def ca_help(confdir: Path) -> str:
    cert, key = confdir / CA_CERT, confdir / CA_KEY
    state = "" if cert.exists() else "  (not generated yet: start `claude-bridge --mode regular` once)"
    return f"""\
CA certificate: {cert}{state}
CA private key: {key}  (mode 0600; never share or commit it)

Trust it system-wide (Debian/Ubuntu, Fedora/RHEL, macOS; asks for sudo) and set the variables in this shell:
  eval "$({helper("trust-ca")})"
(`--dry-run` only shows the commands and prints the variables), and undo with:
  eval "$({helper("untrust-ca")})"

Runtimes that ignore the system store need a variable in the app's environment:
  export NODE_EXTRA_CA_CERTS={cert}   # Node.js
  export SSL_CERT_FILE=<bundle>        # Python ssl, httpx, openai-python
  export REQUESTS_CA_BUNDLE=<bundle>   # requests
where <bundle> is the system bundle plus this CA: `trust-ca` writes one and prints these lines filled in.
Only the hosts the bridge answers (bridge_hosts, default api.openai.com) are decrypted; all else is tunnelled."""


def proxy_env(proxy_url: str) -> str:
    return f"""\
export HTTPS_PROXY={proxy_url}
export https_proxy={proxy_url}
export NO_PROXY=localhost,127.0.0.1,::1
export no_proxy=localhost,127.0.0.1,::1
# Node.js 24+ honours these only with:
export NODE_USE_ENV_PROXY=1"""


def mode_problems(specs: Sequence[str]) -> list[str]:
    """Why a mode cannot start on this machine, found before mitmproxy tries (and fails less clearly)."""
    problems = redirector.problems() if redirector.captures_locally(list(specs)) else []
    is_root = os.geteuid() == 0 if hasattr(os, "geteuid") else True
    for spec in specs:
        mode = mode_specs.ProxyMode.parse(spec)
        if isinstance(mode, mode_specs.LocalMode) and sys.platform == "linux" and not is_root:
            problems.append(
                f"{spec}: local capture on Linux loads an eBPF program and needs root (sudo) and a recent kernel; "
                "or use --mode regular with HTTPS_PROXY"
            )
        if isinstance(mode, mode_specs.TransparentMode) and sys.platform == "darwin" and not is_root:
            problems.append(f"{spec}: transparent mode on macOS reads pf's state and needs root (sudo)")
    return problems


def mode_notes(specs: Sequence[str]) -> list[str]:
    """What the user must do for each mode to receive traffic."""
    notes = []
    for spec in specs:
        mode = mode_specs.ProxyMode.parse(spec)
        if isinstance(mode, mode_specs.RegularMode):
            notes.append(
                f"{spec}: apps need HTTPS_PROXY (see `claude-bridge proxy-env`) and the CA (see `claude-bridge ca`)"
            )
        elif isinstance(mode, mode_specs.TransparentMode):
            notes.append(
                f"{spec}: redirect the apps' port 443 traffic here yourself (iptables/pf rules in the README) "
                "and trust the CA"
            )
        elif isinstance(mode, mode_specs.WireGuardMode):
            notes.append(f"{spec}: import the client configuration printed below into the WireGuard app; trust the CA")
        elif isinstance(mode, mode_specs.LocalMode):
            notes.append(f"{spec}: the captured apps must trust the CA (see `claude-bridge ca`)")
    return notes
