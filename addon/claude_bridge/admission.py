"""Who gets in: the checks on a bridged request's headers, made before its body is read.

In order: names that disagree (misdirected), a web page's origin, a rebinding page's Host, a page's preflight (answered
here, before the access key it cannot carry), the access key or an app's named key, the announced size, and JSON for
the bridge's own endpoints. Each refusal is an OpenAI error; the flow is then answered in place and goes nowhere.
"""

from __future__ import annotations

from mitmproxy import ctx, http
from mitmproxy.net.http import url
from mitmproxy.proxy import mode_specs

from . import access, apps, destination, origins, redact, routes
from .body import too_large
from .destination import Claim
from .divert import Diversions
from .openai.errors import OpenAIError

CLIENT_HOST = "claude-bridge-client-host"


def remember_client_host(flow: http.HTTPFlow, rewrite: bool) -> None:
    """Keep the Host a reverse-mode client sent; with `rewrite`, then set the target's, as mitmproxy would have.

    mitmproxy rewrites it before any addon looks, unless keep_host_header is on: the bridge turns that on (at its
    first configure) to see it, and rewrites it itself, unless the user had chosen to keep it.
    """
    mode = flow.client_conn.proxy_mode
    if isinstance(mode, mode_specs.ReverseMode) and CLIENT_HOST not in flow.metadata:
        flow.metadata[CLIENT_HOST] = flow.request.host_header
        if rewrite:
            scheme = "https" if mode.scheme in ("https", "http3", "tls", "quic", "dtls") else "http"
            flow.request.host_header = url.hostport(scheme, *mode.address)


def admit(flow: http.HTTPFlow, diversions: Diversions) -> bool:
    """Whether a flow is a bridged request to route; refusals and preflights are answered here (a refusal before
    its body, through the backend, when the body is still to come)."""
    claim = destination.claim(flow, ctx.options.bridge_hosts)
    if claim is Claim.NOT_OURS:
        return False
    answer = check(flow, claim)
    if answer is None:
        return True
    redact.credentials(flow.request.headers)
    if isinstance(answer, http.Response):
        flow.response = answer
        flow.comment = f"claude-bridge: preflight of {flow.request.headers.get('origin')} allowed"
    elif flow.request.raw_content is None:
        flow.comment = routes.refusal_comment(answer)
        diversions.refuse_before_the_body(flow, answer)
    else:
        routes.refuse(flow, answer)
    return False


def check(flow: http.HTTPFlow, claim: Claim) -> OpenAIError | http.Response | None:
    """A refusal, an allowed page's preflight answer, or None for a request the bridge goes on to route."""
    refusal = _refusal_of_caller(flow, claim)
    origin = flow.request.headers.get("origin")
    if refusal is None and origin is not None and origins.is_preflight(flow.request):
        return origins.preflight(flow.request, origin)
    return refusal or _refusal_of_request(flow)


def _refusal_of_caller(flow: http.HTTPFlow, claim: Claim) -> OpenAIError | None:
    if claim is Claim.MISDIRECTED:
        return destination.misdirected(flow, ctx.options.bridge_hosts)
    origin = flow.request.headers.get("origin")
    if origin is not None and not origins.origin_allowed(origin, ctx.options.bridge_cors_origins):
        return origins.foreign_origin(origin)
    host = flow.metadata.get(CLIENT_HOST)
    # A bridged host's name is no page's own: a client may send it (curl --resolve, a hosts file entry).
    allowed_hosts = [*ctx.options.bridge_allowed_hosts, *ctx.options.bridge_hosts]
    if host and origins.arrived_over_loopback(flow) and not origins.host_allowed(host, allowed_hosts):
        return origins.foreign_host(host)
    return None


def _refusal_of_request(flow: http.HTTPFlow) -> OpenAIError | None:
    request = flow.request
    app_keys = apps.parse_app_keys(ctx.options.bridge_app_keys)
    if not access.admitted(request.headers.get("authorization"), ctx.options.bridge_access_key, app_keys):
        return access.unauthorized()
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > ctx.options.bridge_max_body:
        return too_large(ctx.options.bridge_max_body)
    content_type = request.headers.get("content-type")
    passthrough = ctx.options.bridge_other_endpoints == "passthrough"
    if routes.reads_json(request, passthrough) and not origins.is_json(content_type):
        return origins.not_json(content_type)
    return None
