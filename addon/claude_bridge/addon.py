"""The mitmproxy addon: answers OpenAI API requests on the bridged hosts with the Claude Code CLI.

Each request hook: guard (a live flow on a bridged host, let in by admission) -> route -> answer in place, or divert
to the backend, which streams the CLI's answer back.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions, http, log

from . import access, admission, apps, connections, destination, options, origins, redact, redirector, routes
from .anthropic_leg import AnthropicLeg
from .background import Background
from .banner import banner
from .body import request_body, too_large
from .claude import rundir
from .claude.invocation import ApiProxy, ClaudeSettings
from .claude.runner import ClaudeRunner, Limits
from .clicheck import CliCheck
from .destination import Claim
from .divert import BridgedFlow, Diversions
from .jobs import Bridged, Jobs
from .ledger import LedgerError
from .openai.errors import OpenAIError
from .requestlog import JsonFormatter, RequestLine
from .routes import Endpoint
from .spending import Spending, overage_warning
from .translate.model_map import ModelMap
from .translate.responses import ResponseStore
from .upstream import Upstream
from .views import ContentViews

logger = logging.getLogger(__name__)


class ClaudeBridge:
    def __init__(self) -> None:
        self.diversions = Diversions()
        self.listeners = connections.Listeners()
        self.upstream = Upstream(self.diversions.backend.serves)
        self.runner = ClaudeRunner()
        self.spending = Spending(self.runner)
        self.leg = AnthropicLeg(self.runner, self._configure_runner)
        # mitmproxy calls a child addon's hooks too, after the parent's.
        self.addons = [self.listeners, self.upstream, ContentViews(), self.leg]
        self.jobs = Jobs(ModelMap.from_entries([]), self.runner, ResponseStore(capacity=1000))
        self.cli = CliCheck()
        self._running = False
        self._background = Background()
        self._redirector: redirector.Watch | None = None
        self._log_filter: redact.LogFilter | None = None
        self.failure: str | None = None
        """Why the bridge stopped itself (its launcher then exits 1)."""

    def load(self, loader: Any) -> None:
        options.load(loader)

    def configure(self, updated: set[str]) -> None:
        options.validate(ctx.options, updated)
        self.jobs.configure(ctx.options, updated)
        listening = {"mode", "listen_host", "listen_port", "bridge_access_key", "bridge_app_keys"} & updated
        if listening and self._running and (problem := _exposure_problem()):
            raise exceptions.OptionsError(problem)
        if "bridge_log_format" in updated:
            _set_log_format(ctx.options.bridge_log_format)
        self.spending.configure(ctx.options)
        if any(name.startswith("claude_") for name in updated):
            self._configure_runner()
        if "claude_allow_api_key" in updated:
            _warn_of_billing_by_key()
        if "claude_bin" in updated and self._running:
            self._background.start(self._check_cli())

    def _configure_runner(self) -> None:
        self.runner.configure(*_run_settings(ctx.options, self.leg.proxy))

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
            self._redirector = redirector.Watch(self._stop)
        try:
            self.spending.open(_confdir(), ctx.options.bridge_ledger_days)
        except LedgerError as e:
            # Without its ledger the bridge would neither count spend nor keep budgets: it does not start.
            self._stop(f"claude-bridge cannot use its spend ledger: {e}")
            return
        await self.diversions.backend.start()
        await self.cli.read_version(self.runner.settings.claude_bin)
        self._running = True
        plan = self.spending.plan_limits
        for line in banner(ctx.options, self.runner.settings.claude_bin, self.cli.version, plan):
            logger.info(line)
        if plan is not None and plan.using_overage:
            logger.warning(overage_warning(ctx.options.bridge_refuse_overage))
        if ctx.options.claude_probe:
            self._background.start(self._check_cli(version_known=True))

    def _stop(self, failure: str) -> None:
        self.failure = failure
        logger.error(failure)
        ctx.master.shutdown()

    async def done(self) -> None:
        if self._redirector is not None:
            # Left to mitmproxy, the redirector outlives it with its eBPF program attached for a while.
            await self._redirector.stop()
        await self._background.cancel()  # a compatibility check still going stops its CLIs as it ends
        await self.diversions.backend.stop()
        await self.runner.close()
        await self.diversions.drain()
        self.spending.close()
        if self._log_filter is not None:
            redact.uninstall(self._log_filter)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        """Refuse a request that may not come in, or answer a page's preflight, before the body is read."""
        if not flow.live or flow.response:
            return
        admission.remember_client_host(flow, rewrite=self.upstream.rewrites_host_header)
        admission.admit(flow, self.diversions)

    def request(self, flow: http.HTTPFlow) -> None:
        if not flow.live or flow.response or flow.error or flow in self.diversions:
            return
        if not admission.admit(flow, self.diversions):
            return
        if len(flow.request.raw_content or b"") > ctx.options.bridge_max_body:  # sent chunked, without a length
            routes.refuse(flow, too_large(ctx.options.bridge_max_body))
            return
        try:
            self._answer(flow, routes.route(flow.request, ctx.options.bridge_other_endpoints == "passthrough"))
        except OpenAIError as e:
            routes.refuse(flow, e)
        except Exception:
            # Fail closed: a flow left alone here would go to the real API with the app's key.
            logger.exception("claude-bridge failed on %s %s", flow.request.method, flow.request.path.split("?")[0])
            error = OpenAIError(500, "claude-bridge failed on this request; its log says why.", "server_error")
            routes.respond(flow, 500, error.response().model_dump())
            flow.comment = "claude-bridge: failed (see the log)"
        if flow.response is not None or flow in self.diversions:  # answered by the bridge: the key goes nowhere
            redact.credentials(flow.request.headers)

    def _answer(self, flow: http.HTTPFlow, route: routes.Route) -> None:
        match route.endpoint:
            case Endpoint.HEALTH:
                health = routes.health(self._running, self.runner, self.cli.version, self.spending.health())
                routes.respond(flow, 200 if self._running else 503, health)
            case Endpoint.METRICS:
                body, content_type = self.spending.metrics.exposition(flow.request.headers.get("accept"))
                flow.response = http.Response.make(200, body, {"Content-Type": content_type})
            case Endpoint.MODELS:
                routes.respond(flow, 200, routes.models(self.jobs.models))
            case Endpoint.MODEL:
                routes.respond(flow, 200, routes.model(self.jobs.models, route.name))
            case Endpoint.STORED_RESPONSE:
                routes.respond(flow, 200, self.jobs.kept.response(route.name).model_dump(mode="json"))
            case Endpoint.MODERATIONS:
                routes.respond(flow, 200, routes.moderation(_body(flow)))
                flow.comment = "claude-bridge: moderation answered (not flagged)"
            case Endpoint.PASSTHROUGH:
                if _keys_required():
                    flow.request.headers.pop("authorization", None)  # the bridge's keys never leave the machine
                flow.comment = "claude-bridge: passed through to the real API"
            case Endpoint.CHAT:
                self._divert(flow, self.jobs.chat)
            case Endpoint.RESPONSES:
                self._divert(flow, self.jobs.responses)
            case Endpoint.COMPLETIONS:
                self._divert(flow, self.jobs.completions)

    def _divert(self, flow: http.HTTPFlow, make: Callable[[http.Request, bytes], Bridged]) -> None:
        bridged = make(flow.request, _body(flow))
        if refusal := self.cli.refusal(bridged.tools):
            raise refusal
        self.spending.admit(flow, bridged.stream)
        if ctx.options.bridge_log_prompts:
            prompt = _body(flow).decode(errors="replace")
            logger.info("prompt of %s %s: %s", flow.request.method, flow.request.path, prompt)
        self.diversions.divert(flow, self.leg.on_behalf(flow, bridged.job), bridged.model, bridged.report)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if not flow.live:
            return
        bridged = self.diversions.on_response_headers(flow)
        if bridged is None or bridged.report is None:  # a refusal: its `Connection: close` spares the client its body
            return
        assert flow.response is not None
        # The backend closes each connection after its answer; the client's connection should stay reusable.
        flow.response.headers.pop("Connection", None)
        flow.response.headers.update(self.spending.headers())
        flow.response.stream = self.leg.labelled(flow, bridged.tee)
        _let_page_read(flow)

    def response(self, flow: http.HTTPFlow) -> None:
        if not flow.live:
            return
        bridged = self.diversions.on_end(flow)
        self.leg.forget(flow)  # if its stream never ended
        if bridged is None:
            if destination.claim(flow, ctx.options.bridge_hosts) is Claim.NOT_OURS:
                return
            _let_page_read(flow)  # answered in place; sent after this hook
        self._log_request(flow, bridged)

    def error(self, flow: http.HTTPFlow) -> None:
        if not flow.live:
            return
        bridged = self.diversions.on_end(flow)
        if bridged is None:
            if _unread(flow):
                self._log_request(flow, None)
            return
        bridged.broken(flow.error.msg if flow.error else None)
        if bridged.report is not None:
            flow.comment += self.leg.links_of(flow)
        self._log_request(flow, bridged)

    def _log_request(self, flow: http.HTTPFlow, bridged: BridgedFlow | None) -> None:
        model, report = (bridged.model, bridged.report) if bridged else (None, None)
        line = RequestLine.of(flow, model, report, self.runner.census)
        logger.info(line.text(), extra={"request": line})
        self.spending.finished(flow, model, report)

    async def _check_cli(self, version_known: bool = False) -> None:
        """The CLI's version (for /health and the log) and, unless turned off, its compatibility verdict."""
        if not version_known:
            await self.cli.read_version(self.runner.settings.claude_bin)
        if ctx.options.claude_probe and (fallbacks := await self.cli.check(self.runner.settings, _confdir())):
            ctx.options.update(**fallbacks)


def _unread(flow: http.HTTPFlow) -> bool:
    """Whether this is a bridged request whose body mitmproxy could not read (broken chunked framing, a client gone
    mid-body), now labelled so.

    No 400 is possible: mitmproxy 12's HTTP/1 layer closes the client connection before it calls the error hook
    (`Http1Server.read_body`), so the log and mitmweb are the only places left to say why there was no answer.
    """
    if flow.response or flow.error is None or flow.request.timestamp_end is not None:  # the body was read
        return False
    if destination.claim(flow, ctx.options.bridge_hosts) is Claim.NOT_OURS:
        return False
    closed = "its body could not be read, and mitmproxy closed without an answer"
    flow.comment = f"claude-bridge: {closed}: {flow.error.msg}"
    return True


def _run_settings(values: Any, api_proxy: ApiProxy | None) -> tuple[ClaudeSettings, Limits]:
    """Settings and limits for the runs to come (warm processes and live sessions of the old ones go)."""
    settings = ClaudeSettings(
        claude_bin=_resolve_bin(values.claude_bin),
        max_retries=values.claude_max_retries,
        idle_timeout=values.claude_idle_timeout,
        total_timeout=values.claude_total_timeout,
        allow_api_key=values.claude_allow_api_key,
        api_proxy=api_proxy,
    )
    limits = Limits(
        max_runs=values.claude_max_runs,
        max_queued=values.claude_max_queued,
        pool_size=values.claude_pool_size,
        pool_shapes=values.claude_pool_shapes,
        pool_idle=values.claude_pool_idle,
        live_sessions=values.claude_live_sessions,
        live_idle=values.claude_live_idle,
        max_processes=values.claude_max_processes,
    )
    return settings, limits


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
    if not exposed or _keys_required():
        return None
    return (
        f"claude-bridge would listen beyond loopback ({', '.join(exposed)}) without an access key: anyone who can "
        "reach it could use your Claude subscription. Set one with --set bridge_access_key=KEY (clients send it "
        "as their API key), or listen on loopback (--listen-host 127.0.0.1)."
    )


def _warn_of_billing_by_key() -> None:
    if ctx.options.claude_allow_api_key and os.environ.get("ANTHROPIC_API_KEY"):
        logger.warning("claude_allow_api_key is on: the CLI will bill ANTHROPIC_API_KEY, not your subscription.")


def _confdir() -> Path:
    return Path(ctx.options.confdir).expanduser()


def _keys_required() -> bool:
    return access.keys_required(ctx.options.bridge_access_key, apps.parse_app_keys(ctx.options.bridge_app_keys))


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


def _body(flow: http.HTTPFlow) -> bytes:
    return request_body(flow.request, ctx.options.bridge_max_body)
