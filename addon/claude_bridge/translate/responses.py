"""The Responses API on the Chat Completions core: input items become chat messages, Claude's turn becomes
the Responses event stream (and, collected, the response object)."""

from __future__ import annotations

import collections
import contextlib
import secrets
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

from pydantic import ValidationError

from ..claude.events import Usage
from ..claude.runner import ClaudeRunner
from ..openai.chat import ChatCompletionCreateParams, ResponseFormatJSONObject, ResponseFormatText
from ..openai.errors import OpenAIError
from ..openai.responses import (
    FunctionTool,
    FunctionToolParam,
    IncompleteDetails,
    InputTokensDetails,
    OutputTokensDetails,
    Reasoning,
    Response,
    ResponseContentPartEvent,
    ResponseCreateParams,
    ResponseError,
    ResponseFormatTextJSONSchemaConfig,
    ResponseFormatTextJSONSchemaConfigParam,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseFunctionCallOutput,
    ResponseFunctionToolCall,
    ResponseFunctionToolCallParam,
    ResponseInputImage,
    ResponseInputMessage,
    ResponseInputText,
    ResponseItemReference,
    ResponseLifecycleEvent,
    ResponseOutputItem,
    ResponseOutputItemEvent,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseStreamEvent,
    ResponseTextConfig,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
    ResponseUsage,
    ToolChoiceFunction,
)
from ..report import TurnReport, prompt_tokens
from .request import ChatJob
from .turn import TurnEnd, TurnItem, TurnText, TurnToolArguments, TurnToolCall, turn

ChatMessageParam = dict[str, Any]


class ResponseStore:
    """Recent responses, for `previous_response_id` and `GET /v1/responses/{id}`: in memory, the newest
    `capacity` kept (a conversation continues from any of them; older ids answer 404)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._entries: collections.OrderedDict[str, tuple[Response, list[ChatMessageParam]]] = collections.OrderedDict()
        self._items: dict[str, ResponseOutputItem] = {}  # the kept responses' output items, by id

    def put(self, response: Response, conversation: list[ChatMessageParam]) -> None:
        self._entries[response.id] = (response, conversation)
        self._entries.move_to_end(response.id)
        self._items.update((item.id, item) for item in response.output)
        while len(self._entries) > self.capacity:
            _, (dropped, _) = self._entries.popitem(last=False)
            for item in dropped.output:
                self._items.pop(item.id, None)

    def item(self, item_id: str) -> ResponseOutputItem:
        """An output item a client refers to (`item_reference`), as the response that made it gave it."""
        try:
            return self._items[item_id]
        except KeyError:
            raise OpenAIError(
                404,
                f"Item with id '{item_id}' not found. claude-bridge keeps the items of the last {self.capacity} "
                "responses in memory, and none across restarts.",
                code="item_not_found",
                param="input",
            ) from None

    def response(self, response_id: str) -> Response:
        return self._get(response_id, "response_id")[0]

    def conversation(self, response_id: str) -> list[ChatMessageParam]:
        return self._get(response_id, "previous_response_id")[1]

    def _get(self, response_id: str, param: str) -> tuple[Response, list[ChatMessageParam]]:
        try:
            return self._entries[response_id]
        except KeyError:
            raise OpenAIError(
                404,
                f"Response with id '{response_id}' not found. claude-bridge keeps the last {self.capacity} "
                "responses in memory, and none across restarts.",
                code="response_not_found" if param == "response_id" else "previous_response_not_found",
                param=param,
            ) from None


def chat_request(
    request: ResponseCreateParams, earlier: list[ChatMessageParam], item: Callable[[str], ResponseOutputItem]
) -> tuple[ChatCompletionCreateParams, list[ChatMessageParam]]:
    """The equivalent chat request, and the conversation (without instructions) to store for follow-ups.

    `item` finds an earlier output item a client refers to by id."""
    conversation = earlier + _messages(request, item)
    messages = ([{"role": "system", "content": request.instructions}] if request.instructions else []) + conversation
    fields: dict[str, Any] = {"model": request.model, "messages": messages, "stream": bool(request.stream)}
    tools = [tool for tool in request.tools or () if isinstance(tool, FunctionToolParam)]
    if tools:
        fields["tools"] = [
            {"type": "function", "function": tool.model_dump(exclude={"type"}, exclude_none=True)} for tool in tools
        ]
        if isinstance(request.tool_choice, ToolChoiceFunction):
            fields["tool_choice"] = {"type": "function", "function": {"name": request.tool_choice.name}}
        elif isinstance(request.tool_choice, str):
            fields["tool_choice"] = request.tool_choice
    if request.parallel_tool_calls is not None:
        fields["parallel_tool_calls"] = request.parallel_tool_calls
    if request.text and request.text.format and request.text.format.type != "text":
        fmt = request.text.format
        fields["response_format"] = (
            {"type": "json_schema", "json_schema": {"name": fmt.name, "schema": fmt.schema_, "strict": fmt.strict}}
            if fmt.type == "json_schema"
            else {"type": "json_object"}
        )
    if request.reasoning and request.reasoning.effort:
        fields["reasoning_effort"] = request.reasoning.effort
    if request.max_output_tokens:
        fields["max_completion_tokens"] = request.max_output_tokens
    try:
        return ChatCompletionCreateParams.model_validate(fields), conversation
    except ValidationError as e:
        error = e.errors(include_url=False)[0]
        raise OpenAIError(400, f"Invalid input: {error['msg']}.", param="input") from None


def _messages(request: ResponseCreateParams, stored: Callable[[str], ResponseOutputItem]) -> list[ChatMessageParam]:
    """Input items as chat messages; consecutive function calls join one assistant message."""
    if isinstance(request.input, str):
        return [{"role": "user", "content": request.input}]
    messages: list[ChatMessageParam] = []
    for given in request.input:
        item = _referred(stored(given.id)) if isinstance(given, ResponseItemReference) else given
        match item:
            case ResponseInputMessage(role=role, content=content):
                messages.append({"role": role, "content": content if isinstance(content, str) else _parts(content)})
            case ResponseFunctionToolCallParam(call_id=call_id, name=name, arguments=arguments):
                call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
                if messages and messages[-1]["role"] == "assistant":
                    messages[-1].setdefault("tool_calls", []).append(call)
                else:
                    messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
            case ResponseFunctionCallOutput(call_id=call_id, output=output):
                result = output if isinstance(output, str) else _parts(output)
                messages.append({"role": "tool", "tool_call_id": call_id, "content": result})
    return messages


def _referred(item: ResponseOutputItem) -> ResponseInputMessage | ResponseFunctionToolCallParam:
    """An earlier output item as the input item a client would have sent in its place."""
    if isinstance(item, ResponseOutputMessage):
        text = "".join(part.text for part in item.content)
        return ResponseInputMessage(role="assistant", content=text)
    return ResponseFunctionToolCallParam(
        type="function_call", call_id=item.call_id, name=item.name, arguments=item.arguments
    )


def _parts(parts: list[Any]) -> list[dict[str, Any]]:
    converted: list[dict[str, Any]] = []
    for part in parts:
        match part:
            case ResponseInputText(text=text):
                converted.append({"type": "text", "text": text})
            case ResponseInputImage(image_url=url) if url:
                converted.append({"type": "image_url", "image_url": {"url": url}})
            case _:
                converted.append({"type": part.type})  # refused by the chat core with a clear 400
    return converted


async def response_events(
    job: ChatJob,
    request: ResponseCreateParams,
    runner: ClaudeRunner,
    report: TurnReport,
    store: Callable[[Response], None],
) -> AsyncGenerator[ResponseStreamEvent]:
    """The Responses stream: created and in_progress once Claude has produced something (a failure before that
    is an HTTP error), the output items with their deltas, then completed, incomplete or failed."""
    stream = _ResponseStream(_new_response(job, request))
    end = TurnEnd(None, Usage())
    items = turn(job.invocation, runner, report, caller=job.caller, parallel_tool_calls=job.parallel_tool_calls)
    try:
        async with contextlib.aclosing(items):
            async for item in items:
                if isinstance(item, TurnEnd):
                    end = item
                for event in stream.opening() + stream.item(item):
                    yield event
    except OpenAIError as e:
        if not stream.started:
            if e.error.param == "response_format":
                e.error.param = "text.format"  # what this API calls it
            raise
        yield stream.failed(e)
        return
    for event in stream.opening() + stream.closing(end):
        yield event
    store(stream.response)
    report.finish(end.stop_reason)
    yield stream.numbered(stream.ended())


def _new_response(job: ChatJob, request: ResponseCreateParams) -> Response:
    """The response as it starts: what the request asked for, no output yet."""
    return Response(
        id="resp_" + secrets.token_hex(24),
        created_at=int(time.time()),
        status="in_progress",
        model=request.model,
        output=[],
        instructions=request.instructions,
        previous_response_id=request.previous_response_id,
        max_output_tokens=request.max_output_tokens,
        parallel_tool_calls=job.parallel_tool_calls,
        tool_choice=request.tool_choice or "auto",
        tools=[
            FunctionTool.model_validate(tool.model_dump())
            for tool in request.tools or ()
            if isinstance(tool, FunctionToolParam)
        ],
        text=ResponseTextConfig(format=_text_format(request)),
        reasoning=Reasoning(effort=request.reasoning.effort if request.reasoning else None),
        store=request.store is not False,
        metadata=request.metadata or {},
    )


class _ResponseStream:
    """Grows the response from the turn's items, and says which events tell the client, numbered in order."""

    def __init__(self, response: Response) -> None:
        self.response = response
        self.started = False
        self._sequence = 0
        self._message: ResponseOutputMessage | None = None
        self._calls: dict[int, ResponseFunctionToolCall] = {}
        self._incomplete = False

    def numbered(self, event: Any) -> Any:
        event.sequence_number, self._sequence = self._sequence, self._sequence + 1
        return event

    def opening(self) -> list[ResponseStreamEvent]:
        """created, then in_progress, before anything else: snapshots of the response as it starts."""
        if self.started:
            return []
        self.started = True
        return [
            self.numbered(ResponseLifecycleEvent(type=kind, response=self.response.model_copy(deep=True)))
            for kind in ("response.created", "response.in_progress")
        ]

    def item(self, item: TurnItem) -> list[ResponseStreamEvent]:
        match item:
            case TurnText(text=text):
                return [self.numbered(event) for event in self._text(text)]
            case TurnToolCall(index=index, id=call_id, name=name):
                return [self.numbered(event) for event in self._call(index, call_id, name)]
            case TurnToolArguments(index=index, fragment=fragment):
                call = self._calls[index]
                call.arguments += fragment
                output_index = self.response.output.index(call)
                delta = ResponseFunctionCallArgumentsDeltaEvent(
                    item_id=call.id, output_index=output_index, delta=fragment
                )
                return [self.numbered(delta)]
        return []

    def _text(self, text: str) -> list[ResponseStreamEvent]:
        events: list[ResponseStreamEvent] = []
        message = self._message
        if message is None:
            message = self._message = ResponseOutputMessage(
                id="msg_" + secrets.token_hex(24), status="in_progress", content=[]
            )
            index = len(self.response.output)
            self.response.output.append(message)
            events += [
                ResponseOutputItemEvent(
                    type="response.output_item.added", output_index=index, item=message.model_copy(deep=True)
                ),
                ResponseContentPartEvent(
                    type="response.content_part.added",
                    item_id=message.id,
                    output_index=index,
                    content_index=0,
                    part=ResponseOutputText(text=""),
                ),
            ]
            message.content.append(ResponseOutputText(text=""))
        message.content[0].text += text
        index = self.response.output.index(message)
        return [*events, ResponseTextDeltaEvent(item_id=message.id, output_index=index, content_index=0, delta=text)]

    def _call(self, index: int, call_id: str, name: str) -> list[ResponseStreamEvent]:
        events = _close_message(self._message, self.response)
        self._message = None
        call = ResponseFunctionToolCall(
            id="fc_" + secrets.token_hex(24), status="in_progress", call_id=call_id, name=name, arguments=""
        )
        self._calls[index] = call
        self.response.output.append(call)
        added = ResponseOutputItemEvent(
            type="response.output_item.added", output_index=len(self.response.output) - 1, item=call.model_copy()
        )
        return [*events, added]

    def closing(self, end: TurnEnd) -> list[ResponseStreamEvent]:
        """The open items done, and the response's usage and status."""
        self._incomplete = end.stop_reason == "max_tokens"
        events = _close_message(self._message, self.response, incomplete=self._incomplete)
        for call in self._calls.values():
            call.status = "completed"
            index = self.response.output.index(call)
            events += [
                ResponseFunctionCallArgumentsDoneEvent(
                    item_id=call.id, output_index=index, name=call.name, arguments=call.arguments
                ),
                ResponseOutputItemEvent(type="response.output_item.done", output_index=index, item=call),
            ]
        self.response.usage = response_usage(end.usage)
        self.response.status = "incomplete" if self._incomplete else "completed"
        if self._incomplete:
            self.response.incomplete_details = IncompleteDetails(reason="max_output_tokens")
        else:
            self.response.completed_at = int(time.time())
        return [self.numbered(event) for event in events]

    def ended(self) -> ResponseLifecycleEvent:
        kind = "response.incomplete" if self._incomplete else "response.completed"
        return ResponseLifecycleEvent(type=kind, response=self.response)

    def failed(self, error: OpenAIError) -> ResponseLifecycleEvent:
        self.response.status = "failed"
        code = "rate_limit_exceeded" if error.status == 429 else "server_error"
        self.response.error = ResponseError(code=code, message=error.error.message)
        return self.numbered(ResponseLifecycleEvent(type="response.failed", response=self.response))


def _text_format(
    request: ResponseCreateParams,
) -> ResponseFormatText | ResponseFormatJSONObject | ResponseFormatTextJSONSchemaConfig:
    fmt = request.text.format if request.text else None
    if isinstance(fmt, ResponseFormatTextJSONSchemaConfigParam):
        return ResponseFormatTextJSONSchemaConfig(name=fmt.name, schema=fmt.schema_, strict=fmt.strict)
    return fmt or ResponseFormatText(type="text")


def _close_message(
    message: ResponseOutputMessage | None, response: Response, incomplete: bool = False
) -> list[ResponseStreamEvent]:
    if message is None or message.status != "in_progress":
        return []
    message.status = "incomplete" if incomplete else "completed"
    index = response.output.index(message)
    part = message.content[0]
    return [
        ResponseTextDoneEvent(item_id=message.id, output_index=index, content_index=0, text=part.text),
        ResponseContentPartEvent(
            type="response.content_part.done", item_id=message.id, output_index=index, content_index=0, part=part
        ),
        ResponseOutputItemEvent(type="response.output_item.done", output_index=index, item=message),
    ]


def response_usage(usage: Usage) -> ResponseUsage:
    prompt = prompt_tokens(usage)
    return ResponseUsage(
        input_tokens=prompt,
        input_tokens_details=InputTokensDetails(
            cached_tokens=usage.cache_read_input_tokens, cache_write_tokens=usage.cache_creation_input_tokens
        ),
        output_tokens=usage.output_tokens,
        output_tokens_details=OutputTokensDetails(reasoning_tokens=usage.output_tokens_details.thinking_tokens),
        total_tokens=prompt + usage.output_tokens,
    )


def output_messages(response: Response) -> list[ChatMessageParam]:
    """The response's output as chat messages, to continue the conversation from it."""
    text = "".join(
        part.text for item in response.output if isinstance(item, ResponseOutputMessage) for part in item.content
    )
    calls = [
        {"id": item.call_id, "type": "function", "function": {"name": item.name, "arguments": item.arguments}}
        for item in response.output
        if isinstance(item, ResponseFunctionToolCall)
    ]
    message: ChatMessageParam = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    return [message] if text or calls else []


async def response_object(
    job: ChatJob,
    request: ResponseCreateParams,
    runner: ClaudeRunner,
    report: TurnReport,
    store: Callable[[Response], None],
) -> Response:
    """The non-streaming answer: the stream's final response object (a failure after output began is a 502)."""
    final: Response | None = None
    async for item in response_events(job, request, runner, report, store):
        if isinstance(item, ResponseLifecycleEvent):
            final = item.response
    assert final is not None
    if final.status == "failed" and final.error is not None:
        raise OpenAIError(502, final.error.message, "server_error")
    return final
