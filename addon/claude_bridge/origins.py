"""Web pages: which may call the bridge, and the CORS answers that let those few read what they get.

A local server is within reach of every page the user opens. A page needs no preflight for a "simple" POST
(text/plain, a form), and with DNS rebinding (its own name resolving to 127.0.0.1) it reads the answers too. So,
as Ollama (after its DNS-rebinding CVE), Jupyter and similar local servers do, the bridge refuses before reading the
body: a request whose `Origin` is not allowed; on a connection that arrived over loopback in reverse mode, one whose
`Host` is not a loopback name, this machine's name or one the user allowed (a rebinding page sends its own name); and
a POST that is not JSON, which no page can send without a preflight the bridge answers only for allowed origins.

Allowed by default: pages served from this machine's loopback addresses (a program already on this machine can
reach the bridge without a browser) and the schemes desktop apps use for their own pages (Obsidian's app://,
Electron's file://, Tauri, VS Code webviews). `Origin: null` (sandboxed frames, data: URLs) is any page: refused.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from mitmproxy import http
from mitmproxy.net.http import url

from .openai.errors import OpenAIError

DEFAULT_ORIGINS = (
    *(f"{scheme}://{host}{port}" for scheme in ("http", "https") for host in ("localhost", "127.0.0.1", "[::1]")
      for port in ("", ":*")),
    "app://*",
    "file://*",
    "tauri://*",
    "vscode-webview://*",
    "vscode-file://*",
)  # fmt: skip
JSON = "application/json"


def origin_allowed(origin: str, patterns: Iterable[str]) -> bool:
    """Whether a page's `Origin` (scheme://host[:port], as browsers send it) matches one of `patterns` (* wildcards)."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return False
    if not parts.scheme or parts.path or parts.query or parts.fragment or "@" in parts.netloc:
        return False  # "null", or not an origin a browser would send
    host = f"[{parts.hostname}]" if parts.hostname and ":" in parts.hostname else parts.hostname or ""
    canonical = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    # Brackets are literal (IPv6 hosts), not fnmatch's character classes; * is the only wildcard.
    return any(fnmatch.fnmatchcase(canonical, re.sub(r"([\[\]?])", r"[\1]", pattern.lower())) for pattern in patterns)


def host_allowed(host_header: str, allowed: Iterable[str]) -> bool:
    """Whether a `Host` a client sent over loopback names this machine: a rebinding page sends its own name."""
    try:
        host, _ = url.parse_authority(host_header, check=True)
    except ValueError:
        return False
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost") or host == socket.gethostname().lower():
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host in {name.lower().rstrip(".") for name in allowed}


def arrived_over_loopback(flow: http.HTTPFlow) -> bool:
    sockname = flow.client_conn.sockname
    try:
        return bool(sockname) and ipaddress.ip_address(sockname[0]).is_loopback
    except ValueError:
        return False


def is_json(content_type: str | None) -> bool:
    return (content_type or "").split(";", 1)[0].strip().lower() == JSON


def is_preflight(request: http.Request) -> bool:
    return request.method == "OPTIONS" and "access-control-request-method" in request.headers


def preflight(request: http.Request, origin: str) -> http.Response:
    """The answer to an allowed page's preflight: any method the bridge serves, the headers it asked to send."""
    headers = {
        "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
        "Access-Control-Allow-Headers": request.headers.get("access-control-request-headers", ""),
        "Access-Control-Max-Age": "600",
    }
    if request.headers.get("access-control-request-private-network", "").lower() == "true":
        headers["Access-Control-Allow-Private-Network"] = "true"  # Chrome's Private Network Access
    response = http.Response.make(204, b"", headers)
    allow(response, origin)
    response.headers["Vary"] = "Origin, Access-Control-Request-Headers"
    return response


def allow(response: http.Response, origin: str) -> None:
    """Let an allowed page read this response (streamed ones included: set before the headers go out)."""
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Expose-Headers"] = "*"
    response.headers["Vary"] = "Origin"


def foreign_origin(origin: str) -> OpenAIError:
    return OpenAIError(
        403,
        f"claude-bridge does not answer web pages from {origin[:200]!r}: any page the user opens could otherwise "
        "spend the subscription. Allow a page you trust with --set bridge_cors_origins=ORIGIN.",
        code="origin_not_allowed",
    )


def foreign_host(host: str) -> OpenAIError:
    return OpenAIError(
        403,
        f"claude-bridge answers requests for this machine only, not for Host {host[:200]!r} (a web page's name "
        "resolving here, as DNS rebinding does). Use localhost, or allow the name: --set bridge_allowed_hosts=NAME.",
        code="host_not_allowed",
    )


def not_json(content_type: str | None) -> OpenAIError:
    return OpenAIError(
        415,
        f"claude-bridge takes JSON request bodies only (Content-Type: {JSON}), not {content_type or 'none'!r}.",
        code="unsupported_media_type",
    )
