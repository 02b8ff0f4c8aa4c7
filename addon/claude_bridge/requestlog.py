"""One log line per request on a bridged host, readable as text or, with bridge_log_format=json, as JSON lines."""

from __future__ import annotations

import datetime
import json
import logging
from dataclasses import asdict, dataclass
from typing import Any

from mitmproxy import http

from .claude.runner import Census
from .report import TurnReport, prompt_tokens, tokens_text


@dataclass(frozen=True)
class RequestLine:
    method: str
    path: str
    status: int | None
    model: str | None = None
    claude_model: str | None = None
    outcome: str | None = None
    ttft_ms: int | None = None
    duration_ms: int | None = None
    tokens_in: int | None = None
    tokens_cached: int | None = None
    tokens_out: int | None = None
    cost_usd: float | None = None
    served: str | None = None
    tokens_cache_written: int | None = None
    runs: int = 0
    queued: int = 0
    warm: int = 0
    live: int = 0

    @classmethod
    def of(cls, flow: http.HTTPFlow, model: str | None, report: TurnReport | None, census: Census) -> RequestLine:
        """The request's line; `report` is None for requests answered without a run (health, models, refusals)."""
        request, response = flow.request, flow.response
        status = response.status_code if response else None
        path = request.path.split("?", 1)[0]
        if report is None:
            end = response.timestamp_end if response and response.timestamp_end else request.timestamp_start
            duration = round(((end or request.timestamp_start) - request.timestamp_start) * 1000)
            outcome = (flow.comment or "").removeprefix("claude-bridge: ") or None
            return cls(
                request.method,
                path,
                status,
                model,
                outcome=outcome,
                duration_ms=duration,
                **census._asdict(),
            )
        timed = report.record()  # the same times as the mitmweb comment's
        return cls(
            request.method,
            path,
            status,
            model,
            report.claude_model,
            report.outcome_text,
            ttft_ms=timed.first_token_ms,
            duration_ms=timed.duration_ms,
            tokens_in=prompt_tokens(report.usage),
            tokens_cached=report.usage.cache_read_input_tokens,
            tokens_out=report.usage.output_tokens,
            cost_usd=round(report.cost_usd, 6),
            served=report.served,
            tokens_cache_written=report.usage.cache_creation_input_tokens,
            **census._asdict(),
        )

    def text(self) -> str:
        parts = [f"{self.method} {self.path} -> {self.status if self.status is not None else 'no response'}"]
        if self.model:
            parts.append(f"{self.model} as {self.claude_model}" if self.claude_model else self.model)
        details = []
        if self.outcome:
            details.append(f"{self.outcome} by {self.served}" if self.served else self.outcome)
        if self.ttft_ms is not None:
            details.append(f"first token {self.ttft_ms} ms")
        if self.duration_ms is not None:
            details.append(f"{self.duration_ms} ms")
        if self.tokens_in is not None:
            read, written, out = self.tokens_cached or 0, self.tokens_cache_written or 0, self.tokens_out or 0
            details.append(tokens_text(self.tokens_in, read, written, out))
        if self.cost_usd is not None:
            details.append(f"${self.cost_usd:.4f}")
        details.append(f"runs {self.runs}, queued {self.queued}, warm {self.warm}, live {self.live}")
        return " ".join(parts) + ": " + "; ".join(details)


class JsonFormatter(logging.Formatter):
    """Every log record as one JSON object; a request line's fields become top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if isinstance(line := getattr(record, "request", None), RequestLine):
            entry |= asdict(line)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)
