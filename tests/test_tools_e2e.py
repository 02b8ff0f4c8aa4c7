"""Tools, structured output and reasoning through the bridge, with the fake API playing the model."""

from __future__ import annotations

import json

import openai
import pytest
from pydantic import BaseModel

from fake_anthropic import Reply, Thinking, ToolUse, conversation, system_text

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
ASK = [{"role": "user", "content": "weather in Paris?"}]


def served(body: dict) -> dict[str, dict]:
    """The tools the model was shown, by name, without the CLI's own placeholder."""
    return {tool["name"]: tool for tool in body.get("tools", []) if tool["name"] != "DeferredToolPlaceholder"}


def test_two_step_tool_loop_non_streaming(bridge, fake):
    client = bridge.client()
    fake.enqueue(ToolUse((("get_weather", {"city": "Paris", "unit": "c"}),), text="Let me check."))
    first = client.chat.completions.create(model="gpt-4o", messages=ASK, tools=[WEATHER])
    (call,) = first.choices[0].message.tool_calls
    assert first.choices[0].finish_reason == "tool_calls"
    assert first.choices[0].message.content == "Let me check."
    assert (call.type, call.function.name) == ("function", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "c"}
    tool = served(fake.requests[0].body)["mcp__app__get_weather"]
    assert tool["input_schema"] == WEATHER["function"]["parameters"]
    assert tool["description"] == "Current weather for a city"
    assert set(served(fake.requests[0].body)) == {"mcp__app__get_weather"}, "none of the CLI's own tools"

    fake.enqueue(Reply(("It is sunny.",)))
    follow_up = [*ASK, first.choices[0].message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21C"}]  # fmt: skip
    second = client.chat.completions.create(model="gpt-4o", messages=follow_up, tools=[WEATHER])
    assert second.choices[0].message.content == "It is sunny."
    assert second.choices[0].finish_reason == "stop"
    use = {"type": "tool_use", "id": call.id, "name": "mcp__app__get_weather", "input": {"city": "Paris", "unit": "c"}}
    result = {"type": "tool_result", "tool_use_id": call.id, "content": [{"type": "text", "text": "Sunny, 21C"}]}
    assert conversation(fake.requests[1].body) == [
        ("user", [{"type": "text", "text": "weather in Paris?"}]),
        # The CLI pads a resumed history that ends with a user turn before the replayed call (see README).
        ("assistant", [{"type": "text", "text": "No response requested."}]),
        ("assistant", [{"type": "text", "text": "Let me check."}, use]),
        ("user", [result]),
    ]
    assert bridge.claude_children() == []


def test_streamed_tool_calls_come_as_openai_fragments(bridge, fake):
    fake.enqueue(ToolUse((("get_weather", {"city": "Paris"}), ("get_time", {})), fragment_chars=5))
    stream = bridge.client().chat.completions.create(model="sonnet", messages=ASK, tools=[WEATHER, TIME], stream=True)
    fragments = [call for chunk in stream if chunk.choices for call in chunk.choices[0].delta.tool_calls or ()]
    firsts = [f for f in fragments if f.id is not None]
    assert [(f.index, f.type, f.function.name, f.function.arguments) for f in firsts] == [
        (0, "function", "get_weather", ""),
        (1, "function", "get_time", ""),
    ]
    later = [f for f in fragments if f.id is None]
    assert all(f.type is None and f.function.name is None for f in later)
    assert len([f for f in later if f.index == 0]) > 1, "arguments stream in several fragments"
    arguments = ["".join(f.function.arguments or "" for f in fragments if f.index == i) for i in (0, 1)]
    assert [json.loads(a) for a in arguments] == [{"city": "Paris"}, {}]
    assert bridge.claude_children() == []


def test_parallel_tool_calls_false_returns_only_the_first_call(bridge, fake):
    fake.enqueue(ToolUse((("get_weather", {"city": "Paris"}), ("get_time", {}))))
    completion = bridge.client().chat.completions.create(
        model="sonnet", messages=ASK, tools=[WEATHER, TIME], parallel_tool_calls=False
    )
    assert [c.function.name for c in completion.choices[0].message.tool_calls] == ["get_weather"]


@pytest.mark.parametrize(
    ("tool_choice", "shown", "instruction"),
    [
        ("auto", {"mcp__app__get_weather"}, None),
        ("none", set(), None),
        ("required", {"mcp__app__get_weather"}, "must call at least one of the available tools"),
        ({"type": "function", "function": {"name": "get_weather"}}, {"mcp__app__get_weather"},
         "must call the tool mcp__app__get_weather"),
    ],
    ids=["auto", "none", "required", "named"],
)  # fmt: skip
def test_tool_choice(bridge, fake, tool_choice, shown, instruction):
    completion = bridge.client().chat.completions.create(
        model="sonnet", messages=ASK, tools=[WEATHER], tool_choice=tool_choice
    )
    assert completion.choices[0].message.content == "ECHO: weather in Paris?"
    (request,) = fake.requests
    assert set(served(request.body)) == shown
    assert (instruction in system_text(request.body)) if instruction else "must call" not in system_text(request.body)


def test_unknown_named_tool_choice_is_400(bridge, fake):
    with pytest.raises(openai.BadRequestError) as caught:
        bridge.client().chat.completions.create(
            model="sonnet",
            messages=ASK,
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "nope"}},
        )
    assert caught.value.body["param"] == "tool_choice"


def test_legacy_functions_get_a_function_call_back(bridge, fake):
    fake.enqueue(ToolUse((("get_weather", {"city": "Oslo"}),)))
    raw = bridge.client().with_raw_response.chat.completions.create(
        model="sonnet", messages=ASK, functions=[WEATHER["function"]]
    )
    choice = json.loads(raw.http_response.text)["choices"][0]
    assert choice["finish_reason"] == "function_call"
    assert choice["message"]["function_call"]["name"] == "get_weather"
    assert json.loads(choice["message"]["function_call"]["arguments"]) == {"city": "Oslo"}
    fake.enqueue(Reply(("Cold.",)))
    messages = [*ASK, {"role": "assistant", "content": None, "function_call": choice["message"]["function_call"]},
                {"role": "function", "name": "get_weather", "content": "-3C"}]  # fmt: skip
    answer = bridge.client().chat.completions.create(model="sonnet", messages=messages, functions=[WEATHER["function"]])
    assert answer.choices[0].message.content == "Cold."
    *_, (role, blocks) = conversation(fake.requests[1].body)
    assert role == "user" and blocks[0]["type"] == "tool_result" and blocks[0]["content"][0]["text"] == "-3C"


class City(BaseModel):
    name: str
    population: int


def test_parse_returns_the_schema_object(bridge, fake):
    fake.enqueue(ToolUse((("StructuredOutput", {"name": "Paris", "population": 2100000}),), text="Here:"))
    completion = bridge.client().chat.completions.parse(model="gpt-4o", messages=ASK, response_format=City)
    assert completion.choices[0].message.parsed == City(name="Paris", population=2100000)
    assert json.loads(completion.choices[0].message.content) == {"name": "Paris", "population": 2100000}
    (request,) = fake.requests
    schema = served(request.body)["StructuredOutput"]["input_schema"]
    assert schema["required"] == ["name", "population"] and schema["additionalProperties"] is False


def test_json_object_mode_streams_only_json(bridge, fake):
    fake.enqueue(ToolUse((("StructuredOutput", {"ok": True}),), text="Sure, here is JSON:"))
    stream = bridge.client().chat.completions.create(
        model="sonnet", messages=ASK, response_format={"type": "json_object"}, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert json.loads(text) == {"ok": True}


def test_reasoning_effort_and_reasoning_content(start_bridge, fake):
    bridge = start_bridge("bridge_reasoning_content=true")
    fake.enqueue(Thinking(("weighing", " options"), ("Answer.",)))
    raw = bridge.client().with_raw_response.chat.completions.create(
        model="sonnet", messages=ASK, reasoning_effort="high", stream=True
    )
    body = raw.http_response.read().decode()
    chunks = [json.loads(line[6:]) for line in body.split("\n\n") if line.startswith("data: {")]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == "weighing options"
    assert "".join(d.get("content", "") for d in deltas) == "Answer."
    (request,) = fake.requests
    assert request.body["output_config"]["effort"] == "high"


def test_thinking_stays_hidden_by_default_and_counts_as_reasoning_tokens(bridge, fake):
    fake.enqueue(Thinking(("secret", " plans", " here"), ("Answer.",)))
    raw = bridge.client().with_raw_response.chat.completions.create(model="sonnet", messages=ASK)
    assert "secret" not in raw.http_response.text and "reasoning_content" not in raw.http_response.text
    assert raw.parse().usage.completion_tokens_details.reasoning_tokens == 3
