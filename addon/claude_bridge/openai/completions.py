"""Legacy `/v1/completions`: a prompt in, text out."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, StrictBool, StrictInt

from .chat import CompletionUsage, MaxTokens, ModelName, RequestModel, StreamedChoice


class CompletionCreateParams(RequestModel):
    model: ModelName
    prompt: str | list[str]
    max_tokens: MaxTokens | None = None
    stream: StrictBool | None = False
    stop: str | list[str] | None = None
    n: StrictInt | None = Field(default=None, ge=1)
    suffix: str | None = None
    echo: StrictBool | None = None


class CompletionChoice(StreamedChoice):
    text: str
    index: int = 0
    logprobs: None = None
    finish_reason: Literal["stop", "length", "content_filter"] | None


class Completion(BaseModel):
    """The completion, and each chunk of a streamed one (the same object, as OpenAI sends it)."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage | None = None
