"""Every option of the bridge, once: its name, type, default, help, choices and least value.

mitmproxy's own `options.py` is the model: one table that the addon's `load`, `--help`, doctor and the README's
table all read, so a default is written in one place. `validate` checks the values before `configure` acts on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mitmproxy import exceptions

from . import apps
from .budget import Budget
from .origins import DEFAULT_ORIGINS


@dataclass(frozen=True)
class Option:
    name: str
    typespec: Any
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    minimum: int | None = None


class Loader(Protocol):
    """What `load` needs of mitmproxy's loader (an `Options` object offers the same call)."""

    def add_option(
        self, name: str, typespec: Any, default: Any, help: str, choices: Sequence[str] | None = None
    ) -> None: ...


OPTIONS = (
    Option("bridge_hosts", Sequence[str], ["api.openai.com"], "Hosts whose OpenAI API the bridge answers."),
    Option(
        "bridge_model_map",
        Sequence[str],
        [],
        "Extra model-name mappings NAME=CLAUDE_MODEL over the built-in table; NAME may use * wildcards "
        "(the longest pattern wins; * alone catches every name), and a target of * passes the name through.",
    ),
    Option(
        "bridge_other_endpoints",
        str,
        "error",
        "Other OpenAI endpoints on a bridged host (embeddings, audio, images, files, ...): error answers them "
        "with an OpenAI-style 404 and nothing leaves the machine; passthrough sends them to the real API "
        "with the app's own key.",
        choices=("error", "passthrough"),
    ),
    Option(
        "bridge_max_body",
        int,
        32 * 1024 * 1024,
        "The largest request body (bytes) the bridge accepts; larger ones get 413 before they are read.",
    ),
    Option(
        "bridge_idle_timeout",
        int,
        60,
        "Seconds a client connection may carry no request (between two, or in reverse and regular mode before "
        "its first) before the bridge closes it, so idle clients cannot use up its file descriptors; tunnels "
        "passed through untouched are left to mitmproxy's tcp_timeout.",
        minimum=1,
    ),
    Option(
        "bridge_history",
        str,
        "resume",
        "How earlier turns reach Claude: resume (exact messages via a resumed CLI session) or flatten "
        "(earlier turns as labelled text in the new message).",
        choices=("resume", "flatten"),
    ),
    Option(
        "bridge_reasoning_content",
        bool,
        False,
        "Show Claude's thinking to clients as `reasoning_content` (deltas and message field); off, it stays out.",
    ),
    Option(
        "bridge_responses_kept",
        int,
        1000,
        "How many recent Responses API responses are kept in memory for previous_response_id and GET "
        "/v1/responses/{id} (the oldest go first; none survive a restart).",
        minimum=1,
    ),
    Option(
        "bridge_access_key",
        str,
        "",
        "A key clients must send as their API key (Authorization: Bearer KEY). Required when the proxy "
        "listens beyond loopback; with it, passthrough requests leave without their Authorization header.",
    ),
    Option(
        "bridge_app_keys",
        Sequence[str],
        [],
        "Named access keys APP=KEY, one per app: a request sending KEY as its API key is let in as "
        "bridge_access_key's are, and its spend is counted under APP (else under its User-Agent's product, "
        "such as OpenAI/Python or curl). Set, they are required as bridge_access_key is.",
    ),
    Option(
        "bridge_cors_origins",
        Sequence[str],
        list(DEFAULT_ORIGINS),
        "Web pages allowed to call the bridge from a browser (their Origin, * matching any port or name), "
        "with CORS answers so they can read what they get; every other page is refused (403) before the body "
        "is read. By default pages served from this machine's loopback addresses and desktop apps' own "
        "schemes (app://, file://, tauri://, vscode-webview://, vscode-file://).",
    ),
    Option(
        "bridge_allowed_hosts",
        Sequence[str],
        [],
        "Host names, besides localhost, loopback addresses and this machine's own name, that clients may put "
        "in the Host header of requests to the reverse port over loopback (any other is a web page's name "
        "resolving here, as in DNS rebinding: 403).",
    ),
    Option(
        "bridge_inspect_claude",
        bool,
        False,
        "Route the Claude Code CLI's own API calls through the bridge (a proxy listener of its own on loopback, the "
        "bridge's CA trusted by the CLI), so mitmweb shows each bridged request's Anthropic Messages calls beside "
        "it, linked both ways in their comments. The login they carry is on no flow: taken off before any addon "
        "sees a call and put back by a loopback relay of the bridge on its way out.",
    ),
    Option(
        "bridge_log_prompts",
        bool,
        False,
        "Log each bridged request's body (the prompts) for debugging. Keys are never logged.",
    ),
    Option(
        "bridge_log_format",
        str,
        "text",
        "The console log: text, or json (one JSON object per line; request lines carry their fields as keys).",
        choices=("text", "json"),
    ),
    Option(
        "bridge_ledger_days",
        int,
        400,
        "Days of history the spend ledger (CONFDIR/claude-bridge.sqlite: each request's app, tokens and cost) "
        "keeps; older requests are dropped at start and once a day.",
        minimum=1,
    ),
    Option(
        "bridge_budget_daily",
        Sequence[str],
        [],
        "Daily spend caps in USD: USD for all apps together, APP=USD for one app (apps as `claude-bridge usage` "
        "names them). Past a cap, new requests get 429 insufficient_quota until midnight (local time); runs "
        "already going finish.",
    ),
    Option(
        "bridge_budget_monthly",
        Sequence[str],
        [],
        "Monthly spend caps in USD, as bridge_budget_daily; they reset on the first of the month (local time).",
    ),
    Option(
        "bridge_refuse_overage",
        bool,
        True,
        "Refuse new requests (429 insufficient_quota) while the Claude plan reports its included usage spent and "
        "the account drawing on paid overage, until the plan's limit resets. Off, such requests run and are billed.",
    ),
    Option("claude_bin", str, "claude", "The Claude Code CLI to run."),
    Option(
        "claude_probe",
        bool,
        True,
        "Check a CLI version the bridge has not run before, at start: a few seconds against a loopback stand-in "
        "of the API (nothing billed), the verdict kept in CONFDIR/claude-compat.json. A broken capability falls "
        "back (history flattened, live sessions off) or refuses the requests that need it, saying why.",
    ),
    Option(
        "claude_pool_size",
        int,
        2,
        "Warm CLIs kept ready per request shape (model, system prompt, limits) seen lately; each serves one "
        "conversation, so its first request skips the CLI's start-up. 0 turns the pool off.",
        minimum=0,
    ),
    Option(
        "claude_live_sessions",
        int,
        4,
        "Finished conversations whose CLI is kept running, so their next request (a follow-up turn, or the "
        "tool results of an agent step) continues in it: reading the conversation from Anthropic's prompt "
        "cache and paying no start-up. Each holds 150-200 MB; the least recently used goes first. 0 turns "
        "live sessions off.",
        minimum=0,
    ),
    Option(
        "claude_live_idle",
        int,
        3600,
        "Seconds a live session waits for its conversation's next request (the CLI's prompt cache lasts an "
        "hour after its last use: later, a live session saves only the start-up).",
        minimum=1,
    ),
    Option(
        "claude_max_processes",
        int,
        16,
        "CLI processes alive at once: running, warm and live sessions together. A request that needs a new "
        "one past it ends the least recently used live session, else a warm CLI.",
    ),
    Option("claude_pool_shapes", int, 3, "How many request shapes are kept warm (the most recent)."),
    Option("claude_pool_idle", int, 600, "Seconds a warm CLI waits for a request before it is stopped."),
    Option("claude_max_runs", int, 8, "Claude requests run at once; more wait in the queue.", minimum=1),
    Option(
        "claude_max_queued", int, 32, "Requests that may wait for a run; past that the bridge answers 429.", minimum=0
    ),
    Option(
        "claude_max_retries",
        int,
        2,
        "How often the CLI retries a failed API call (429/5xx). Kept low: clients retry with their own backoff "
        "once they see the status, instead of waiting minutes on the CLI's default of 10.",
        minimum=0,
    ),
    Option(
        "claude_idle_timeout",
        int,
        120,
        "Seconds the CLI may print nothing before the run is stopped (504).",
        minimum=1,
    ),
    Option("claude_total_timeout", int, 900, "Seconds a run may take in all before it is stopped (504).", minimum=1),
    Option(
        "claude_allow_api_key",
        bool,
        False,
        "Pass ANTHROPIC_API_KEY to the CLI. Off by default: with it the CLI bills that key, not the subscription.",
    ),
)


def load(loader: Loader) -> None:
    for option in OPTIONS:
        loader.add_option(option.name, option.typespec, option.default, option.help, option.choices)


def validate(values: Any, updated: set[str]) -> None:
    """Raise mitmproxy's OptionsError for a value out of range (choices mitmproxy checks itself)."""
    for option in OPTIONS:
        if option.minimum is not None and option.name in updated and getattr(values, option.name) < option.minimum:
            raise exceptions.OptionsError(f"{option.name} must be at least {option.minimum}.")
    if values.claude_max_processes < values.claude_max_runs:
        raise exceptions.OptionsError("claude_max_processes must be at least claude_max_runs.")
    try:
        if "bridge_app_keys" in updated:
            apps.parse_app_keys(values.bridge_app_keys)
        if {"bridge_budget_daily", "bridge_budget_monthly"} & updated:
            Budget.from_options(values.bridge_budget_daily, values.bridge_budget_monthly, values.bridge_refuse_overage)
    except ValueError as e:
        raise exceptions.OptionsError(str(e)) from e
