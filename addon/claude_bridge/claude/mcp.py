"""The client's function tools, served to the CLI as an MCP server (JSON-RPC over HTTP on loopback).

The CLI only needs to list them: the bridge ends the run as soon as the model has asked for a call and hands
the call to the client. A `tools/call` that still arrives is answered with an error and executes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The CLI shows MCP tools to the model as `mcp__<server>__<tool>`.
SERVER_NAME = "app"
TOOL_PREFIX = f"mcp__{SERVER_NAME}__"
PROTOCOL_FALLBACK = "2025-06-18"


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    input_schema: dict[str, Any]


def served_name(name: str) -> str:
    return TOOL_PREFIX + name


def client_name(name: str) -> str:
    return name.removeprefix(TOOL_PREFIX)


def config(url: str) -> dict[str, Any]:
    """The `--mcp-config` JSON naming the server at `url`."""
    return {"mcpServers": {SERVER_NAME: {"type": "http", "url": url}}}


def answer(tools: tuple[ToolSpec, ...], message: Any) -> dict[str, Any] | None:
    """The JSON-RPC response to one message, or None for a notification (HTTP 202, no body)."""
    if not isinstance(message, dict) or "id" not in message:
        return None
    method, params = message.get("method"), message.get("params") or {}
    match method:
        case "initialize":
            result: dict[str, Any] = {
                "protocolVersion": params.get("protocolVersion", PROTOCOL_FALLBACK),
                "capabilities": {"tools": {"listChanged": False}},
                "serverInfo": {"name": "claude-bridge", "version": "1"},
            }
        case "tools/list":
            result = {
                "tools": [
                    {"name": tool.name, "description": tool.description, "inputSchema": tool.input_schema}
                    for tool in tools
                ]
            }
        case "tools/call":
            text = "The calling application runs this tool; claude-bridge has handed the call to it."
            result = {"content": [{"type": "text", "text": text}], "isError": True}
        case "ping":
            result = {}
        case _:
            return {"jsonrpc": "2.0", "id": message["id"], "error": {"code": -32601, "message": "Method not found"}}
    return {"jsonrpc": "2.0", "id": message["id"], "result": result}
