"""A response schema reaches the CLI on stdin (in the `initialize` control request), not on its command line:
no other local user can read it in /proc, and its size is not bounded by the kernel's 128 KiB for an argument."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any

import openai
import pytest
from test_tools_e2e import ASK, WEATHER, served

from fake_anthropic import Gate, ToolUse, conversation

APIS = ["chat", "responses"]


def big_schema(kib: int) -> dict[str, Any]:
    """An object schema of about `kib` KiB: many described string fields, `name` required."""
    fields = {f"field_{i:05d}": {"type": "string", "description": "d" * 200} for i in range(kib * 1024 // 240)}
    return {"type": "object", "properties": {"name": {"type": "string"}, **fields}, "required": ["name"]}


def ask(bridge, api: str, schema: dict[str, Any], **fields: Any) -> Any:
    """The request's answer parsed from JSON, asked with `schema` as the response format of `api`."""
    client = bridge.client()
    if api == "responses":
        text_format = {"type": "json_schema", "name": "answer", "schema": schema}
        return json.loads(client.responses.create(model="gpt-5", input="hi", text={"format": text_format}).output_text)
    response_format = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    completion = client.chat.completions.create(
        model="sonnet", messages=fields.pop("messages", ASK), response_format=response_format, **fields
    )
    return json.loads(completion.choices[0].message.content)


def command_lines(bridge) -> list[bytes]:
    return [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in bridge.claude_children()]


def test_the_schema_is_on_no_command_line_while_the_cli_runs(bridge, fake):
    marker = f"secret_{uuid.uuid4().hex}"
    schema = {"type": "object", "properties": {marker: {"type": "string"}}, "required": [marker]}
    gate = Gate(chunks=("thinking",))
    fake.enqueue(gate, ToolUse((("StructuredOutput", {marker: "Paris"}),)))
    answers: list[Any] = []
    asking = threading.Thread(target=lambda: answers.append(ask(bridge, "chat", schema)))
    asking.start()
    try:
        assert gate.reached.wait(30)
        seen = command_lines(bridge)
    finally:
        gate.release.set()
        asking.join(30)
    assert len(seen) == 1 and b"--json-schema" not in seen[0] and marker.encode() not in seen[0]
    assert answers == [{marker: "Paris"}]
    assert served(fake.requests[0].body)["StructuredOutput"]["input_schema"] == schema


@pytest.mark.parametrize("api", APIS)
def test_a_215_kib_schema_is_answered(bridge, fake, api):
    schema = big_schema(215)
    assert len(json.dumps(schema)) > 215 * 1024
    fake.enqueue(ToolUse((("StructuredOutput", {"name": "Paris"}),)))
    assert ask(bridge, api, schema) == {"name": "Paris"}
    assert served(fake.requests[0].body)["StructuredOutput"]["input_schema"] == schema
    bridge.wait_idle()


@pytest.mark.parametrize(("api", "param"), [("chat", "response_format"), ("responses", "text.format")])
def test_a_schema_claude_code_cannot_use_is_a_400_naming_the_field(bridge, fake, api, param):
    schema = {"type": "object", "properties": {"city": {"type": "no such type"}}}
    with pytest.raises(openai.BadRequestError) as caught:
        ask(bridge, api, schema)
    assert caught.value.param == param and caught.value.code == "invalid_json_schema"
    assert "JSON schema" in caught.value.message
    bridge.wait_idle()


def test_with_a_schema_the_clients_tools_are_still_served_and_called(bridge, fake):
    fake.enqueue(ToolUse((("get_weather", {"city": "Paris"}),)))
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    response_format = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    completion = bridge.client().chat.completions.create(
        model="sonnet", messages=ASK, tools=[WEATHER], response_format=response_format
    )
    (call,) = completion.choices[0].message.tool_calls
    assert (call.function.name, completion.choices[0].finish_reason) == ("get_weather", "tool_calls")
    assert {"mcp__app__get_weather", "StructuredOutput"} <= set(served(fake.requests[0].body))


def test_with_a_schema_the_earlier_turns_still_reach_the_api(bridge, fake):
    fake.enqueue(ToolUse((("StructuredOutput", {"name": "Rome"}),)))
    messages = [*ASK, {"role": "assistant", "content": "Sunny."}, {"role": "user", "content": "and Rome?"}]
    assert ask(bridge, "chat", {"type": "object"}, messages=messages) == {"name": "Rome"}
    texts = [block.get("text") for _role, blocks in conversation(fake.requests[0].body) for block in blocks]
    assert texts[0] == "weather in Paris?" and "Sunny." in texts and texts[-1] == "and Rome?"
