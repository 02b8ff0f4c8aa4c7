"""`/v1/chat/completions`: the request as clients send it, the completion, and the stream chunk."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    StrictInt,
    Tag,
    model_serializer,
)

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]


class _Request(BaseModel):
    """Request objects ignore fields the bridge does not use: apps send many, and refusing them breaks apps."""

    model_config = ConfigDict(extra="ignore")


class ChatCompletionContentPartText(_Request):
    type: Literal["text"]
    text: str


class ChatCompletionContentPartOther(_Request):
    """A part type the bridge cannot forward yet (image_url, input_audio, file, ...); refused with a clear 400."""

    type: str


def _part_kind(part: Any) -> str:
    kind = part.get("type") if isinstance(part, dict) else getattr(part, "type", None)
    return "text" if kind == "text" else "other"


ContentPart = Annotated[
    Annotated[ChatCompletionContentPartText, Tag("text")] | Annotated[ChatCompletionContentPartOther, Tag("other")],
    Discriminator(_part_kind),
]

MessageContent = str | list[ContentPart]


class ChatCompletionSystemMessageParam(_Request):
    role: Literal["system"]
    content: MessageContent
    name: str | None = None


class ChatCompletionDeveloperMessageParam(_Request):
    role: Literal["developer"]
    content: MessageContent
    name: str | None = None


class ChatCompletionUserMessageParam(_Request):
    role: Literal["user"]
    content: MessageContent
    name: str | None = None


class ChatCompletionAssistantMessageParam(_Request):
    role: Literal["assistant"]
    content: MessageContent | None = None
    name: str | None = None


ChatCompletionMessageParam = Annotated[
    ChatCompletionSystemMessageParam
    | ChatCompletionDeveloperMessageParam
    | ChatCompletionUserMessageParam
    | ChatCompletionAssistantMessageParam,
    Field(discriminator="role"),
]


class ChatCompletionStreamOptionsParam(_Request):
    include_usage: StrictBool | None = None


class ChatCompletionCreateParams(_Request):
    model: str = Field(min_length=1)
    messages: list[ChatCompletionMessageParam] = Field(min_length=1)
    stream: StrictBool | None = False
    stream_options: ChatCompletionStreamOptionsParam | None = None
    max_tokens: StrictInt | None = Field(default=None, ge=1)
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    n: StrictInt | None = Field(default=None, ge=1)


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0


class CompletionTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails
    completion_tokens_details: CompletionTokensDetails


class ChatCompletionMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None


class Choice(BaseModel):
    index: int = 0
    message: ChatCompletionMessage
    finish_reason: FinishReason
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage
    system_fingerprint: str | None = None


class ChoiceDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: ChoiceDelta
    finish_reason: FinishReason | None = None
    logprobs: None = None

    @model_serializer(mode="wrap")
    def _keep_nulls(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """OpenAI sends `finish_reason` and `logprobs` as explicit nulls; some clients' schemas require the keys."""
        data: dict[str, Any] = handler(self)
        data.setdefault("finish_reason", None)
        data.setdefault("logprobs", None)
        return data


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None
