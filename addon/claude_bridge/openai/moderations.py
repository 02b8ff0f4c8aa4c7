"""`/v1/moderations`: the answer apps ask for before each request."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from .chat import ModelName, RequestModel

CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit", "illicit/violent",
    "self-harm", "self-harm/intent", "self-harm/instructions", "sexual", "sexual/minors", "violence",
    "violence/graphic",
)  # fmt: skip


class ModerationCreateParams(RequestModel):
    input: str | list[Any]
    model: ModelName = "omni-moderation-latest"


class Moderation(BaseModel):
    flagged: bool
    categories: dict[str, bool]
    category_scores: dict[str, float]
    category_applied_input_types: dict[str, list[str]]


class ModerationCreateResponse(BaseModel):
    id: str
    model: str
    results: list[Moderation]
