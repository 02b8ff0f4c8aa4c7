"""An agent framework, unmodified, running its own tool loop through the bridge: the OpenAI Agents SDK
with its Chat Completions model. Every exchange is checked where the model sits, at the fake API."""

from __future__ import annotations

import base64

import pytest
from agents import (
    Agent,
    OpenAIChatCompletionsModel,
    Runner,
    function_tool,
    set_default_openai_client,
    set_tracing_disabled,
)
from pydantic import BaseModel

from fake_anthropic import Reply, ToolUse, conversation, tool_names

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(32)).decode()


@pytest.fixture(autouse=True)
def no_tracing():
    set_tracing_disabled(True)  # the SDK would otherwise send traces to OpenAI


def agent(bridge, **kwargs) -> Agent:
    model = OpenAIChatCompletionsModel(model="gpt-4o", openai_client=bridge.async_client())
    return Agent(name="assistant", instructions="Be brief; use the tools.", model=model, **kwargs)


def test_agent_runs_a_multi_step_tool_task(bridge, fake):
    looked_up: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """Current weather for a city."""
        looked_up.append(city)
        return f"Sunny in {city}"

    fake.enqueue(
        ToolUse((("get_weather", {"city": "Paris"}),)),
        ToolUse((("get_weather", {"city": "Oslo"}),)),
        Reply(("Both sunny.",)),
    )
    result = Runner.run_sync(agent(bridge, tools=[get_weather]), "Compare the weather in Paris and Oslo.")
    assert result.final_output == "Both sunny."
    assert looked_up == ["Paris", "Oslo"], "the framework ran the tool itself, twice"
    first, second, third = (request.body for request in fake.requests)
    assert all("mcp__app__get_weather" in tool_names(body) for body in (first, second, third))
    assert [m[0] for m in conversation(first)] == ["user"]

    def results(body: dict) -> list[str]:
        return [
            b["content"][0]["text"] for _, blocks in conversation(body) for b in blocks if b["type"] == "tool_result"
        ]

    assert results(second) == ["Sunny in Paris"]
    assert results(third) == ["Sunny in Paris", "Sunny in Oslo"]
    assert bridge.claude_children() == []


class Verdict(BaseModel):
    animal: str
    confidence: float


def test_agent_with_an_image_and_a_json_schema(bridge, fake):
    fake.enqueue(ToolUse((("StructuredOutput", {"animal": "cat", "confidence": 0.9}),)))
    image_input = [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "What animal is this?"},
                {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}", "detail": "auto"},
            ],
        }
    ]
    result = Runner.run_sync(agent(bridge, output_type=Verdict), image_input)
    assert result.final_output == Verdict(animal="cat", confidence=0.9)
    (request,) = fake.requests
    ((role, blocks),) = conversation(request.body)
    assert role == "user"
    assert {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}} in blocks
    assert "StructuredOutput" in tool_names(request.body)


def test_agent_with_its_default_responses_model_runs_a_tool(bridge, fake):
    @function_tool
    def add(a: int, b: int) -> int:
        """Add two numbers."""
        return a + b

    fake.enqueue(ToolUse((("add", {"a": 2, "b": 40}),)), Reply(("The sum is 42.",)))
    set_default_openai_client(bridge.async_client(), use_for_tracing=False)  # as an app configures the SDK
    responses_agent = Agent(name="calculator", instructions="Use the tool.", tools=[add], model="gpt-5")
    result = Runner.run_sync(responses_agent, "What is 2 + 40?")
    assert result.final_output == "The sum is 42."
    second = fake.requests[1].body
    results = [b for _, blocks in conversation(second) for b in blocks if b["type"] == "tool_result"]
    assert results[0]["content"][0]["text"] == "42"
