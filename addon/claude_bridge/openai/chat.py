"""`/v1/chat/completions`: the request as clients send it, the completion, and the stream chunk."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
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
from pydantic_core import PydanticCustomError

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]

# Not a model's fingerprint: the bridge cannot see Claude's backend configuration, so it names itself.
SYSTEM_FINGERPRINT = "claude-bridge"


class RequestModel(BaseModel):
    """Request objects ignore fields the bridge does not use: apps send many, and refusing them breaks apps."""

    model_config = ConfigDict(extra="ignore")


def _model_name(name: str) -> str:
    """A name that may reach the CLI's argv (`claude-*` passes through) and is echoed back: one printable word."""
    if not name.isprintable() or " " in name:
        raise PydanticCustomError("model_name", "model names cannot contain whitespace or control characters")
    return name


# At most 256 characters: a `claude-*` name goes to the CLI's argv, where a long one would fail the run (E2BIG).
ModelName = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_model_name)]

# OpenAI's own bound for token counts: a larger one is a client's bug, refused as OpenAI refuses it.
MaxTokens = Annotated[StrictInt, Field(ge=1, le=2**31 - 1)]


class ChatCompletionContentPartText(RequestModel):
    type: Literal["text"]
    text: str


class ImageURL(RequestModel):
    url: str
    detail: str | None = None


class ChatCompletionContentPartImage(RequestModel):
    type: Literal["image_url"]
    image_url: ImageURL


class ChatCompletionContentPartOther(RequestModel):
    """A part type the bridge cannot forward (input_audio, file, ...); refused with a clear 400."""

    type: str


_PART_TAGS = {"text": "text", "image_url": "image_url"}


def _part_kind(part: Any) -> str:
    kind = part.get("type") if isinstance(part, dict) else getattr(part, "type", None)
    return _PART_TAGS.get(kind, "other") if isinstance(kind, str) else "other"


ContentPart = Annotated[
    Annotated[ChatCompletionContentPartText, Tag("text")]
    | Annotated[ChatCompletionContentPartImage, Tag("image_url")]
    | Annotated[ChatCompletionContentPartOther, Tag("other")],
    Discriminator(_part_kind),
]

MessageContent = str | list[ContentPart]


class ChatCompletionSystemMessageParam(RequestModel):
    role: Literal["system"]
    content: MessageContent
    name: str | None = None


class ChatCompletionDeveloperMessageParam(RequestModel):
    role: Literal["developer"]
    content: MessageContent
    name: str | None = None


class ChatCompletionUserMessageParam(RequestModel):
    role: Literal["user"]
    content: MessageContent
    name: str | None = None


class FunctionCall(RequestModel):
    name: str
    arguments: str


class ChatCompletionMessageToolCallParam(RequestModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatCompletionAssistantMessageParam(RequestModel):
    role: Literal["assistant"]
    content: MessageContent | None = None
    name: str | None = None
    tool_calls: list[ChatCompletionMessageToolCallParam] | None = None
    function_call: FunctionCall | None = None  # legacy


class ChatCompletionToolMessageParam(RequestModel):
    role: Literal["tool"]
    content: MessageContent
    tool_call_id: str


class ChatCompletionFunctionMessageParam(RequestModel):
    """Legacy: the result of a `function_call`, matched by function name."""

    role: Literal["function"]
    content: str | None = None
    name: str


ChatCompletionMessageParam = Annotated[
    ChatCompletionSystemMessageParam
    | ChatCompletionDeveloperMessageParam
    | ChatCompletionUserMessageParam
    | ChatCompletionAssistantMessageParam
    | ChatCompletionToolMessageParam
    | ChatCompletionFunctionMessageParam,
    Field(discriminator="role"),
]


class FunctionDefinition(RequestModel):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None


class ChatCompletionToolParam(RequestModel):
    type: Literal["function"]
    function: FunctionDefinition


class ChatCompletionNamedToolChoiceFunction(RequestModel):
    name: str


class ChatCompletionNamedToolChoiceParam(RequestModel):
    type: Literal["function"]
    function: ChatCompletionNamedToolChoiceFunction


ToolChoice = Literal["none", "auto", "required"] | ChatCompletionNamedToolChoiceParam
FunctionCallChoice = Literal["none", "auto"] | ChatCompletionNamedToolChoiceFunction  # legacy `function_call`


class ResponseFormatText(RequestModel):
    type: Literal["text"]


class ResponseFormatJSONObject(RequestModel):
    type: Literal["json_object"]


class JSONSchema(RequestModel):
    name: str
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: StrictBool | None = None


class ResponseFormatJSONSchema(RequestModel):
    type: Literal["json_schema"]
    json_schema: JSONSchema


ResponseFormat = Annotated[
    ResponseFormatText | ResponseFormatJSONObject | ResponseFormatJSONSchema, Field(discriminator="type")
]

ReasoningEffort = Literal["none", "minimal", "low", "medium", "high", "xhigh"]


class ChatCompletionStreamOptionsParam(RequestModel):
    include_usage: StrictBool | None = None


class ChatCompletionCreateParams(RequestModel):
    model: ModelName
    messages: list[ChatCompletionMessageParam] = Field(min_length=1)
    stream: StrictBool | None = False
    stream_options: ChatCompletionStreamOptionsParam | None = None
    max_tokens: MaxTokens | None = None
    max_completion_tokens: MaxTokens | None = None
    stop: str | list[str] | None = None
    n: StrictInt | None = Field(default=None, ge=1)
    tools: list[ChatCompletionToolParam] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: StrictBool | None = None
    functions: list[FunctionDefinition] | None = None  # legacy
    function_call: FunctionCallChoice | None = None  # legacy
    response_format: ResponseFormat | None = None
    reasoning_effort: ReasoningEffort | None = None


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


class Function(BaseModel):
    name: str
    arguments: str


class ChatCompletionMessageToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: Function


class ChatCompletionMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None
    tool_calls: list[ChatCompletionMessageToolCall] | None = None
    function_call: Function | None = None  # legacy `functions` requests
    annotations: list[Any] = []
    reasoning_content: str | None = None  # not OpenAI's: Claude's thinking, when the bridge is asked to show it

    @model_serializer(mode="wrap")
    def _omit_unused(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """OpenAI leaves out the call fields a message does not use; the thinking field is the bridge's own."""
        data: dict[str, Any] = handler(self)
        for key in ("tool_calls", "function_call", "reasoning_content"):
            if data.get(key) is None:
                data.pop(key, None)
        return data


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
    system_fingerprint: str = SYSTEM_FINGERPRINT


class ChoiceDeltaFunctionCall(BaseModel):
    name: str | None = None
    arguments: str | None = None


class ChoiceDeltaToolCall(BaseModel):
    """The first fragment of a call carries id, type and name; later ones only argument text."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: ChoiceDeltaFunctionCall


class ChoiceDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ChoiceDeltaToolCall] | None = None
    function_call: ChoiceDeltaFunctionCall | None = None
    reasoning_content: str | None = None


class StreamedChoice(BaseModel):
    """A choice in a stream chunk: OpenAI sends `finish_reason` and `logprobs` as explicit nulls until the end,
    and some clients' schemas require the keys even where the serialization leaves out unset fields."""

    @model_serializer(mode="wrap")
    def _keep_nulls(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        data.setdefault("finish_reason", None)
        data.setdefault("logprobs", None)
        return data


class ChunkChoice(StreamedChoice):
    index: int = 0
    delta: ChoiceDelta
    finish_reason: FinishReason | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    system_fingerprint: str = SYSTEM_FINGERPRINT
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None
