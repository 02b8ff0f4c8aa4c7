"""`/v1/responses`: the request as clients send it, the response object, its output items and stream events.

The response object carries every field OpenAI's spec lists. Where the bridge applies a request field it echoes it
(instructions, tools, tool_choice, text format, reasoning effort, max_output_tokens, store, metadata); where it
cannot, the field says what Claude actually ran with: the CLI takes no sampling settings, so `temperature` and
`top_p` are Anthropic's defaults (1), the penalties 0, no logprobs; no truncation, tool-call limit, summaries,
background mode or service tiers; `safety_identifier` and `prompt_cache_key` are not used, so null.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, StrictBool, Tag

from .chat import MaxTokens, ModelName, ReasoningEffort, RequestModel, ResponseFormatJSONObject, ResponseFormatText

# --- request ---------------------------------------------------------------------------------------


class ResponseInputText(RequestModel):
    type: Literal["input_text", "output_text"]
    text: str


class ResponseInputImage(RequestModel):
    type: Literal["input_image"]
    image_url: str | None = None
    detail: str | None = None


class ResponseInputOther(RequestModel):
    """input_file, input_audio, refusal, ...: refused with a clear 400 where they matter."""

    type: str


def _input_part_kind(part: Any) -> str:
    kind = part.get("type") if isinstance(part, dict) else None
    return {"input_text": "text", "output_text": "text", "input_image": "image"}.get(str(kind), "other")


ResponseInputContent = Annotated[
    Annotated[ResponseInputText, Tag("text")]
    | Annotated[ResponseInputImage, Tag("image")]
    | Annotated[ResponseInputOther, Tag("other")],
    Discriminator(_input_part_kind),
]


class ResponseInputMessage(RequestModel):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ResponseInputContent]


class ResponseFunctionToolCallParam(RequestModel):
    type: Literal["function_call"]
    call_id: str
    name: str
    arguments: str


class ResponseFunctionCallOutput(RequestModel):
    type: Literal["function_call_output"]
    call_id: str
    output: str | list[ResponseInputContent]


class ResponseItemReference(RequestModel):
    """An earlier response's output item by its id (what clients send when the API stores responses)."""

    type: Literal["item_reference"]
    id: str


class ResponseInputUnused(RequestModel):
    """Items that carry nothing Claude can use (reasoning summaries, hosted tool calls, ...): left out."""

    type: str


def _input_item_kind(item: Any) -> str:
    if not isinstance(item, dict):
        return "unused"
    kind = item.get("type", "message" if "role" in item else None)
    return kind if kind in ("message", "function_call", "function_call_output", "item_reference") else "unused"


ResponseInputItem = Annotated[
    Annotated[ResponseInputMessage, Tag("message")]
    | Annotated[ResponseFunctionToolCallParam, Tag("function_call")]
    | Annotated[ResponseFunctionCallOutput, Tag("function_call_output")]
    | Annotated[ResponseItemReference, Tag("item_reference")]
    | Annotated[ResponseInputUnused, Tag("unused")],
    Discriminator(_input_item_kind),
]


class FunctionToolParam(RequestModel):
    type: Literal["function"]
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None


class OtherToolParam(RequestModel):
    """Hosted and custom tools (web_search, file_search, custom, namespace, ...): the bridge cannot serve them."""

    type: str


ToolParam = Annotated[
    Annotated[FunctionToolParam, Tag("function")] | Annotated[OtherToolParam, Tag("other")],
    Discriminator(lambda tool: "function" if isinstance(tool, dict) and tool.get("type") == "function" else "other"),
]


class ToolChoiceFunction(RequestModel):
    type: Literal["function"]
    name: str


class ResponseFormatTextJSONSchemaConfigParam(RequestModel):
    type: Literal["json_schema"]
    name: str = "response"
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: StrictBool | None = None


class ResponseTextConfigParam(RequestModel):
    format: (
        Annotated[
            ResponseFormatText | ResponseFormatJSONObject | ResponseFormatTextJSONSchemaConfigParam,
            Field(discriminator="type"),
        ]
        | None
    ) = None


class ReasoningParam(RequestModel):
    effort: ReasoningEffort | None = None


class ResponseCreateParams(RequestModel):
    model: ModelName
    input: str | list[ResponseInputItem]
    instructions: str | None = None
    tools: list[ToolParam] | None = None
    tool_choice: Literal["none", "auto", "required"] | ToolChoiceFunction | dict[str, Any] | None = None
    parallel_tool_calls: StrictBool | None = None
    text: ResponseTextConfigParam | None = None
    reasoning: ReasoningParam | None = None
    max_output_tokens: MaxTokens | None = None
    stream: StrictBool | None = False
    store: StrictBool | None = True
    previous_response_id: str | None = None
    metadata: dict[str, str] | None = None


# --- response --------------------------------------------------------------------------------------


class ResponseOutputText(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = []
    logprobs: list[Any] = []


class ResponseOutputMessage(BaseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    status: Literal["in_progress", "completed", "incomplete"]
    content: list[ResponseOutputText]


class ResponseFunctionToolCall(BaseModel):
    id: str
    type: Literal["function_call"] = "function_call"
    status: Literal["in_progress", "completed", "incomplete"]
    call_id: str
    name: str
    arguments: str


ResponseOutputItem = ResponseOutputMessage | ResponseFunctionToolCall


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class ResponseUsage(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails
    output_tokens: int
    output_tokens_details: OutputTokensDetails
    total_tokens: int


class ResponseError(BaseModel):
    code: Literal["server_error", "rate_limit_exceeded", "invalid_prompt"]
    message: str


class IncompleteDetails(BaseModel):
    reason: Literal["max_output_tokens", "content_filter"]


class FunctionTool(BaseModel):
    type: Literal["function"] = "function"
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ResponseFormatTextJSONSchemaConfig(BaseModel):
    model_config = ConfigDict(serialize_by_alias=True, validate_by_name=True)

    type: Literal["json_schema"] = "json_schema"
    name: str
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class ResponseTextConfig(BaseModel):
    format: ResponseFormatText | ResponseFormatJSONObject | ResponseFormatTextJSONSchemaConfig


class Reasoning(BaseModel):
    effort: ReasoningEffort | None = None
    summary: None = None  # the bridge makes no reasoning summaries, whatever was asked


class Response(BaseModel):
    """Every field OpenAI sends, nulls included; the sampling fields say what Claude used (module docstring)."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    completed_at: int | None = None
    status: Literal["in_progress", "completed", "incomplete", "failed"]
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    model: str
    output: list[ResponseOutputItem]
    instructions: str | None = None
    previous_response_id: str | None = None
    max_output_tokens: int | None = None
    max_tool_calls: None = None
    parallel_tool_calls: bool = True
    tool_choice: Any = "auto"
    tools: list[FunctionTool] = []
    text: ResponseTextConfig = ResponseTextConfig(format=ResponseFormatText(type="text"))
    reasoning: Reasoning = Reasoning()
    temperature: float = 1.0
    top_p: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    top_logprobs: int = 0
    truncation: Literal["disabled"] = "disabled"
    usage: ResponseUsage | None = None
    store: bool = True
    background: Literal[False] = False
    service_tier: Literal["default"] = "default"
    metadata: dict[str, str] = {}
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None


# --- stream events ---------------------------------------------------------------------------------


class _Event(BaseModel):
    sequence_number: int = 0


class ResponseLifecycleEvent(_Event):
    """response.created / in_progress / completed / incomplete / failed: the whole response as it stands."""

    type: Literal[
        "response.created", "response.in_progress", "response.completed", "response.incomplete", "response.failed"
    ]
    response: Response


class ResponseOutputItemEvent(_Event):
    type: Literal["response.output_item.added", "response.output_item.done"]
    output_index: int
    item: ResponseOutputItem


class ResponseContentPartEvent(_Event):
    type: Literal["response.content_part.added", "response.content_part.done"]
    item_id: str
    output_index: int
    content_index: int
    part: ResponseOutputText


class ResponseTextDeltaEvent(_Event):
    type: Literal["response.output_text.delta"] = "response.output_text.delta"
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[Any] = []


class ResponseTextDoneEvent(_Event):
    type: Literal["response.output_text.done"] = "response.output_text.done"
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[Any] = []


class ResponseFunctionCallArgumentsDeltaEvent(_Event):
    type: Literal["response.function_call_arguments.delta"] = "response.function_call_arguments.delta"
    item_id: str
    output_index: int
    delta: str


class ResponseFunctionCallArgumentsDoneEvent(_Event):
    type: Literal["response.function_call_arguments.done"] = "response.function_call_arguments.done"
    item_id: str
    output_index: int
    name: str
    arguments: str


ResponseStreamEvent = (
    ResponseLifecycleEvent
    | ResponseOutputItemEvent
    | ResponseContentPartEvent
    | ResponseTextDeltaEvent
    | ResponseTextDoneEvent
    | ResponseFunctionCallArgumentsDeltaEvent
    | ResponseFunctionCallArgumentsDoneEvent
)
