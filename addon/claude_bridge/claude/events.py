"""The CLI's `--output-format stream-json` lines, reduced to the events the bridge acts on.

Text deltas are the hot path (one per token), so they are built straight from the decoded line;
the rarer lines are validated with pydantic. The format is the CLI's, not a public contract, and it changes with
its updates: unknown lines and fields are skipped, and a field is required only where the bridge reads it and has
no sensible default (a missing token count is no tokens, a missing model name is no name).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from .errors import MalformedLine

logger = logging.getLogger(__name__)


class _Line(BaseModel):
    model_config = ConfigDict(extra="ignore")


class OutputDetails(_Line):
    thinking_tokens: int = 0


# A count the CLI sends as null is no tokens.
Count = Annotated[int, BeforeValidator(lambda value: value or 0)]


class Usage(_Line):
    input_tokens: Count = 0
    output_tokens: Count = 0
    cache_creation_input_tokens: Count = 0
    cache_read_input_tokens: Count = 0
    # The CLI's synthetic error messages carry null here.
    output_tokens_details: Annotated[OutputDetails, BeforeValidator(lambda value: value or {})] = OutputDetails()


class McpServerStatus(_Line):
    name: str
    status: str


class SystemInit(_Line):
    model: str | None = None  # only shown in the log line and mitmweb
    mcp_servers: list[McpServerStatus] = []
    tools: list[str] | None = None  # the names the model is shown


class ApiRetry(_Line):
    attempt: int
    max_retries: int
    retry_delay_ms: float = 0
    error_status: int | None = None
    error: str | None = None


class _CamelLine(_Line):
    model_config = ConfigDict(extra="ignore", alias_generator=to_camel, populate_by_name=True)


class UnifiedWindow(_CamelLine):
    """One usage window's reading (tests/recordings/rate_limits.md): fraction used, epoch-second reset."""

    utilization: float | None = None
    resets_at: int | None = None
    status: str | None = None
    surpassed_threshold: float | None = None


class OveragePeriod(_CamelLine):
    utilization: float | None = None


class MemberSpendLimit(_CamelLine):
    period: str | None = None  # daily, weekly, monthly


class RateLimitInfo(_CamelLine):
    """The plan's standing as the CLI read it from the API's `anthropic-ratelimit-unified-*` headers.

    Values are as the CLI sends them (strings, not enums: a newer CLI may add some); times are epoch seconds and
    utilizations fractions (1 = the window's allowance). tests/recordings/rate_limits.md has the mapping.
    """

    status: str | None = None  # allowed, allowed_warning, rejected
    resets_at: int | None = None
    rate_limit_type: str | None = None  # the deciding window: five_hour, seven_day, seven_day_opus, ..., overage
    utilization: float | None = None  # sent only with allowed_warning; else see unified_windows
    unified_windows: dict[str, UnifiedWindow] = {}
    surpassed_threshold: float | None = None
    overage_status: str | None = None  # paid overage: allowed, allowed_warning, rejected
    overage_resets_at: int | None = None
    overage_disabled_reason: str | None = None
    overage_enabled: bool | None = None
    is_using_overage: bool = False  # rejected, yet served and billed as paid overage
    overage_in_use: bool = False
    overage_period_monthly: OveragePeriod | None = None
    overage_period_channel: OveragePeriod | None = None
    limit_scope: str | None = None
    member_spend_limit: MemberSpendLimit | None = None
    daily_cap_paused: bool = False
    rate_limit_grace_active: bool = False
    error_code: str | None = None
    can_user_purchase_credits: bool | None = None
    has_chargeable_saved_payment_method: bool | None = None
    # Offers the CLI's own interface shows; kept whole, the bridge has no use for their parts.
    usage_credit_offer: dict[str, Any] | None = None
    admin_request_offer: dict[str, Any] | None = None

    @property
    def window_utilization(self) -> float | None:
        """The deciding window's fraction used: top-level only in a warning, else that window's own reading."""
        if self.utilization is not None:
            return self.utilization
        window = self.unified_windows.get(self.rate_limit_type or "")
        return window.utilization if window else None


class RateLimitEvent(_Line):
    rate_limit_info: RateLimitInfo


class ContentBlock(_Line):
    type: str
    text: str | None = None
    thinking: str | None = None
    id: str | None = None  # tool_use
    name: str | None = None
    input: dict[str, Any] | None = None


class Message(_Line):
    id: str
    model: str | None = None  # only the Anthropic content view shows it
    content: list[ContentBlock]
    stop_reason: str | None = None
    usage: Usage = Usage()


class AssistantMessage(_Line):
    """One complete content block of a turn; the only carrier of text when the CLI fell back to non-streaming."""

    message: Message
    is_api_error_message: bool = False

    @property
    def text(self) -> str:
        return "".join(block.text or "" for block in self.message.content if block.type == "text")


class Result(_Line):
    subtype: str
    is_error: bool
    result: str | None = None
    stop_reason: str | None = None
    terminal_reason: str | None = None
    api_error_status: int | None = None
    total_cost_usd: float = 0.0
    duration_ms: int = 0
    usage: Usage = Usage()
    errors: list[str] | None = None
    structured_output: Any = None


class ControlRequest(_Line):
    """The CLI asks its host something (here: the in-process MCP server's messages); stdin carries the answer."""

    request_id: str
    request: dict[str, Any]


@dataclass(frozen=True, slots=True)
class MessageStart:
    message_id: str
    usage: Usage


@dataclass(frozen=True, slots=True)
class TextDelta:
    message_id: str
    text: str


@dataclass(frozen=True, slots=True)
class ThinkingDelta:
    message_id: str
    thinking: str


@dataclass(frozen=True, slots=True)
class ToolUseStart:
    """The model begins a tool call; its input follows as JSON fragments."""

    message_id: str
    index: int
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class ToolInputDelta:
    message_id: str
    index: int
    partial_json: str


@dataclass(frozen=True, slots=True)
class BlockStop:
    message_id: str
    index: int


@dataclass(frozen=True, slots=True)
class MessageDelta:
    message_id: str
    stop_reason: str | None
    output_tokens: int | None


@dataclass(frozen=True, slots=True)
class BlocksAbandoned:
    """The API stream failed mid-way; the CLI discards these blocks and asks again without streaming."""

    message_id: str


Event = (
    ControlRequest
    | SystemInit
    | ApiRetry
    | RateLimitEvent
    | AssistantMessage
    | Result
    | MessageStart
    | TextDelta
    | ThinkingDelta
    | ToolUseStart
    | ToolInputDelta
    | BlockStop
    | MessageDelta
    | BlocksAbandoned
)

_LINE_MODELS: dict[tuple[str, str | None], type[_Line]] = {
    ("system", "init"): SystemInit,
    ("system", "api_retry"): ApiRetry,
    ("rate_limit_event", None): RateLimitEvent,
    ("assistant", None): AssistantMessage,
    ("result", None): Result,
    ("control_request", None): ControlRequest,
}


def parse(line: bytes) -> Event | None:
    """The event a stdout line carries, or None for lines the bridge has no use for."""
    try:
        data = json.loads(line)
    except ValueError as e:
        raise MalformedLine(f"a line that is not JSON: {line[:200]!r}") from e
    if not isinstance(data, dict):
        raise MalformedLine(f"a line that is not a JSON object: {line[:200]!r}")
    kind = str(data.get("type"))
    try:
        if kind == "stream_event":
            return _stream_event(data)
        model = _LINE_MODELS.get((kind, data.get("subtype"))) or _LINE_MODELS.get((kind, None))
        if model is None:
            return None
        return model.model_validate(data)  # type: ignore[return-value]  # the table holds only Event types
    except ValidationError as e:
        raise MalformedLine(f"an unexpected {kind} line: {e}") from e


def _stream_event(data: dict[str, Any]) -> Event | None:
    event = data.get("event") or {}
    kind = event.get("type")
    message_id = data.get("api_message_id", "")
    if kind == "content_block_delta":
        delta = event.get("delta") or {}
        match delta.get("type"):
            case "text_delta":
                return TextDelta(message_id, delta.get("text", ""))
            case "input_json_delta":
                return ToolInputDelta(message_id, event.get("index", 0), delta.get("partial_json", ""))
            case "thinking_delta":
                return ThinkingDelta(message_id, delta.get("thinking", ""))
        return None
    if kind == "content_block_start":
        block = event.get("content_block") or {}
        if block.get("type") == "tool_use":
            return ToolUseStart(message_id, event.get("index", 0), block.get("id", ""), block.get("name", ""))
        return None
    if kind == "content_block_stop":
        return BlockStop(message_id, event.get("index", 0))
    if kind == "message_start":
        usage = Usage.model_validate((event.get("message") or {}).get("usage") or {})
        return MessageStart(message_id, usage)
    if kind == "message_delta":
        counts = event.get("usage") or {}
        return MessageDelta(message_id, (event.get("delta") or {}).get("stop_reason"), counts.get("output_tokens"))
    if kind == "message_stop" and "abandoned_blocks" in data:
        return BlocksAbandoned(message_id)
    return None
