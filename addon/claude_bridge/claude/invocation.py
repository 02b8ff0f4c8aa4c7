"""What one CLI run is asked to do, and the bridge-wide settings it runs under."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Anthropic Messages API objects, as the CLI's stream-json input and transcripts carry them.
ContentBlockParam = dict[str, Any]


@dataclass(frozen=True)
class HistoryMessage:
    role: str  # "user" | "assistant"
    content: list[ContentBlockParam]


@dataclass(frozen=True)
class ToolSpec:
    """One of the client's functions, as the CLI lists it to the model."""

    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True)
class ClaudeInvocation:
    model: str
    prompt: list[ContentBlockParam]
    system_prompt: str | None = None
    history: tuple[HistoryMessage, ...] = ()
    # An assistant turn written on stdin before the prompt: the tool calls whose results the prompt carries
    # (a tool_result on stdin only counts when its tool_use came the same way).
    replay: HistoryMessage | None = None
    max_output_tokens: int | None = None
    tools: tuple[ToolSpec, ...] = ()
    json_schema: dict[str, Any] | None = None
    effort: str | None = None
    thinking: bool = True


@dataclass(frozen=True)
class ApiProxy:
    """Where the CLI's own API calls go when they are inspected: the bridge's proxy, trusted through its CA."""

    url: str
    ca_file: str


@dataclass(frozen=True)
class ClaudeSettings:
    """Bridge-wide: how each run goes."""

    claude_bin: str = "claude"
    max_retries: int = 2
    idle_timeout: float = 120.0
    total_timeout: float = 900.0
    interrupt_grace: float = 2.0
    allow_api_key: bool = False
    # The environment runs start from, as (name, value) pairs; None is the bridge's own. The compatibility probe's
    # CLI gets a temporary HOME and the loopback stand-in API instead, whatever the bridge's environment says.
    environment: tuple[tuple[str, str], ...] | None = None
    api_proxy: ApiProxy | None = None


# No tools, no user or project settings, no MCP servers, no slash commands, nothing saved: the CLI can only answer.
SAFE_FLAGS = (
    "-p",
    "--input-format", "stream-json",
    "--output-format", "stream-json",
    "--verbose",
    "--include-partial-messages",
    "--tools", "",
    "--setting-sources", "",
    "--strict-mcp-config",
    "--disable-slash-commands",
    "--no-session-persistence",
    # A resumed session must not replay a system prompt recorded earlier instead of this run's.
    "--system-prompt-snapshot", "off",
)  # fmt: skip

# API calls per user turn. Each step of an agent loop (the client's results answering held tool calls) is one more
# within the same turn, so a live session needs many; between steps nothing runs on its own (no built-in tools).
MAX_TURNS = 1000
# Structured output: the answer, and up to two more tries when it misses the schema.
MAX_TURNS_STRUCTURED = 3

# Claude 4.x models think with a budget of max_tokens - 1, at least 1024, which the API refuses when
# max_tokens is smaller: below this limit the run goes without thinking.
MIN_THINKING_BUDGET = 1024


def child_env(
    settings: ClaudeSettings, invocation: ClaudeInvocation, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The bridge's environment (or `base`, or the settings' own) minus what would change who pays or make the CLI
    refuse to run."""
    if base is None:
        base = os.environ if settings.environment is None else dict(settings.environment)
    env = {
        key: value
        for key, value in base.items()
        if not key.startswith("CLAUDECODE") and (settings.allow_api_key or key != "ANTHROPIC_API_KEY")
    }
    env["DISABLE_AUTOUPDATER"] = "1"
    env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] = "1"
    env["CLAUDE_CODE_MAX_RETRIES"] = str(settings.max_retries)
    if invocation.max_output_tokens:
        env["CLAUDE_CODE_MAX_OUTPUT_TOKENS"] = str(invocation.max_output_tokens)
    if not invocation.thinking or (invocation.max_output_tokens or MIN_THINKING_BUDGET + 1) <= MIN_THINKING_BUDGET:
        # 2.1.331 sends adaptive thinking whatever MAX_THINKING_TOKENS says (measured at the fake); this it honours.
        env["CLAUDE_CODE_DISABLE_THINKING"] = "1"
        env["MAX_THINKING_TOKENS"] = "0"  # what older CLIs read
    return env


# The header each CLI sends with its API calls when they are inspected, naming the process (see `proxy_env`).
TAG_HEADER = "x-claude-bridge-cli"
_PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy")


def proxy_env(proxy: ApiProxy, tag: str, env: Mapping[str, str], trusted: Path) -> dict[str, str]:
    """`env` with the CLI's API calls sent through the bridge's proxy, each carrying the process's `tag`, and the
    CAs in `trusted` (the bridge's among them) trusted.

    The API's base URL stays as it was: the CLI sees no custom endpoint and sends exactly what it would send
    uninspected (a custom ANTHROPIC_BASE_URL changes its betas and model checks). Both proxy variables, in both
    cases, because the CLI reads either; no NO_PROXY, which could send the calls past the proxy.
    """
    inspected = {key: value for key, value in env.items() if key.lower() != "no_proxy"}
    inspected.update(dict.fromkeys(_PROXY_VARIABLES, proxy.url))
    inspected["NODE_EXTRA_CA_CERTS"] = str(trusted)
    # The CLI adds these headers ("Name: Value" lines) to every API call; the bridge takes ours off before it leaves.
    own = env.get("ANTHROPIC_CUSTOM_HEADERS", "").strip()
    inspected["ANTHROPIC_CUSTOM_HEADERS"] = "\n".join(filter(None, (own, f"{TAG_HEADER}: {tag}")))
    return inspected
