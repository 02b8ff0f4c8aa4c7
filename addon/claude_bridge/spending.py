"""The money side of each bridged request: who sent it, whether its budget lets it run, what it cost, and where the
plan's limits stand.

Every request on a bridged host ends in `finished` (answered, refused or broken): it is counted in the metrics, and
one that ran is written to the ledger under its app. Runs report the plan's state as the CLI saw it; the bridge keeps
the latest (the CLI reports only changes), in memory and in the ledger, so it is known again after a restart.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from mitmproxy import http

from . import apps, periods, routes
from .budget import Budget
from .claude.runner import ClaudeRunner
from .ledger import Entry, Ledger
from .metrics import Metrics, Readings
from .planlimits import PlanLimits
from .report import TurnReport

logger = logging.getLogger(__name__)

APP = "claude-bridge-app"
STREAM = "claude-bridge-stream"
"""flow.metadata keys: the app a bridged request is counted under, and whether it asked for a stream."""


class Spending:
    def __init__(self, runner: ClaudeRunner) -> None:
        self.plan_limits: PlanLimits | None = None
        self.ledger: Ledger | None = None
        self.budget = Budget()
        self.app_keys: dict[str, str] = {}
        self.metrics = Metrics(
            Readings(
                runs_in_flight=lambda: runner.limiter.running,
                runs_queued=lambda: runner.limiter.queued,
                warm_clis=lambda: runner.pool.warm,
                live_sessions=lambda: len(runner.sessions),
                plan_limits=lambda: self.plan_limits,
            )
        )

    def configure(self, options: Any) -> None:
        self.budget = Budget.from_options(
            options.bridge_budget_daily, options.bridge_budget_monthly, options.bridge_refuse_overage
        )
        self.app_keys = dict(apps.parse_app_keys(options.bridge_app_keys))
        if self.ledger is not None:
            self.ledger.keep_days = options.bridge_ledger_days

    def open(self, confdir: Path, keep_days: int) -> None:
        """The ledger, and the plan's state as it was last seen (LedgerError if the file cannot be used)."""
        self.ledger = Ledger.in_confdir(confdir, keep_days)
        self.plan_limits = self.ledger.plan_limits()

    def close(self) -> None:
        if self.ledger is not None:
            self.ledger.close()

    def admit(self, flow: http.HTTPFlow, stream: bool) -> None:
        """Label a request about to run with its app (before its key is redacted) and hold it to the budgets:
        raises the 429 insufficient_quota of a spent cap or of paid overage."""
        app = apps.app_of(flow.request.headers, self.app_keys)
        flow.metadata[APP], flow.metadata[STREAM] = app, stream
        if self.ledger is not None and (
            refusal := self.budget.check(self.ledger, app, periods.now(), self.plan_limits)
        ):
            raise refusal

    def finished(self, flow: http.HTTPFlow, model: str | None, report: TurnReport | None) -> None:
        """Count the request; write a run's row; a change in the plan's limits is logged and said in the comment."""
        status = flow.response.status_code if flow.response else None
        endpoint = routes.label(flow.request)
        self.metrics.observe(endpoint, status or 0, report)  # 0: no answer reached the client
        if report is None:
            return
        if self.ledger is not None:
            app, stream = flow.metadata.get(APP, apps.UNKNOWN), bool(flow.metadata.get(STREAM))
            entry = Entry.of(
                report, app=app, endpoint=endpoint, model=model, status=status, stream=stream, at=periods.now()
            )
            self.ledger.submit(entry)
        if report.plan_limits is not None:
            self._plan_reported(flow, report.plan_limits)

    def _plan_reported(self, flow: http.HTTPFlow, reported: PlanLimits) -> None:
        changed = reported.changed_from(self.plan_limits)
        overage_began = reported.using_overage and not (self.plan_limits and self.plan_limits.using_overage)
        self.plan_limits = reported
        if not changed:
            return
        if self.ledger is not None:
            self.ledger.submit_plan_limits(reported)  # off the event loop; budget checks read self.plan_limits
        logger.info("claude-bridge: %s", reported.text())
        flow.comment = f"{flow.comment}; {reported.text()}" if flow.comment else f"claude-bridge: {reported.text()}"
        if overage_began:
            logger.warning(overage_warning(self.budget.refuse_overage))

    def headers(self) -> dict[str, str]:
        """For a bridged answer: the latest plan limits the bridge knows (planlimits.py names them)."""
        return self.plan_limits.headers(time.time()) if self.plan_limits else {}

    def health(self) -> dict[str, object] | None:
        return self.plan_limits.as_health() if self.plan_limits else None


def overage_warning(refusing: bool) -> str:
    """Said loudly, in the log and the banner: from here on the account pays for each request."""
    then = (
        "the bridge refuses new requests (429 insufficient_quota) until the plan's limit resets; "
        "--set bridge_refuse_overage=false lets them run, billed"
        if refusing
        else "requests still run (bridge_refuse_overage is off), each billed as paid usage"
    )
    return (
        f"PAID OVERAGE: the Claude plan's included usage is spent and the account is drawing on paid overage: {then}."
    )
