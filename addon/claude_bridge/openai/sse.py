"""Server-sent events, as OpenAI's streaming endpoints write them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel

from .errors import OpenAIError


@dataclass(frozen=True)
class Format:
    """How one endpoint frames its stream: each item, an error once the stream has begun, and the end marker."""

    event: Callable[[BaseModel], bytes]
    error: Callable[[OpenAIError], bytes]
    end: bytes


def _data(model: BaseModel) -> bytes:
    """Unset optional fields are left out, as OpenAI does (`finish_reason` keeps its explicit null)."""
    return b"data: " + model.model_dump_json(exclude_none=True).encode() + b"\n\n"


def _data_error(error: OpenAIError) -> bytes:
    """The full error envelope, nulls included, as in a non-streamed error body."""
    return b"data: " + error.response().model_dump_json().encode() + b"\n\n"


# Chat Completions: `data:` lines only (older SDKs crash on `event:` lines), ended by `data: [DONE]`.
CHAT_COMPLETIONS = Format(event=_data, error=_data_error, end=b"data: [DONE]\n\n")


def _named_event(model: BaseModel) -> bytes:
    """Nulls kept: the response snapshots in these events carry every field, as OpenAI sends them."""
    data = model.model_dump_json()
    return f"event: {getattr(model, 'type', 'message')}\n".encode() + b"data: " + data.encode() + b"\n\n"


def _error_event(error: OpenAIError) -> bytes:
    data = json.dumps(
        {"type": "error", "code": error.error.code, "message": error.error.message, "param": error.error.param}
    )
    return b"event: error\ndata: " + data.encode() + b"\n\n"


# Responses: `event:` + `data:` lines, each with its type; the stream just ends (no [DONE]).
RESPONSES = Format(event=_named_event, error=_error_event, end=b"")
