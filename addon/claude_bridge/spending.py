"""The money side of each bridged request: the plan's limits as the CLI last reported them, and the metrics.

Every request on a bridged host ends in `finished` (answered, refused or broken); runs
report the plan's state as the CLI saw it, which is kept bridge-wide because the CLI reports only changes.
"""

from __future__ import annotations

import logging
import time

from mitmproxy import http

from . import routes
from .claude.runner import ClaudeRunner
from .metrics import Metrics, Readings
from .planlimits import PlanLimits
from .report import TurnReport

logger = logging.getLogger(__name__)


class Spending:
    def __init__(self, runner: ClaudeRunner) -> None:
        self.plan_limits: PlanLimits | None = None
        self.metrics = Metrics(
            Readings(
                runs_in_flight=lambda: runner.limiter.running,
                runs_queued=lambda: runner.limiter.queued,
                warm_clis=lambda: runner.pool.warm,
                live_sessions=lambda: len(runner.sessions),
                plan_limits=lambda: self.plan_limits,
            )
        )

    def finished(self, flow: http.HTTPFlow, report: TurnReport | None) -> None:
        """Count the request; a change in the plan's limits is logged and said in the flow's comment."""
        status = flow.response.status_code if flow.response else 0  # 0: no answer reached the client
        self.metrics.observe(routes.label(flow.request), status, report)
        reported = report.plan_limits if report else None
        if reported is None:
            return
        if reported.changed_from(self.plan_limits):
            logger.info("claude-bridge: %s", reported.text())
            flow.comment = f"{flow.comment}; {reported.text()}" if flow.comment else f"claude-bridge: {reported.text()}"
        self.plan_limits = reported

    def headers(self) -> dict[str, str]:
        """For a bridged answer: the latest plan limits the bridge knows (planlimits.py names them)."""
        return self.plan_limits.headers(time.time()) if self.plan_limits else {}

    def health(self) -> dict[str, object] | None:
        return self.plan_limits.as_health() if self.plan_limits else None
