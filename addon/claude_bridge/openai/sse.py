"""Server-sent events as OpenAI's Chat Completions stream writes them: `data:` lines only, no `event:`."""

from __future__ import annotations

from pydantic import BaseModel

DONE = b"data: [DONE]\n\n"


def encode(model: BaseModel) -> bytes:
    return b"data: " + model.model_dump_json(exclude_none=True).encode() + b"\n\n"
