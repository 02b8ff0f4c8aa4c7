"""What interception needs from the machine: which hosts to decrypt, the CA to trust, proxy variables, mode checks."""

from __future__ import annotations

import os
import re
import shlex
import stat
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


def trust_command(cert: Path, script: str = "trust-ca") -> str:
    """The line that runs scripts/trust-ca (or untrust-ca) for `cert`, naming it unless it is the script's default."""
    command = str(helper(script))
    if cert != SCRIPTS.parent / "certs" / CA_CERT:
        command += f" --cert {shlex.quote(str(cert))}"
    return f'eval "$({command})"'


def key_mode(key: Path) -> tuple[str, str | None]:
    """What `ls -l` would say of the CA's key in words, and a warning when others can read it."""
    try:
        mode = stat.S_IMODE(key.stat().st_mode)
    except FileNotFoundError:
        return "not generated yet", None
    except OSError as e:
        return f"its mode cannot be read: {e.strerror}", None
    if not mode & 0o077:
        return f"mode {mode:04o}, yours alone; never share or commit it", None
    warning = (
        f"other users of this machine can read the CA's private key (mode {mode:04o}), and with it pose as any "
        f"site to apps that trust the CA: chmod 600 {shlex.quote(str(key))}"
    )
    return f"mode {mode:04o}: readable by others", warning


def ca_help(confdir: Path) -> str:
    cert, key = confdir / CA_CERT, confdir / CA_KEY
    state = "" if cert.exists() else "  (not generated yet: start `claude-bridge --mode regular` once)"
    key_state, warning = key_mode(key)
    warned = f"WARNING: {warning}\n" if warning else ""
    return f"""\
CA certificate: {cert}{state}
CA private key: {key}  ({key_state})
{warned}
Trust it system-wide (Debian/Ubuntu, Fedora/RHEL, macOS; asks for sudo) and set the variables in this shell:
  {trust_command(cert)}
(`--dry-run` only shows the commands and prints the variables), and undo with:
  {trust_command(cert, "untrust-ca")}

Runtimes that ignore the system store need a variable in the app's environment:
  export NODE_EXTRA_CA_CERTS={shlex.quote(str(cert))}   # Node.js
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
