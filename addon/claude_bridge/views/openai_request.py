"""An OpenAI request as a conversation: who said what, the tools offered, and the settings the bridge applied.

The requests are read with the bridge's own models (openai/), so the view shows what the bridge understood; the
fields those models leave out are listed by name as not used.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from ..openai import chat, completions, responses
from ..routes import Endpoint
from .page import Page, first_line, image_url, pretty_json


def render(endpoint: Endpoint, data: bytes) -> str | None:
    raw = json.loads(data)
    if not isinstance(raw, dict):
        raise ValueError("the body is not a JSON object")
    page = Page()
    match endpoint:
        case Endpoint.CHAT:
            params: BaseModel = chat.ChatCompletionCreateParams.model_validate(raw)
            _chat(page, params)
        case Endpoint.RESPONSES:
            params = responses.ResponseCreateParams.model_validate(raw)
            _responses(page, params)
        case Endpoint.COMPLETIONS:
            params = completions.CompletionCreateParams.model_validate(raw)
            _legacy(page, params)
        case _:
            return None
    unused = sorted(set(raw) - _field_names(type(params)))
    if unused:
        page.line()
        page.line(f"not used by the bridge: {', '.join(unused)}")
    return page.text()


def _field_names(model: type[BaseModel]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def _settings(page: Page, title: str, params: BaseModel, *names: str, **extra: Any) -> None:
    """The heading line, then the settings the client gave (not the defaults), on one line."""
    page.line(title)
    values = {name: getattr(params, name) for name in names if name in params.model_fields_set} | extra
    given = [f"{name} {_setting(value)}" for name, value in values.items() if value is not None]
    if given:
        page.line(" · ".join(given))


def _setting(value: Any) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(exclude_none=True, by_alias=True)
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


# --- Chat Completions ------------------------------------------------------------------------------


def _chat(page: Page, params: chat.ChatCompletionCreateParams) -> None:
    _settings(
        page,
        f"Chat Completions request for {params.model}, {'streamed' if params.stream else 'not streamed'}",
        params,
        *("max_tokens", "max_completion_tokens", "stop", "n", "reasoning_effort", "tool_choice"),
        *("parallel_tool_calls", "function_call"),
        include_usage=params.stream_options.include_usage if params.stream_options else None,
    )
    for message in params.messages:
        _chat_message(page, message)
    tools = [tool.function for tool in params.tools or ()] + list(params.functions or ())
    _tools(page, [(tool.name, tool.description, tool.parameters) for tool in tools])
    match params.response_format:
        case chat.ResponseFormatJSONSchema(json_schema=schema):
            _schema(page, schema.name, schema.strict, schema.schema_)
        case chat.ResponseFormatJSONObject():
            page.section("response format: json_object")


def _chat_message(page: Page, message: Any) -> None:
    title = message.role
    if getattr(message, "name", None):
        title += f" {message.name}"
    if isinstance(message, chat.ChatCompletionToolMessageParam):
        title += f", result of {message.tool_call_id}"
    page.section(title)
    if message.content is not None:
        _chat_content(page, message.content)
    if isinstance(message, chat.ChatCompletionAssistantMessageParam):
        for call in message.tool_calls or ():
            _call(page, call.function.name, call.id, call.function.arguments)
        if message.function_call:
            _call(page, message.function_call.name, "", message.function_call.arguments)


def _chat_content(page: Page, content: chat.MessageContent) -> None:
    if isinstance(content, str):
        page.block(content)
        return
    for part in content:
        match part:
            case chat.ChatCompletionContentPartText(text=text):
                page.block(text)
            case chat.ChatCompletionContentPartImage(image_url=image):
                detail = f", detail {image.detail}" if image.detail else ""
                page.line(f"[image: {image_url(image.url)}{detail}]", 2)
            case _:
                page.line(f"[{part.type} part]", 2)


def _call(page: Page, name: str, call_id: str, arguments: str) -> None:
    page.line(f"→ calls {name}" + (f" ({call_id})" if call_id else ""), 2)
    page.block(pretty_json(arguments), 4)


def _tools(
    page: Page, tools: list[tuple[str, str | None, dict[str, Any] | None]], hosted: tuple[str, ...] = ()
) -> None:
    """One line a tool: its name, its arguments (* required) and its description."""
    if not tools and not hosted:
        return
    page.section(f"tools offered: {len(tools) + len(hosted)}")
    for kind in hosted:
        page.line(f"{kind} (a hosted tool: not served)", 2)
    for name, description, parameters in tools:
        properties = (parameters or {}).get("properties") or {}
        required = set((parameters or {}).get("required") or ())
        arguments = ", ".join(f"{key}{'*' if key in required else ''}" for key in properties)
        page.line(f"{name}({arguments})" + (f": {first_line(description)}" if description else ""), 2)


def _schema(page: Page, name: str, strict: bool | None, schema: dict[str, Any] | None) -> None:
    page.section(f"response format: json_schema {name}{' (strict)' if strict else ''}")
    page.block(pretty_json(schema or {}))


# --- Responses -------------------------------------------------------------------------------------


def _responses(page: Page, params: responses.ResponseCreateParams) -> None:
    _settings(
        page,
        f"Responses request for {params.model}, {'streamed' if params.stream else 'not streamed'}",
        params,
        *("previous_response_id", "store", "max_output_tokens", "reasoning", "tool_choice", "parallel_tool_calls"),
    )
    if params.instructions is not None:
        page.section("instructions")
        page.block(params.instructions)
    if isinstance(params.input, str):
        page.section("user")
        page.block(params.input)
    else:
        for item in params.input:
            _input_item(page, item)
    functions = [tool for tool in params.tools or () if isinstance(tool, responses.FunctionToolParam)]
    hosted = tuple(tool.type for tool in params.tools or () if isinstance(tool, responses.OtherToolParam))
    _tools(page, [(tool.name, tool.description, tool.parameters) for tool in functions], hosted)
    match params.text.format if params.text else None:
        case responses.ResponseFormatTextJSONSchemaConfigParam(name=name, strict=strict, schema_=schema):
            _schema(page, name, strict, schema)
        case chat.ResponseFormatJSONObject():
            page.section("response format: json_object")


def _input_item(page: Page, item: Any) -> None:
    match item:
        case responses.ResponseInputMessage(role=role, content=content):
            page.section(role)
            _responses_content(page, content)
        case responses.ResponseFunctionToolCallParam(name=name, call_id=call_id, arguments=arguments):
            page.section("assistant")
            _call(page, name, call_id, arguments)
        case responses.ResponseFunctionCallOutput(call_id=call_id, output=output):
            page.section(f"tool, result of {call_id}")
            _responses_content(page, output)
        case responses.ResponseItemReference(id=item_id):
            page.section(f"item {item_id} (a reference to an earlier response's item)")
        case _:
            page.section(f"{item.type} item (not used)")


def _responses_content(page: Page, content: str | list[Any]) -> None:
    if isinstance(content, str):
        page.block(content)
        return
    for part in content:
        match part:
            case responses.ResponseInputText(text=text):
                page.block(text)
            case responses.ResponseInputImage(image_url=url, detail=detail):
                shown = image_url(url) if url else "a file id"
                page.line(f"[image: {shown}{f', detail {detail}' if detail else ''}]", 2)
            case _:
                page.line(f"[{part.type} part]", 2)


# --- legacy completions ----------------------------------------------------------------------------


def _legacy(page: Page, params: completions.CompletionCreateParams) -> None:
    _settings(
        page,
        f"Completions (legacy) request for {params.model}, {'streamed' if params.stream else 'not streamed'}",
        params,
        *("max_tokens", "stop", "n", "echo"),
    )
    prompts = [params.prompt] if isinstance(params.prompt, str) else params.prompt
    for number, prompt in enumerate(prompts, 1):
        page.section("prompt" if len(prompts) == 1 else f"prompt {number}")
        page.block(prompt)
    if params.suffix is not None:
        page.section("suffix")
        page.block(params.suffix)
