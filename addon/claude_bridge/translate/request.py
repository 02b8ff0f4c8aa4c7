"""An OpenAI chat request as one Claude CLI invocation."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from ..claude import mcp
from ..claude.invocation import ClaudeInvocation, ContentBlockParam, HistoryMessage, ToolSpec
from ..openai.chat import (
    ChatCompletionAssistantMessageParam,
    ChatCompletionContentPartImage,
    ChatCompletionContentPartOther,
    ChatCompletionContentPartText,
    ChatCompletionCreateParams,
    ChatCompletionDeveloperMessageParam,
    ChatCompletionFunctionMessageParam,
    ChatCompletionNamedToolChoiceFunction,
    ChatCompletionNamedToolChoiceParam,
    ChatCompletionSystemMessageParam,
    ChatCompletionToolMessageParam,
    ChatCompletionUserMessageParam,
    MessageContent,
    ResponseFormatJSONObject,
    ResponseFormatJSONSchema,
)
from ..openai.errors import OpenAIError
from .images import image_block
from .model_map import ModelMap

HistoryMode = Literal["resume", "flatten"]


@dataclass(frozen=True)
class ChatJob:
    """What the backend needs to answer one chat request."""

    requested_model: str
    invocation: ClaudeInvocation
    stream: bool
    include_usage: bool
    stop: tuple[str, ...]
    # Tool calls end the turn after the first one when the client asked for one call at a time.
    parallel_tool_calls: bool = True
    # A request made with the legacy `functions` gets a legacy `function_call` back.
    legacy_functions: bool = False
    reasoning_content: bool = False
    # Who asks (a hash of its key): a live session continues only its own caller's conversation.
    caller: str = ""


# OpenAI's reasoning efforts as the CLI's; "none" also turns thinking off.
EFFORTS = {"none": "low", "minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "xhigh"}


def chat_job(
    request: ChatCompletionCreateParams,
    models: ModelMap,
    history_mode: HistoryMode,
    reasoning_content: bool = False,
    messages_param: str = "messages",
) -> ChatJob:
    """`messages_param`: the client's name for the messages when they were translated from another endpoint's
    (`input`, `prompt`), which its errors then name (see `_Place`)."""
    if request.n is not None and request.n > 1:
        raise OpenAIError(400, "claude-bridge returns one choice per request; `n` must be 1.", param="n")
    tools = _tools(request)
    system_parts = [text for text in _system_texts(request, messages_param) if text]
    if instruction := _tool_choice_instruction(request, tools):
        system_parts.append(instruction)
    conversation = _conversation(request, messages_param)
    if not conversation or conversation[-1].role != "user":
        raise OpenAIError(
            400,
            "The last message must be a user or tool message: Claude Code answers a user turn and cannot "
            "continue a prefilled assistant message.",
            param=messages_param,
        )
    *history, prompt = conversation
    replay = None
    if history and history[-1].role == "assistant" and _has(prompt, "tool_result"):
        # Tool results count only after their calls came the same way (stdin), so the calls are replayed there.
        replay = history.pop()
    if history and history_mode == "flatten":
        prompt = HistoryMessage("user", _flatten(history, prompt))
        history = []
    stop = (request.stop,) if isinstance(request.stop, str) else tuple(request.stop or ())
    invocation = ClaudeInvocation(
        model=models.resolve(request.model),
        prompt=prompt.content,
        system_prompt="\n\n".join(system_parts) or None,
        history=tuple(history),
        replay=replay,
        max_output_tokens=request.max_completion_tokens or request.max_tokens,
        tools=() if _choice(request) == "none" else tools,
        json_schema=_json_schema(request),
        effort=EFFORTS.get(request.reasoning_effort or ""),
        thinking=request.reasoning_effort != "none",
    )
    return ChatJob(
        requested_model=request.model,
        invocation=invocation,
        stream=bool(request.stream),
        include_usage=bool(request.stream_options and request.stream_options.include_usage),
        stop=stop,
        parallel_tool_calls=request.parallel_tool_calls is not False and request.functions is None,
        legacy_functions=request.functions is not None and request.tools is None,
        reasoning_content=reasoning_content,
    )


@dataclass(frozen=True)
class _Place:
    """Where a message is, for its errors' `param`: `messages[3].content` in a chat request; the client's own field
    (`input`, `prompt`) alone when the messages were translated from another endpoint's, whose indices differ."""

    field: str
    index: int

    def param(self, rest: str = "") -> str:
        return f"{self.field}[{self.index}]{rest}" if self.field == "messages" else self.field


def _system_texts(request: ChatCompletionCreateParams, field: str) -> list[str]:
    return [
        _text(message.content, _Place(field, index))
        for index, message in enumerate(request.messages)
        if isinstance(message, ChatCompletionSystemMessageParam | ChatCompletionDeveloperMessageParam)
    ]


def _conversation(request: ChatCompletionCreateParams, field: str) -> list[HistoryMessage]:
    """User and assistant turns as Anthropic messages: tool calls as tool_use, tool messages as tool_result."""
    conversation: list[HistoryMessage] = []
    legacy_calls: dict[str, str] = {}  # function name -> id of its latest legacy call
    for index, message in enumerate(request.messages):
        at = _Place(field, index)
        match message:
            case ChatCompletionUserMessageParam():
                role, blocks = "user", _blocks(message.content, at)
            case ChatCompletionAssistantMessageParam():
                role, blocks = "assistant", _blocks(message.content, at) + _tool_uses(message, at, legacy_calls)
            case ChatCompletionToolMessageParam():
                role, blocks = "user", [_tool_result(message.tool_call_id, _blocks(message.content, at))]
            case ChatCompletionFunctionMessageParam():
                call_id = legacy_calls.get(message.name) or _legacy_call_id(message.name)
                role, blocks = "user", [_tool_result(call_id, _blocks(message.content, at))]
            case _:
                continue  # system and developer messages: the system prompt
        if not blocks:
            continue
        if conversation and conversation[-1].role == role:
            # One turn per role change, as the API sees it; the CLI would otherwise merge or pad them its own way.
            blocks = conversation.pop().content + blocks
        # Tool results must open their turn.
        blocks.sort(key=lambda block: block["type"] != "tool_result")
        conversation.append(HistoryMessage(role, blocks))
    return conversation


def _tool_uses(
    message: ChatCompletionAssistantMessageParam, at: _Place, legacy_calls: dict[str, str]
) -> list[ContentBlockParam]:
    calls = [(call.id, call.function, at.param(f".tool_calls[{n}]")) for n, call in enumerate(message.tool_calls or ())]
    if message.function_call is not None:
        legacy_calls[message.function_call.name] = _legacy_call_id(message.function_call.name)
        calls.append((legacy_calls[message.function_call.name], message.function_call, at.param(".function_call")))
    return [
        {
            "type": "tool_use",
            "id": call_id,
            "name": mcp.served_name(function.name),
            "input": _arguments(function.arguments, param),
        }
        for call_id, function, param in calls
    ]


def _legacy_call_id(name: str) -> str:
    return "call_" + re.sub(r"[^a-zA-Z0-9_-]", "_", name)


def _arguments(arguments: str, param: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise OpenAIError(400, "Tool call arguments must be a JSON object.", param=f"{param}.function.arguments")
    return value


def _tool_result(call_id: str, content: list[ContentBlockParam]) -> ContentBlockParam:
    block: ContentBlockParam = {"type": "tool_result", "tool_use_id": call_id}
    if content:
        block["content"] = content
    return block


def _has(message: HistoryMessage, block_type: str) -> bool:
    return any(block["type"] == block_type for block in message.content)


def _tools(request: ChatCompletionCreateParams) -> tuple[ToolSpec, ...]:
    functions = [tool.function for tool in request.tools or ()] + list(request.functions or ())
    specs = {
        function.name: ToolSpec(
            name=function.name,
            description=function.description or "",
            input_schema=function.parameters or {"type": "object", "properties": {}},
        )
        for function in functions
    }
    return tuple(specs.values())


def _choice(request: ChatCompletionCreateParams) -> str | None:
    """The tool choice as "none", "auto", "required" or a function's name (legacy `function_call` too)."""
    choice = request.tool_choice if request.tool_choice is not None else request.function_call
    match choice:
        case ChatCompletionNamedToolChoiceParam(function=function) | (
            ChatCompletionNamedToolChoiceFunction() as function
        ):
            return function.name
        case str():
            return choice
    return None


def _tool_choice_instruction(request: ChatCompletionCreateParams, tools: tuple[ToolSpec, ...]) -> str | None:
    """The CLI has no tool_choice: `required` and a named function become an instruction (an approximation)."""
    choice = _choice(request)
    if choice in (None, "auto", "none") or not tools:
        return None
    if choice == "required":
        return "In this reply you must call at least one of the available tools."
    if choice not in {tool.name for tool in tools}:
        raise OpenAIError(400, f"tool_choice names {choice!r}, which is not among the tools.", param="tool_choice")
    return f"In this reply you must call the tool {mcp.served_name(choice)}."


def _json_schema(request: ChatCompletionCreateParams) -> dict[str, Any] | None:
    match request.response_format:
        case ResponseFormatJSONSchema(json_schema=spec):
            return spec.schema_ or {"type": "object"}
        case ResponseFormatJSONObject():
            return {"type": "object"}
    return None


def _blocks(content: MessageContent | None, at: _Place) -> list[ContentBlockParam]:
    """Content as Anthropic blocks, one per OpenAI part; blank text parts are dropped (the API refuses them)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content.strip() else []
    blocks = []
    for part_index, part in enumerate(content):
        param = at.param(f".content[{part_index}]")
        match part:
            case ChatCompletionContentPartText(text=text) if text.strip():
                blocks.append({"type": "text", "text": text})
            case ChatCompletionContentPartImage():
                blocks.append(image_block(part, param))
            case ChatCompletionContentPartOther():
                raise OpenAIError(
                    400,
                    f"Content parts of type {part.type!r} are not supported by claude-bridge; send text or image_url.",
                    param=param,
                )
    return blocks


def _text(content: MessageContent, at: _Place) -> str:
    """Text only (system and developer messages): Claude's system prompt cannot hold images."""
    blocks = _blocks(content, at)
    if any(block["type"] != "text" for block in blocks):
        raise OpenAIError(400, "System and developer messages can only hold text.", param=at.param(".content"))
    return "\n".join(block["text"] for block in blocks)


def _flatten(history: list[HistoryMessage], prompt: HistoryMessage) -> list[ContentBlockParam]:
    """The fallback when `--resume` is off: earlier turns as labelled text ahead of the new message.

    Images of earlier turns follow the transcript, each named where it stood (`[image 1]`).
    """
    images: list[ContentBlockParam] = []
    turns = []
    for message in history:
        parts = []
        for block in message.content:
            match block["type"]:
                case "text":
                    parts.append(block["text"])
                case "image":
                    images.append(block)
                    parts.append(f"[image {len(images)}]")
                case "tool_use":
                    parts.append(
                        f"[called {mcp.client_name(block['name'])}({json.dumps(block['input'])}), id {block['id']}]"
                    )
                case "tool_result":
                    texts = [part.get("text", "[image]") for part in block.get("content", ())]
                    parts.append(f"[result of {block['tool_use_id']}: {' '.join(texts)}]")
        turns.append(f"{message.role.capitalize()}: " + "\n".join(parts))
    preface = "The conversation so far:\n\n" + "\n\n".join(turns) + "\n\nThe user's new message follows."
    return [{"type": "text", "text": preface}, *images, *prompt.content]


def parse_chat_request(body: bytes) -> ChatCompletionCreateParams:
    return parse_request(body, ChatCompletionCreateParams)


def parse_request[Model: BaseModel](body: bytes, model: type[Model]) -> Model:
    """The request body validated, or a 400 naming the offending field as OpenAI does."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise OpenAIError(
            400,
            "We could not parse the JSON body of your request. The body must be a JSON object "
            "(send it with `Content-Type: application/json`).",
        ) from None
    if not isinstance(data, dict):
        raise OpenAIError(400, "The request body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as e:
        # Of a union's alternatives, the error that got deepest into the value names the real problem.
        error = max(e.errors(include_url=False), key=lambda error: len(error["loc"]))
        param = _param_path(error["loc"], data, missing=error["type"] == "missing")
        raise OpenAIError(400, f"Invalid value for '{param}': {error['msg']}.", param=param) from None


def _param_path(loc: tuple[int | str, ...], data: Any, missing: bool) -> str:
    """`('messages', 0, 'user', 'content')` as OpenAI writes it: `messages[0].content`.

    pydantic adds the labels of union members to the location; only steps that exist in the request
    (or the field at the end, when it is missing) are part of the path a person can look for.
    """
    path, node = "", data
    for position, part in enumerate(loc):
        exists = (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        )
        if not exists and (position < len(loc) - 1 or not missing or not isinstance(node, dict)):
            continue
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        node = node[part] if exists else None
    return path
