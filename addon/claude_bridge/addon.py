"""The mitmproxy addon: answers OpenAI API requests on the bridged hosts with the Claude Code CLI."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import io
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from mitmproxy import ctx, exceptions, http, log
from mitmproxy.proxy import mode_specs, server_hooks
from pydantic import BaseModel

from . import access, admission, backend, connections, destination, interception, origins, redact, redirector
from .banner import banner
from .body import request_body, too_large
from .claude import rundir
from .claude.invocation import ClaudeSettings
from .claude.runner import ClaudeRunner, Limits
from .destination import Claim
from .openai import sse
from .openai.chat import ChatCompletionCreateParams
from .openai.completions import CompletionCreateParams
from .openai.errors import OpenAIError
from .openai.models import Model, ModelList
from .openai.moderations import ModerationCreateParams
from .openai.responses import Response, ResponseCreateParams
from .requestlog import JsonFormatter, RequestLine
from .translate import legacy, responses
from .translate.chat import completion, completion_chunks
from .translate.model_map import ModelMap
from .translate.request import ChatJob, chat_job, parse_chat_request, parse_request
from .translate.turn import TurnReport

logger = logging.getLogger(__name__)

MODELS_CREATED = 1_700_000_000
FLUSH_GRACE = 2.0


class Origin(NamedTuple):
    scheme: str
    host: str
    port: int
    path: str
    host_header: str | None


@dataclass
class BridgedFlow:
    """A flow sent round through the backend: where the client really sent it, and what the run reported.

    A request refused from its headers alone has no model and no report: the backend only sends the refusal.
    """

    flow: http.HTTPFlow
    model: str | None
    report: TurnReport | None
    origin: Origin
    body: bytearray = field(default_factory=bytearray)

    @classmethod
    def divert(
        cls, flow: http.HTTPFlow, model: str | None, report: TurnReport | None, port: int, path: str
    ) -> BridgedFlow:
        """Point the request at the loopback backend; `restore` undoes it once the response starts."""
        request = flow.request
        origin = Origin(request.scheme, request.host, request.port, request.path, request.host_header)
        request.scheme, request.host, request.port, request.path = "http", "127.0.0.1", port, path
        return cls(flow, model, report, origin)

    def restore(self) -> None:
        """Show the flow under the URL the client asked for, not the backend's."""
        request = self.flow.request
        request.scheme, request.host, request.port, request.path, request.host_header = self.origin

    def tee(self, data: bytes) -> bytes:
        """Keeps a copy of the streamed body, and labels the flow once it ends (before `response` addons save it)."""
        if data:
            self.body += data
        elif self.flow.response is not None and self.report is not None:
            self.flow.response.content = bytes(self.body)
            self.flow.comment = self.report.summary()
            self.flow.marked = ":bridge_at_night:"
        return data


class ClaudeBridge:
    def __init__(self) -> None:
        self.backend = backend.Backend()
        self.listeners = connections.Listeners()
        self.addons = [self.listeners]  # mitmproxy calls a child addon's hooks too
        self.models = ModelMap.from_entries([])
        self.runner = ClaudeRunner()
        self.responses = responses.ResponseStore(capacity=1000)
        self.claude_version: str | None = None
        self._flows: dict[str, BridgedFlow] = {}
        self._running = False
        self._allow_hosts: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._redirector: redirector.Watch | None = None
        self._rewrites_host_header = False
        self._log_filter: redact.LogFilter | None = None
        self.failure: str | None = None
        """Why the bridge stopped itself (its launcher then exits 1)."""

    def load(self, loader: Any) -> None:
        loader.add_option(
            "bridge_hosts", Sequence[str], ["api.openai.com"], "Hosts whose OpenAI API the bridge answers."
        )
        loader.add_option(
            "bridge_model_map",
            Sequence[str],
            [],
            "Extra model-name mappings NAME=CLAUDE_MODEL over the built-in table; NAME may use * wildcards "
            "(the longest pattern wins; * alone catches every name), and a target of * passes the name through.",
        )
        loader.add_option(
            "bridge_other_endpoints",
            str,
            "error",
            "Other OpenAI endpoints on a bridged host (embeddings, audio, images, files, ...): error answers them "
            "with an OpenAI-style 404 and nothing leaves the machine; passthrough sends them to the real API "
            "with the app's own key.",
            choices=("error", "passthrough"),
        )
        loader.add_option(
            "bridge_max_body",
            int,
            32 * 1024 * 1024,
            "The largest request body (bytes) the bridge accepts; larger ones get 413 before they are read.",
        )
        loader.add_option(
            "bridge_idle_timeout",
            int,
            60,
            "Seconds a client connection may carry no request (between two, or in reverse and regular mode before "
            "its first) before the bridge closes it, so idle clients cannot use up its file descriptors; tunnels "
            "passed through untouched are left to mitmproxy's tcp_timeout.",
        )
        loader.add_option(
            "bridge_history",
            str,
            "resume",
            "How earlier turns reach Claude: resume (exact messages via a resumed CLI session) or flatten "
            "(earlier turns as labelled text in the new message).",
            choices=("resume", "flatten"),
        )
        loader.add_option(
            "bridge_reasoning_content",
            bool,
            False,
            "Show Claude's thinking to clients as `reasoning_content` (deltas and message field); off, it stays out.",
        )
        loader.add_option(
            "bridge_responses_kept",
            int,
            1000,
            "How many recent Responses API responses are kept in memory for previous_response_id and GET "
            "/v1/responses/{id} (the oldest go first; none survive a restart).",
        )
        loader.add_option(
            "bridge_access_key",
            str,
            "",
            "A key clients must send as their API key (Authorization: Bearer KEY). Required when the proxy "
            "listens beyond loopback; with it, passthrough requests leave without their Authorization header.",
        )
        loader.add_option(
            "bridge_cors_origins",
            Sequence[str],
            list(origins.DEFAULT_ORIGINS),
            "Web pages allowed to call the bridge from a browser (their Origin, * matching any port or name), "
            "with CORS answers so they can read what they get; every other page is refused (403) before the body "
            "is read. By default pages served from this machine's loopback addresses and desktop apps' own "
            "schemes (app://, file://, tauri://, vscode-webview://, vscode-file://).",
        )
        loader.add_option(
            "bridge_allowed_hosts",
            Sequence[str],
            [],
            "Host names, besides localhost, loopback addresses and this machine's own name, that clients may put "
            "in the Host header of requests to the reverse port over loopback (any other is a web page's name "
            "resolving here, as in DNS rebinding: 403).",
        )
        loader.add_option(
            "bridge_log_prompts",
            bool,
            False,
            "Log each bridged request's body (the prompts) for debugging. Keys are never logged.",
        )
        loader.add_option(
            "bridge_log_format",
            str,
            "text",
            "The console log: text, or json (one JSON object per line; request lines carry their fields as keys).",
            choices=("text", "json"),
        )
        loader.add_option("claude_bin", str, "claude", "The Claude Code CLI to run.")
        loader.add_option(
            "claude_pool_size",
            int,
            2,
            "Warm CLIs kept ready per request shape (model, system prompt, limits) seen lately; each serves one "
            "conversation, so its first request skips the CLI's start-up. 0 turns the pool off.",
        )
        loader.add_option(
            "claude_live_sessions",
            int,
            4,
            "Finished conversations whose CLI is kept running, so their next request (a follow-up turn, or the "
            "tool results of an agent step) continues in it: reading the conversation from Anthropic's prompt "
            "cache and paying no start-up. Each holds 150-200 MB; the least recently used goes first. 0 turns "
            "live sessions off.",
        )
        loader.add_option(
            "claude_live_idle",
            int,
            3600,
            "Seconds a live session waits for its conversation's next request (the CLI's prompt cache lasts an "
            "hour after its last use: later, a live session saves only the start-up).",
        )
        loader.add_option(
            "claude_max_processes",
            int,
            16,
            "CLI processes alive at once: running, warm and live sessions together. A request that needs a new "
            "one past it ends the least recently used live session, else a warm CLI.",
        )
        loader.add_option("claude_pool_shapes", int, 3, "How many request shapes are kept warm (the most recent).")
        loader.add_option("claude_pool_idle", int, 600, "Seconds a warm CLI waits for a request before it is stopped.")
        loader.add_option("claude_max_runs", int, 8, "Claude requests run at once; more wait in the queue.")
        loader.add_option(
            "claude_max_queued", int, 32, "Requests that may wait for a run; past that the bridge answers 429."
        )
        loader.add_option(
            "claude_max_retries",
            int,
            2,
            "How often the CLI retries a failed API call (429/5xx). Kept low: clients retry with their own backoff "
            "once they see the status, instead of waiting minutes on the CLI's default of 10.",
        )
        loader.add_option(
            "claude_idle_timeout", int, 120, "Seconds the CLI may print nothing before the run is stopped (504)."
        )
        loader.add_option("claude_total_timeout", int, 900, "Seconds a run may take in all before it is stopped (504).")
        loader.add_option(
            "claude_allow_api_key",
            bool,
            False,
            "Pass ANTHROPIC_API_KEY to the CLI. Off by default: with it the CLI bills that key, not the subscription.",
        )

    def configure(self, updated: set[str]) -> None:
        if {"connection_strategy", "keep_host_header"} <= set(ctx.options.keys()):
            self._own_the_connections()
        if "bridge_log_format" in updated:
            _set_log_format(ctx.options.bridge_log_format)
        if "bridge_hosts" in updated:
            self._decrypt_only_bridged_hosts()
        if "bridge_model_map" in updated:
            try:
                self.models = ModelMap.from_entries(ctx.options.bridge_model_map)
            except ValueError as e:
                raise exceptions.OptionsError(str(e)) from e
        for name in ("claude_idle_timeout", "claude_total_timeout"):
            if name in updated and getattr(ctx.options, name) <= 0:
                raise exceptions.OptionsError(f"{name} must be a positive number of seconds.")
        if "bridge_responses_kept" in updated:
            if ctx.options.bridge_responses_kept < 1:
                raise exceptions.OptionsError("bridge_responses_kept must be at least 1.")
            self.responses.capacity = ctx.options.bridge_responses_kept
        if "claude_max_retries" in updated and ctx.options.claude_max_retries < 0:
            raise exceptions.OptionsError("claude_max_retries must not be negative.")
        for name, least in (
            ("claude_max_runs", 1),
            ("claude_max_queued", 0),
            ("claude_pool_size", 0),
            ("claude_live_sessions", 0),
            ("claude_live_idle", 1),
            ("bridge_idle_timeout", 1),
        ):
            if name in updated and getattr(ctx.options, name) < least:
                raise exceptions.OptionsError(f"{name} must be at least {least}.")
        if ctx.options.claude_max_processes < ctx.options.claude_max_runs:
            raise exceptions.OptionsError("claude_max_processes must be at least claude_max_runs.")
        if any(name.startswith("claude_") for name in updated):
            self._configure_runs()
        if (
            "claude_allow_api_key" in updated
            and ctx.options.claude_allow_api_key
            and os.environ.get("ANTHROPIC_API_KEY")
        ):
            logger.warning("claude_allow_api_key is on: the CLI will bill ANTHROPIC_API_KEY, not your subscription.")
        if "claude_bin" in updated and self._running:
            self.claude_version = None
            self._background(self._probe_claude())
        listening = {"mode", "listen_host", "listen_port", "bridge_access_key"} & updated
        if listening and self._running and (problem := _exposure_problem()):
            raise exceptions.OptionsError(problem)

    def _own_the_connections(self) -> None:
        """Set at the first configure, before mitmproxy takes a connection (`running` comes after it listens)."""
        if ctx.options.connection_strategy != "lazy":
            # With `eager`, mitmproxy would dial the real api.openai.com before the bridge sees the request.
            ctx.options.update(connection_strategy="lazy")
        if not ctx.options.keep_host_header:
            # Reverse mode's Host is the client's only with this on; the bridge then sets the target's itself.
            self._rewrites_host_header = True
            ctx.options.update(keep_host_header=True)

    def _decrypt_only_bridged_hosts(self) -> None:
        """Tunnel every other host untouched (pinned certificates, the CLI's own traffic) unless the user chose."""
        patterns = interception.bridged_host_patterns(ctx.options.bridge_hosts)
        if ctx.options.ignore_hosts or ctx.options.allow_hosts not in ([], self._allow_hosts):
            logger.info("allow_hosts/ignore_hosts are set: the bridge leaves TLS interception to them.")
            return
        self._allow_hosts = patterns
        ctx.options.update(allow_hosts=patterns)

    def _configure_runs(self) -> None:
        """Settings and limits for the runs to come (warm processes and live sessions of the old ones go)."""
        options = ctx.options
        settings = ClaudeSettings(
            claude_bin=_resolve_bin(options.claude_bin),
            max_retries=options.claude_max_retries,
            idle_timeout=options.claude_idle_timeout,
            total_timeout=options.claude_total_timeout,
            allow_api_key=options.claude_allow_api_key,
        )
        limits = Limits(
            max_runs=options.claude_max_runs,
            max_queued=options.claude_max_queued,
            pool_size=options.claude_pool_size,
            pool_shapes=options.claude_pool_shapes,
            pool_idle=options.claude_pool_idle,
            live_sessions=options.claude_live_sessions,
            live_idle=options.claude_live_idle,
            max_processes=options.claude_max_processes,
        )
        self.runner.configure(settings, limits)

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def running(self) -> None:
        if problem := _exposure_problem():
            # An error logged while starting makes mitmproxy exit at once, before any request is taken.
            logger.error(problem)
            return
        self._log_filter = redact.install()
        _flush_each_line()
        if flow_file := getattr(ctx.options, "save_stream_file", None):  # an option of mitmproxy's save addon
            redact.keep_private(flow_file)
        rundir.remove_stale()
        if redirector.captures_locally(ctx.options.mode):
            self._redirector = redirector.Watch(self._capture_lost)
        await self.backend.start()
        await self._probe_claude()
        self._running = True
        for line in banner(ctx.options, self.runner.settings.claude_bin, self.claude_version):
            logger.info(line)
        if os.environ.get("ANTHROPIC_API_KEY") and not ctx.options.claude_allow_api_key:
            logger.info("ANTHROPIC_API_KEY is set but withheld from the CLI, which uses your subscription login.")

    def _capture_lost(self, words: str) -> None:
        self.failure = (
            f"local capture failed: mitmproxy's redirector exited ({words}), so no app's traffic reaches the bridge; "
            "the lines above say why (on hosts without a cgroup2 /sys/fs/cgroup its eBPF program cannot attach). "
            "Stopping."
        )
        logger.error(self.failure)
        ctx.master.shutdown()

    async def done(self) -> None:
        """Runs end with an error their clients see; mitmproxy gets a moment to pass those last bytes on."""
        if self._redirector is not None:
            # Left to mitmproxy, the redirector outlives it with its eBPF program attached for a while.
            await self._redirector.stop()
        await self.backend.stop()
        await self.runner.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FLUSH_GRACE
        while self._flows and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if self._log_filter is not None:
            redact.uninstall(self._log_filter)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        """Refuse a request that may not come in, or answer a page's preflight, before the body is read."""
        if flow.response or not flow.live:
            return
        admission.remember_client_host(flow, rewrite=self._rewrites_host_header)
        self._admit(flow)

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live or flow.id in self._flows or not self._admit(flow):
            return
        if len(flow.request.raw_content or b"") > ctx.options.bridge_max_body:  # sent chunked, without a length
            _refuse(flow, too_large(ctx.options.bridge_max_body))
            return
        try:
            self._route(flow)
        except OpenAIError as e:
            _refuse(flow, e)
        except Exception:
            # Fail closed: a flow left alone here would go to the real API with the app's key.
            logger.exception("claude-bridge failed on %s %s", flow.request.method, flow.request.path.split("?")[0])
            error = OpenAIError(500, "claude-bridge failed on this request; its log says why.", "server_error")
            _respond(flow, 500, error.response().model_dump())
            flow.comment = "claude-bridge: failed (see the log)"
        if flow.response is not None or flow.id in self._flows:  # answered by the bridge: the key goes nowhere
            redact.credentials(flow.request.headers)

    def _admit(self, flow: http.HTTPFlow) -> bool:
        """Whether a flow is a bridged request to route; refusals and preflights are answered here."""
        claim = destination.claim(flow, ctx.options.bridge_hosts)
        if claim is Claim.NOT_OURS:
            return False
        answer = admission.check(flow, claim)
        if answer is None:
            return True
        redact.credentials(flow.request.headers)
        if isinstance(answer, http.Response):
            flow.response = answer
            flow.comment = f"claude-bridge: preflight of {flow.request.headers.get('origin')} allowed"
        elif flow.request.raw_content is None:
            self._refuse_before_the_body(flow, answer)
        else:
            _refuse(flow, answer)
        return False

    def _refuse_before_the_body(self, flow: http.HTTPFlow, refusal: OpenAIError) -> None:
        """An answer set here would wait for the whole body (after a "100 Continue" asking for it); the backend
        sends it at once instead, while whatever body the client still sends is streamed away unread."""
        flow.comment = _refusal_comment(refusal)
        flow.request.headers.pop("expect", None)
        flow.request.stream = _discard_body
        path = self.backend.park(backend.Refusal(refusal))
        self._flows[flow.id] = BridgedFlow.divert(flow, None, None, self.backend.port, path)

    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        """Fail closed: nothing reaches a bridged host's server unless the user chose passthrough for other endpoints.

        The request hooks answer or refuse every bridged request; this catches whatever slips past them.
        """
        if ctx.options.bridge_other_endpoints == "passthrough":
            return
        address = data.server.address
        refused = destination.bridged_names_of_connection(data.client, address, ctx.options.bridge_hosts)
        if refused and not self.backend.serves(address):  # diverted flows keep the client's SNI
            data.server.error = f"claude-bridge: no connection to {', '.join(sorted(refused))} leaves this machine"
            logger.warning("Refused a connection to %s (a bridged host) that no request hook answered.", address)
        elif self._rewrites_host_header and isinstance(data.client.proxy_mode, mode_specs.ReverseMode):
            # What mitmproxy does without keep_host_header: the target's name, not the client's, as upstream SNI.
            data.server.sni = data.server.sni or data.client.proxy_mode.address[0]

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if not flow.live:
            return
        bridged = self._flows.get(flow.id)
        if bridged is None or flow.response is None:
            return
        bridged.restore()
        if bridged.report is None:  # a refusal: its `Connection: close` spares the client sending its body
            return
        # The backend closes each connection after its answer; the client's connection should stay reusable.
        flow.response.headers.pop("Connection", None)
        flow.response.stream = bridged.tee
        _let_page_read(flow)

    def response(self, flow: http.HTTPFlow) -> None:
        bridged = self._flows.pop(flow.id, None)
        if bridged is not None:
            self._undivert(bridged)  # another addon may have answered it before the backend did
        elif not flow.live or destination.claim(flow, ctx.options.bridge_hosts) is Claim.NOT_OURS:
            return
        else:
            _let_page_read(flow)  # answered in place; sent after this hook
        self._log_request(flow, bridged)

    def error(self, flow: http.HTTPFlow) -> None:
        bridged = self._flows.pop(flow.id, None)
        if bridged is None:
            self._unread(flow)
            return
        self._undivert(bridged)
        if bridged.report is not None:  # not a refusal, which keeps its comment
            if flow.response is not None:
                flow.response.content = bytes(bridged.body)  # what reached the client before the break
            if bridged.report.outcome == "running" and flow.error is not None:
                bridged.report.outcome = f"cut short: {flow.error.msg}"
            flow.comment = bridged.report.summary()
        self._log_request(flow, bridged)

    def _unread(self, flow: http.HTTPFlow) -> None:
        """A bridged request whose body mitmproxy could not read (broken chunked framing, a client gone mid-body).

        No 400 is possible: mitmproxy 12's HTTP/1 layer closes the client connection before it calls this hook
        (`Http1Server.read_body`), so the log and mitmweb are the only places left to say why there was no answer.
        """
        if flow.response or flow.error is None or flow.request.timestamp_end is not None:  # the body was read
            return
        if destination.claim(flow, ctx.options.bridge_hosts) is Claim.NOT_OURS:
            return
        closed = "its body could not be read, and mitmproxy closed without an answer"
        flow.comment = f"claude-bridge: {closed}: {flow.error.msg}"
        self._log_request(flow, None)

    def _log_request(self, flow: http.HTTPFlow, bridged: BridgedFlow | None) -> None:
        runner = self.runner
        line = RequestLine.of(
            flow,
            bridged.model if bridged else None,
            bridged.report if bridged else None,
            runs=runner.limiter.running,
            queued=runner.limiter.queued,
            warm=runner.pool.warm,
            live=len(runner.sessions),
        )
        logger.info(line.text(), extra={"request": line})

    def _undivert(self, bridged: BridgedFlow) -> None:
        """For a flow that ended before its response streamed: forget its job and show its real URL."""
        if bridged.flow.request.path.startswith(backend.JOB_PATH_PREFIX):
            self.backend.unpark(bridged.flow.request.path)
            bridged.restore()

    def _route(self, flow: http.HTTPFlow) -> None:
        method, path = flow.request.method, flow.request.path.split("?", 1)[0].rstrip("/")
        if path in ("/health", "/v1/health"):
            _allow(method, "GET")
            _respond(flow, 200 if self._running else 503, self._health())
        elif path == "/v1/models":
            _allow(method, "GET")
            listed = [
                Model(id=name, created=MODELS_CREATED, owned_by="anthropic") for name in self.models.listed_names()
            ]
            _respond(flow, 200, ModelList(data=listed).model_dump())
        elif path.startswith("/v1/models/"):
            _allow(method, "GET")
            name = path.removeprefix("/v1/models/")
            self.models.resolve(name)
            _respond(flow, 200, Model(id=name, created=MODELS_CREATED, owned_by="anthropic").model_dump())
        elif path == "/v1/chat/completions":
            _allow(method, "POST")
            self._bridge_chat(flow)
        elif path == "/v1/responses" and flow.request.headers.get("upgrade", "").lower() == "websocket":
            # Responses over WebSocket (Codex tries it first): 426 makes it use HTTP at once, not after retries.
            raise OpenAIError(
                426, "claude-bridge serves the Responses API over HTTP (SSE), not WebSocket.", code="upgrade_required"
            )
        elif path == "/v1/responses":
            _allow(method, "POST")
            self._bridge_responses(flow)
        elif path in ("/v1/completions", "/v1/moderations") and ctx.options.bridge_other_endpoints != "passthrough":
            _allow(method, "POST")
            if path == "/v1/moderations":
                _respond(
                    flow,
                    200,
                    legacy.not_flagged(parse_request(_body(flow), ModerationCreateParams)).model_dump(),
                )
                flow.comment = "claude-bridge: moderation answered (not flagged)"
            else:
                self._bridge_completions(flow)
        elif path == "/v1/responses/compact":
            # Never passed through: OpenAI's compaction item is opaque, encrypted for its own models.
            raise OpenAIError(
                404,
                "claude-bridge does not compact conversations (POST /v1/responses/compact): the compaction item is "
                "encrypted by OpenAI for its own models, and Claude can neither make nor read one. Send the whole "
                "conversation as input, or continue it with previous_response_id.",
                code="unsupported_endpoint",
            )
        elif path.startswith("/v1/responses/"):
            _allow(method, "GET")
            stored = self.responses.response(path.removeprefix("/v1/responses/"))
            _respond(flow, 200, stored.model_dump(mode="json"))
        elif ctx.options.bridge_other_endpoints == "passthrough":
            if ctx.options.bridge_access_key:
                flow.request.headers.pop("authorization", None)  # the bridge's key never leaves the machine
            flow.comment = "claude-bridge: passed through to the real API"
        else:
            raise OpenAIError(
                404,
                f"Invalid URL ({method} {path}): claude-bridge answers /v1/chat/completions, /v1/responses, "
                "/v1/completions, /v1/moderations, /v1/models and /health "
                "(set bridge_other_endpoints=passthrough to send other endpoints to the real API).",
                code="unknown_url",
            )

    def _chat_job(
        self, flow: http.HTTPFlow, request: ChatCompletionCreateParams, messages_field: str = "messages"
    ) -> ChatJob:
        """`messages_field` is what the client called the messages (`input`, `prompt`), for the errors' `param`."""
        try:
            job = chat_job(
                request, self.models, ctx.options.bridge_history, reasoning_content=ctx.options.bridge_reasoning_content
            )
            # A live session continues only for the key that began it (hashed: it is never kept or shown).
            key = flow.request.headers.get("authorization", "").encode("utf-8", "surrogateescape")
            return dataclasses.replace(job, caller=hashlib.sha256(key).hexdigest())
        except OpenAIError as e:
            if e.error.param and e.error.param.startswith("messages") and messages_field != "messages":
                e.error.param = messages_field  # its index would count the translated messages, not the client's
            raise

    def _bridge_responses(self, flow: http.HTTPFlow) -> None:
        request = parse_request(_body(flow), ResponseCreateParams)
        earlier = self.responses.conversation(request.previous_response_id) if request.previous_response_id else []
        chat, conversation = responses.chat_request(request, earlier, self.responses.item)
        job = self._chat_job(flow, chat, "input")

        def store(response: Response) -> None:
            if request.store is not False:
                self.responses.put(response, conversation + responses.output_messages(response))

        self._divert(
            flow,
            job,
            lambda report: responses.response_events(job, request, self.runner, report, store),
            lambda report: responses.response_object(job, request, self.runner, report, store),
            sse.RESPONSES,
        )

    def _bridge_completions(self, flow: http.HTTPFlow) -> None:
        job = self._chat_job(flow, legacy.chat_request(parse_request(_body(flow), CompletionCreateParams)), "prompt")
        self._divert(
            flow,
            job,
            lambda report: legacy.completion_stream(job, self.runner, report),
            lambda report: legacy.text_completion(job, self.runner, report),
            sse.CHAT_COMPLETIONS,
        )

    def _bridge_chat(self, flow: http.HTTPFlow) -> None:
        job = self._chat_job(flow, parse_chat_request(_body(flow)))
        self._divert(
            flow,
            job,
            lambda report: completion_chunks(job, self.runner, report),
            lambda report: completion(job, self.runner, report),
            sse.CHAT_COMPLETIONS,
        )

    def _divert(
        self,
        flow: http.HTTPFlow,
        job: ChatJob,
        stream: Callable[[TurnReport], AsyncGenerator[BaseModel]],
        answer: Callable[[TurnReport], Awaitable[BaseModel]],
        framing: sse.Format,
    ) -> None:
        """Park the job (streamed or one JSON answer) and send the flow to the backend to have it answered."""
        if ctx.options.bridge_log_prompts:
            prompt = _body(flow).decode(errors="replace")
            logger.info("prompt of %s %s: %s", flow.request.method, flow.request.path, prompt)
        report = TurnReport()
        parked: backend.Job = (
            backend.StreamJob(lambda: stream(report), framing)
            if job.stream
            else backend.JsonJob(lambda: answer(report))
        )
        path = self.backend.park(parked)
        self._flows[flow.id] = BridgedFlow.divert(flow, job.requested_model, report, self.backend.port, path)

    def _health(self) -> dict[str, Any]:
        return {
            "status": "ok" if self._running else "starting",
            "provider": "claude-code-cli",
            "claude": {"path": self.runner.settings.claude_bin, "version": self.claude_version},
            "runs_in_flight": self.runner.limiter.running,
            "runs_queued": self.runner.limiter.queued,
            "warm_clis": self.runner.pool.warm,
            "live_sessions": len(self.runner.sessions),
            "claude_processes": self.runner.processes,
            "timestamp": int(time.time()),
        }

    async def _probe_claude(self) -> None:
        """Reads the CLI's version off the event loop, for /health and the start-up log."""
        claude_bin = self.runner.settings.claude_bin
        try:
            proc = await asyncio.create_subprocess_exec(
                claude_bin,
                "--version",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
        except OSError as e:
            logger.warning(
                "Claude Code CLI not usable at %r (%s): requests will fail with 503.",
                claude_bin,
                e,
            )
            return
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), 30)
        except TimeoutError:
            logger.warning("`%s --version` did not answer in 30 s.", claude_bin)
            return
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        self.claude_version = out.decode().strip().split(" ")[0] or None
        logger.info("Claude Code CLI %s at %s", self.claude_version, claude_bin)


def _flush_each_line() -> None:
    """Log lines appear as they happen wherever they go: redirected to a file, Python would hold them in a buffer
    until exit (unless PYTHONUNBUFFERED is set, as the service does and a user's `> bridge.log` does not)."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(line_buffering=True)


def _resolve_bin(claude_bin: str) -> str:
    """An absolute path: runs start in their own empty directory, where a relative path means nothing."""
    found = shutil.which(claude_bin)
    return os.path.abspath(found) if found else claude_bin


def _set_log_format(name: str) -> None:
    """Give mitmproxy's console log handler (mitmdump's) the chosen format; mitmweb keeps its own event log."""
    termlog = ctx.master.addons.get("termlog")
    if termlog is None:
        return
    handler = termlog.logger
    handler.formatter = JsonFormatter() if name == "json" else log.MitmFormatter(handler.has_vt_codes)


def _exposure_problem() -> str | None:
    exposed = access.exposed_listen_addresses(ctx.options.mode, ctx.options.listen_host, ctx.options.listen_port)
    if not exposed or ctx.options.bridge_access_key:
        return None
    return (
        f"claude-bridge would listen beyond loopback ({', '.join(exposed)}) without an access key: anyone who can "
        "reach it could use your Claude subscription. Set one with --set bridge_access_key=KEY (clients send it "
        "as their API key), or listen on loopback (--listen-host 127.0.0.1)."
    )


def _let_page_read(flow: http.HTTPFlow) -> None:
    """CORS for an allowed page (admission refused any other before its request went further)."""
    origin = flow.request.headers.get("origin")
    if (
        origin
        and flow.response is not None
        and "access-control-allow-origin" not in flow.response.headers
        and origins.origin_allowed(origin, ctx.options.bridge_cors_origins)
    ):
        origins.allow(flow.response, origin)


def _discard_body(data: bytes) -> Iterable[bytes]:
    """The request stream of a refused flow: nothing goes on to the backend, nothing is kept."""
    return ()


def _body(flow: http.HTTPFlow) -> bytes:
    return request_body(flow.request, ctx.options.bridge_max_body)


def _allow(method: str, allowed: str) -> None:
    if method != allowed:
        raise OpenAIError(
            405,
            f"Method {method} is not allowed here; use {allowed}.",
            code="method_not_allowed",
            headers={"Allow": allowed},
        )


def _refuse(flow: http.HTTPFlow, error: OpenAIError) -> None:
    _respond(flow, error.status, error.response().model_dump(), error.headers)
    flow.comment = _refusal_comment(error)


def _refusal_comment(error: OpenAIError) -> str:
    return f"claude-bridge: refused with {error.status}: {error.error.message}"


def _respond(flow: http.HTTPFlow, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    flow.response = http.Response.make(
        status, json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})}
    )
