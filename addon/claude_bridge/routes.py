"""Which endpoint a request to a bridged host is, and the answers small enough to give in place.

Refusals of a path or method are raised as OpenAIError (404, 405, 426): the addon turns them into the answer.
"""

from __future__ import annotations

import enum
import json
import time
from dataclasses import dataclass
from typing import Any

from mitmproxy import http

from .claude.runner import ClaudeRunner
from .openai.errors import OpenAIError
from .openai.models import Model, ModelList
from .openai.moderations import ModerationCreateParams
from .translate import legacy
from .translate.model_map import ModelMap
from .translate.request import parse_request

MODELS_CREATED = 1_700_000_000


class Endpoint(enum.Enum):
    HEALTH = enum.auto()
    MODELS = enum.auto()
    MODEL = enum.auto()
    CHAT = enum.auto()
    RESPONSES = enum.auto()
    STORED_RESPONSE = enum.auto()
    COMPLETIONS = enum.auto()
    MODERATIONS = enum.auto()
    METRICS = enum.auto()
    PASSTHROUGH = enum.auto()
    """Another OpenAI endpoint, sent on to the real API (bridge_other_endpoints=passthrough)."""


@dataclass(frozen=True)
class Route:
    endpoint: Endpoint
    name: str = ""
    """The model of GET /v1/models/{name}, the id of GET /v1/responses/{id}."""


# Each bridged path with its method; the methods are also the 405's `Allow`.
PATHS = {
    "/health": (Endpoint.HEALTH, "GET"),
    "/v1/health": (Endpoint.HEALTH, "GET"),
    "/v1/models": (Endpoint.MODELS, "GET"),
    "/v1/chat/completions": (Endpoint.CHAT, "POST"),
    "/v1/responses": (Endpoint.RESPONSES, "POST"),
    "/v1/completions": (Endpoint.COMPLETIONS, "POST"),
    "/v1/moderations": (Endpoint.MODERATIONS, "POST"),
    "/metrics": (Endpoint.METRICS, "GET"),
}
PREFIXES = {"/v1/models/": (Endpoint.MODEL, "GET"), "/v1/responses/": (Endpoint.STORED_RESPONSE, "GET")}
PASSED_ON_WITH_THE_REST = {Endpoint.COMPLETIONS, Endpoint.MODERATIONS}


def route(request: http.Request, passthrough: bool) -> Route:
    """The endpoint of `request`; `passthrough` sends unknown ones (and legacy completions, moderations) on."""
    method, path = request.method, request.path.split("?", 1)[0].rstrip("/")
    if path == "/v1/responses" and request.headers.get("upgrade", "").lower() == "websocket":
        # Responses over WebSocket (Codex tries it first): 426 makes it use HTTP at once, not after retries.
        raise OpenAIError(
            426, "claude-bridge serves the Responses API over HTTP (SSE), not WebSocket.", code="upgrade_required"
        )
    if path == "/v1/responses/compact":
        # Never passed through: OpenAI's compaction item is opaque, encrypted for its own models.
        raise OpenAIError(
            404,
            "claude-bridge does not compact conversations (POST /v1/responses/compact): the compaction item is "
            "encrypted by OpenAI for its own models, and Claude can neither make nor read one. Send the whole "
            "conversation as input, or continue it with previous_response_id.",
            code="unsupported_endpoint",
        )
    found = _endpoint(path)
    if found is None or (passthrough and found[0][0] in PASSED_ON_WITH_THE_REST):
        if passthrough:
            return Route(Endpoint.PASSTHROUGH)
        raise OpenAIError(
            404,
            f"Invalid URL ({method} {path}): claude-bridge answers /v1/chat/completions, /v1/responses, "
            "/v1/completions, /v1/moderations, /v1/models, /health and /metrics "
            "(set bridge_other_endpoints=passthrough to send other endpoints to the real API).",
            code="unknown_url",
        )
    (endpoint, allowed), name = found
    if method != allowed:
        raise OpenAIError(
            405,
            f"Method {method} is not allowed here; use {allowed}.",
            code="method_not_allowed",
            headers={"Allow": allowed},
        )
    return Route(endpoint, name)


def reads_json(request: http.Request, passthrough: bool) -> bool:
    """Whether the bridge reads this request's body as JSON itself (so it must be JSON: 415 otherwise)."""
    found = _endpoint(request.path.split("?", 1)[0].rstrip("/"))
    if request.method != "POST" or found is None:
        return False
    endpoint = found[0][0]
    return endpoint in (Endpoint.CHAT, Endpoint.RESPONSES) or (endpoint in PASSED_ON_WITH_THE_REST and not passthrough)


def label(request: http.Request) -> str:
    """The endpoint as a metrics label: its path, ids left out; one label for every path the bridge does not know
    (a label per path would let any client grow the metrics without end)."""
    path = request.path.split("?", 1)[0].rstrip("/")
    if path in PATHS:
        return path
    prefix = next((prefix for prefix in PREFIXES if path.startswith(prefix)), None)
    return prefix + "{id}" if prefix else "other"


def _endpoint(path: str) -> tuple[tuple[Endpoint, str], str] | None:
    if path in PATHS:
        return PATHS[path], ""
    for prefix, endpoint in PREFIXES.items():
        if path.startswith(prefix):
            return endpoint, path.removeprefix(prefix)
    return None


def models(names: ModelMap) -> dict[str, Any]:
    listed = [Model(id=name, created=MODELS_CREATED, owned_by="anthropic") for name in names.listed_names()]
    return ModelList(data=listed).model_dump()


def model(names: ModelMap, name: str) -> dict[str, Any]:
    names.resolve(name)  # 404 model_not_found for a name no mapping takes
    return Model(id=name, created=MODELS_CREATED, owned_by="anthropic").model_dump()


def moderation(body: bytes) -> dict[str, Any]:
    """Every input not flagged: apps that moderate before they ask (as some chat front-ends do) go on working."""
    return legacy.not_flagged(parse_request(body, ModerationCreateParams)).model_dump()


def health(running: bool, runner: ClaudeRunner, claude_version: str | None, plan_limits: Any) -> dict[str, Any]:
    """The npm proxy's /health fields (status, provider, timestamp) and what the bridge is doing."""
    return {
        "status": "ok" if running else "starting",
        "provider": "claude-code-cli",
        "claude": {"path": runner.settings.claude_bin, "version": claude_version},
        "runs_in_flight": runner.limiter.running,
        "runs_queued": runner.limiter.queued,
        "warm_clis": runner.pool.warm,
        "live_sessions": len(runner.sessions),
        "claude_processes": runner.processes,
        "plan_limits": plan_limits,
        "timestamp": int(time.time()),
    }


def refuse(flow: http.HTTPFlow, error: OpenAIError) -> None:
    """Answer the flow in place with the error, and say so in its comment."""
    respond(flow, error.status, error.response().model_dump(), error.headers)
    flow.comment = refusal_comment(error)


def refusal_comment(error: OpenAIError) -> str:
    return f"claude-bridge: refused with {error.status}: {error.error.message}"


def respond(flow: http.HTTPFlow, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    flow.response = http.Response.make(
        status, json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})}
    )
