"""The OpenAI view: a bridged request as a conversation, its answer assembled, with what the bridge's run did."""

from __future__ import annotations

from mitmproxy import http
from pydantic import ValidationError

from ..report import RECORD_KEY, RunRecord, tokens
from ..routes import PATHS, Endpoint
from . import openai_answer, openai_request
from .view import BridgeView, content_type

ENDPOINTS = {Endpoint.CHAT, Endpoint.RESPONSES, Endpoint.COMPLETIONS}


class OpenAIView(BridgeView):
    name = "OpenAI"

    def render(self, data: bytes, message: http.Message, flow: http.HTTPFlow) -> str | None:
        endpoint, _ = PATHS.get(flow.request.path.split("?", 1)[0].rstrip("/"), (None, None))
        if endpoint not in ENDPOINTS or not data:
            return None
        if isinstance(message, http.Request):
            return openai_request.render(endpoint, data)
        return run_lines(flow) + openai_answer.render(endpoint, data, content_type(message))


def run_lines(flow: http.HTTPFlow) -> str:
    """What the bridge's run did, from the record the bridge kept with the flow; nothing for any other flow."""
    try:
        record = RunRecord.model_validate(flow.metadata.get(RECORD_KEY))
    except ValidationError:
        return ""
    served = f", served by {record.served}" if record.served else ""
    lines = [f"claude-bridge: {record.claude_model or 'claude'} {record.outcome}{served}"]
    if record.first_token_ms is not None:
        split = ""
        if record.start_up_ms is not None:
            split = (
                f" (CLI start-up {record.start_up_ms} ms, then the API {record.first_token_ms - record.start_up_ms} ms)"
            )
        lines.append(f"first token {record.first_token_ms} ms{split}; {record.duration_ms} ms in all")
    lines.append(f"{tokens(record.usage)}; cost ${record.cost_usd:.4f}")
    return "\n".join(lines) + "\n\n"
