"""An OpenAI answer assembled from what the client received: streamed or whole, it reads the same.

Chat Completions and legacy completions streams are `data:` chunks ended by `[DONE]`; a Responses stream is named
events whose last (`response.completed`, `.incomplete` or `.failed`) carries the whole response. Each chunk is read
with the bridge's own models (openai/); one that does not fit is counted, not fatal, unless none fits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from ..openai import chat, completions, responses
from ..openai.errors import ErrorResponse
from ..routes import Endpoint
from . import sse
from .page import Page, pretty_json

_KIND = {Endpoint.CHAT: "Chat Completions", Endpoint.RESPONSES: "Responses", Endpoint.COMPLETIONS: "Completions"}


@dataclass
class ToolCall:
    call_id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class Choice:
    text: str = ""
    reasoning: str = ""
    calls: dict[int, ToolCall] = field(default_factory=dict)
    finish: str | None = None


@dataclass
class Answer:
    """What the client got, whichever way it came."""

    model: str = ""
    choices: dict[int, Choice] = field(default_factory=dict)
    usage: str | None = None
    status: str | None = None
    error: str | None = None
    events: int = 0
    unread: int = 0
    """Stream events that are not this API's (a newer API's, or a broken stream's)."""
    ended: bool = False

    def choice(self, index: int = 0) -> Choice:
        return self.choices.setdefault(index, Choice())


def render(endpoint: Endpoint, data: bytes, content_type: str | None) -> str:
    """The answer of a Chat Completions, Responses or legacy completions request, or the error it got."""
    streamed = content_type == "text/event-stream"
    answer = Answer()
    if streamed:
        _read_stream(endpoint, sse.parse(data), answer)
    else:
        _read_whole(endpoint, json.loads(data), answer)
    return _page(endpoint, answer, streamed).text()


def _read_stream(endpoint: Endpoint, events: list[sse.ServerSentEvent], answer: Answer) -> None:
    for event in events:
        answer.events += 1
        if event.data == "[DONE]" and endpoint is not Endpoint.RESPONSES:
            answer.ended = True
            continue
        try:
            _read_event(endpoint, json.loads(event.data), answer)
        except (ValueError, ValidationError):  # pydantic's ValidationError is a ValueError; named for the reader
            answer.unread += 1
    if events and answer.unread == len(events):
        raise ValueError(f"none of the {len(events)} events is a {_KIND[endpoint]} stream event")


def _read_event(endpoint: Endpoint, event: Any, answer: Answer) -> None:
    if not isinstance(event, dict):
        raise ValueError("an event that is not a JSON object")
    if _is_error(event) and endpoint is not Endpoint.RESPONSES:
        answer.error, answer.ended = _error(event), True
    elif endpoint is Endpoint.CHAT:
        _chat_chunk(chat.ChatCompletionChunk.model_validate(event), answer)
    elif endpoint is Endpoint.COMPLETIONS:
        _legacy(completions.Completion.model_validate(event), answer)
    else:
        _responses_event(event, answer)


def _read_whole(endpoint: Endpoint, body: Any, answer: Answer) -> None:
    if _is_error(body):
        answer.error = _error(body)
        return
    match endpoint:
        case Endpoint.CHAT:
            _chat_completion(chat.ChatCompletion.model_validate(body), answer)
        case Endpoint.COMPLETIONS:
            _legacy(completions.Completion.model_validate(body), answer)
        case Endpoint.RESPONSES:
            _response(responses.Response.model_validate(body), answer)
    answer.ended = True


def _is_error(body: Any) -> bool:
    """An error envelope, not an object with an `error` field of its own (a Responses object has one)."""
    return isinstance(body, dict) and isinstance(body.get("error"), dict) and "id" not in body


def _error(body: dict[str, Any]) -> str:
    error = ErrorResponse.model_validate(body).error
    code = f", {error.code}" if error.code else ""
    param = f" (param {error.param})" if error.param else ""
    return f"{error.type}{code}: {error.message}{param}"


# --- Chat Completions ------------------------------------------------------------------------------


def _chat_chunk(chunk: chat.ChatCompletionChunk, answer: Answer) -> None:
    answer.model = chunk.model
    for streamed in chunk.choices:
        choice, delta = answer.choice(streamed.index), streamed.delta
        choice.text += delta.content or ""
        choice.reasoning += delta.reasoning_content or ""
        fragments = [(call.index, call.id, call.function) for call in delta.tool_calls or ()]
        if delta.function_call:
            fragments.append((0, None, delta.function_call))
        for index, call_id, function in fragments:
            call = choice.calls.setdefault(index, ToolCall())
            call.call_id, call.name = call_id or call.call_id, function.name or call.name
            call.arguments += function.arguments or ""
        choice.finish = streamed.finish_reason or choice.finish
    if chunk.usage:
        answer.usage = _chat_usage(chunk.usage)


def _chat_completion(completion: chat.ChatCompletion, answer: Answer) -> None:
    answer.model = completion.model
    for whole in completion.choices:
        choice, message = answer.choice(whole.index), whole.message
        choice.text, choice.reasoning, choice.finish = (
            message.content or "",
            message.reasoning_content or "",
            whole.finish_reason,
        )
        calls = [ToolCall(call.id, call.function.name, call.function.arguments) for call in message.tool_calls or ()]
        if message.function_call:
            calls.append(ToolCall("", message.function_call.name, message.function_call.arguments))
        choice.calls = dict(enumerate(calls))
    answer.usage = _chat_usage(completion.usage)


def _chat_usage(usage: chat.CompletionUsage) -> str:
    return (
        f"prompt {usage.prompt_tokens} (cached {usage.prompt_tokens_details.cached_tokens}) · completion "
        f"{usage.completion_tokens} (reasoning {usage.completion_tokens_details.reasoning_tokens}) · total "
        f"{usage.total_tokens}"
    )


def _legacy(completion: completions.Completion, answer: Answer) -> None:
    answer.model = completion.model
    for part in completion.choices:
        choice = answer.choice(part.index)
        choice.text += part.text
        choice.finish = part.finish_reason or choice.finish
    if completion.usage:
        answer.usage = _chat_usage(completion.usage)


# --- Responses -------------------------------------------------------------------------------------

_RESPONSE_EVENTS: dict[str, type[BaseModel]] = {
    **dict.fromkeys(
        ("response.created", "response.in_progress", "response.completed", "response.incomplete", "response.failed"),
        responses.ResponseLifecycleEvent,
    ),
    "response.output_item.added": responses.ResponseOutputItemEvent,
    "response.output_item.done": responses.ResponseOutputItemEvent,
    "response.content_part.added": responses.ResponseContentPartEvent,
    "response.content_part.done": responses.ResponseContentPartEvent,
    "response.output_text.delta": responses.ResponseTextDeltaEvent,
    "response.output_text.done": responses.ResponseTextDoneEvent,
    "response.function_call_arguments.delta": responses.ResponseFunctionCallArgumentsDeltaEvent,
    "response.function_call_arguments.done": responses.ResponseFunctionCallArgumentsDoneEvent,
}


def _responses_event(event: dict[str, Any], answer: Answer) -> None:
    """Deltas build the output as it came; the closing event's whole response then stands for it."""
    if event.get("type") == "error":
        answer.error = f"{event.get('code') or 'error'}: {event.get('message')}"
        answer.ended = True
        return
    model = _RESPONSE_EVENTS.get(str(event.get("type")))
    if model is None:
        raise ValueError(f"an event of type {event.get('type')!r}")
    match model.model_validate(event):
        case responses.ResponseLifecycleEvent(type=kind, response=response):
            if kind in ("response.completed", "response.incomplete", "response.failed"):
                _response(response, answer)
                answer.ended = True
            else:
                answer.model, answer.status = response.model, response.status
        case responses.ResponseOutputItemEvent(output_index=index, item=item):
            if isinstance(item, responses.ResponseFunctionToolCall):
                answer.choice().calls[index] = ToolCall(item.call_id, item.name, item.arguments)
        case responses.ResponseTextDeltaEvent(delta=delta):
            answer.choice().text += delta
        case responses.ResponseFunctionCallArgumentsDeltaEvent(output_index=index, delta=delta):
            answer.choice().calls.setdefault(index, ToolCall()).arguments += delta


def _response(response: responses.Response, answer: Answer) -> None:
    answer.model, answer.status = response.model, response.status
    choice = answer.choices[0] = Choice()
    for index, item in enumerate(response.output):
        if isinstance(item, responses.ResponseFunctionToolCall):
            choice.calls[index] = ToolCall(item.call_id, item.name, item.arguments)
        else:
            choice.text += "".join(part.text for part in item.content)
    if response.incomplete_details:
        choice.finish = f"incomplete: {response.incomplete_details.reason}"
    if response.error:
        answer.error = f"{response.error.code}: {response.error.message}"
    if response.usage:
        usage = response.usage
        answer.usage = (
            f"input {usage.input_tokens} (cached {usage.input_tokens_details.cached_tokens}, cache write "
            f"{usage.input_tokens_details.cache_write_tokens}) · output {usage.output_tokens} (reasoning "
            f"{usage.output_tokens_details.reasoning_tokens}) · total {usage.total_tokens}"
        )


# --- the page --------------------------------------------------------------------------------------


def _page(endpoint: Endpoint, answer: Answer, streamed: bool) -> Page:
    page = Page()
    how = f"streamed in {answer.events} events" if streamed else "not streamed"
    if answer.choices or answer.model:
        page.line(f"{_KIND[endpoint]} answer from {answer.model or 'an unnamed model'}, {how}")
    else:
        page.line(f"{_KIND[endpoint]} error, {how}")
    if answer.status:
        page.line(f"status: {answer.status}")
    for index, choice in sorted(answer.choices.items()):
        _choice(page, choice, f"choice {index}: " if len(answer.choices) > 1 else "")
    if answer.error:
        page.section("error")
        page.block(answer.error)
    notes = [f"usage: {answer.usage}"] if answer.usage else []
    if streamed and not answer.ended:
        notes.append("the stream ends without its last event: the answer was cut short")
    if answer.unread:
        notes.append(f"{answer.unread} of {answer.events} events not read (not of this API as the bridge knows it)")
    if notes:
        page.line()
        for note in notes:
            page.line(note)
    return page


def _choice(page: Page, choice: Choice, prefix: str) -> None:
    if choice.reasoning:
        page.section(f"{prefix}reasoning")
        page.block(choice.reasoning)
    if choice.text or not choice.calls:
        page.section(f"{prefix}answer")
        page.block(choice.text)
    for _, call in sorted(choice.calls.items()):
        page.section(f"{prefix}tool call {call.name}" + (f" ({call.call_id})" if call.call_id else ""))
        page.block(pretty_json(call.arguments))
    if choice.finish:
        page.line()
        page.line(f"{prefix}finish reason: {choice.finish}")
