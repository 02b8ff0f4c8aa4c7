"""The Responses API (`/v1/responses`) through the bridge, with the official SDK and strict validation."""

from __future__ import annotations

import http.client
import json

import openai
import pytest

from fake_anthropic import ApiError, Reply, Stall, ToolUse, Usage, conversation, system_text

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def test_non_stream_response_object(bridge, fake):
    fake.enqueue(Reply(("Hello", " there"), usage=Usage(input_tokens=9, output_tokens=2, cache_read_input_tokens=3)))
    response = bridge.client().responses.create(model="gpt-5", input="hi", instructions="Be kind.")
    assert response.object == "response" and response.status == "completed"
    assert response.model == "gpt-5"
    assert response.output_text == "Hello there"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (12, 2)
    assert response.usage.input_tokens_details.cached_tokens == 3
    (request,) = fake.requests
    assert system_text(request.body).endswith("Be kind.")
    assert conversation(request.body) == [("user", [{"type": "text", "text": "hi"}])]


def test_stream_is_the_exact_event_sequence(bridge, fake):
    fake.enqueue(Reply(("One", " two")))
    events = list(bridge.client().responses.create(model="gpt-5", input="hi", stream=True))
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    item_ids = {e.item_id for e in events if hasattr(e, "item_id")} | {e.item.id for e in events if hasattr(e, "item")}
    assert len(item_ids) == 1, "one message item, one id throughout"
    assert [e.delta for e in events if e.type == "response.output_text.delta"] == ["One", " two"]
    assert events[-1].response.output_text == "One two"
    assert events[0].response.id == events[-1].response.id


def test_stream_helper_with_strict_validation(bridge, fake):
    fake.enqueue(Reply(("streamed", " helper")))
    with bridge.client().responses.stream(model="gpt-5", input="hi") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert deltas == ["streamed", " helper"]
    assert final.output_text == "streamed helper"


def test_function_tools_give_function_call_items(bridge, fake):
    fake.enqueue(ToolUse((("get_weather", {"city": "Rome"}),), fragment_chars=4))
    events = list(
        bridge.client().responses.create(
            model="gpt-5", input="weather?", tools=[WEATHER, {"type": "web_search"}], stream=True
        )
    )
    types = [e.type for e in events]
    assert types[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert types.count("response.function_call_arguments.delta") > 1
    assert types[-3:] == ["response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    (call,) = events[-1].response.output
    assert (call.type, call.name, json.loads(call.arguments)) == ("function_call", "get_weather", {"city": "Rome"})
    (request,) = fake.requests
    assert [t["name"] for t in request.body["tools"] if t["name"] != "DeferredToolPlaceholder"] == [
        "mcp__app__get_weather"
    ]


def test_function_call_output_continues_the_conversation(bridge, fake):
    client = bridge.client()
    fake.enqueue(ToolUse((("get_weather", {"city": "Rome"}),)))
    first = client.responses.create(model="gpt-5", input="weather?", tools=[WEATHER])
    (call,) = first.output
    fake.enqueue(Reply(("Warm.",)))
    items = [{"role": "user", "content": "weather?"}, call.model_dump(exclude_none=True),
             {"type": "function_call_output", "call_id": call.call_id, "output": "25C"}]  # fmt: skip
    second = client.responses.create(model="gpt-5", input=items, tools=[WEATHER])
    assert second.output_text == "Warm."
    *_, (role, blocks) = conversation(fake.requests[1].body)
    assert role == "user" and blocks[0]["type"] == "tool_result" and blocks[0]["tool_use_id"] == call.call_id


def test_previous_response_id_continues_and_get_returns_it(bridge, fake):
    client = bridge.client()
    fake.enqueue(Reply(("First answer.",)))
    first = client.responses.create(model="gpt-5", input="first question", instructions="Short.")
    fake.enqueue(Reply(("Second answer.",)))
    second = client.responses.create(model="gpt-5", input="second question", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    assert conversation(fake.requests[1].body) == [
        ("user", [{"type": "text", "text": "first question"}]),
        ("assistant", [{"type": "text", "text": "First answer."}]),
        ("user", [{"type": "text", "text": "second question"}]),
    ]
    assert "Short." not in system_text(fake.requests[1].body), "instructions are not carried over, as at OpenAI"
    assert client.responses.retrieve(first.id).output_text == "First answer."


def test_unknown_previous_response_id_is_404(bridge, fake):
    with pytest.raises(openai.NotFoundError) as caught:
        bridge.client().responses.create(model="gpt-5", input="x", previous_response_id="resp_missing")
    assert caught.value.body["param"] == "previous_response_id"
    with pytest.raises(openai.NotFoundError):
        bridge.client().responses.retrieve("resp_missing")
    assert fake.requests == []


def test_text_format_json_schema(bridge, fake):
    fake.enqueue(ToolUse((("StructuredOutput", {"city": "Rome"}),)))
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    response = bridge.client().responses.create(
        model="gpt-5",
        input="a city",
        text={"format": {"type": "json_schema", "name": "place", "schema": schema, "strict": True}},
    )
    assert json.loads(response.output_text) == {"city": "Rome"}


def test_max_output_tokens_gives_an_incomplete_response(bridge, fake):
    fake.enqueue(Reply(("a", "b", "c", "d")))
    response = bridge.client().responses.create(model="gpt-5", input="x", max_output_tokens=2)
    assert response.status == "incomplete" and response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text == "ab"


def test_failure_before_output_is_an_http_error_and_after_is_response_failed(start_bridge, fake):
    bridge = start_bridge("claude_max_retries=0", "claude_idle_timeout=1")
    fake.enqueue(ApiError(529, "overloaded_error", "Overloaded"))
    with pytest.raises(openai.InternalServerError):
        bridge.client().responses.create(model="gpt-5", input="x", stream=True)
    fake.enqueue(Stall(("partial",)))
    events = list(bridge.client().responses.create(model="gpt-5", input="x", stream=True))
    assert events[-1].type == "response.failed"
    assert events[-1].response.error.code == "server_error" and "printed nothing" in events[-1].response.error.message


def test_legacy_completions_stream_and_not(bridge, fake):
    client = bridge.client()
    fake.enqueue(Reply(("Once", " upon")))
    completion = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Tell a story", max_tokens=50)
    assert completion.object == "text_completion" and completion.choices[0].text == "Once upon"
    assert completion.choices[0].finish_reason == "stop" and completion.usage.completion_tokens == 2
    fake.enqueue(Reply(("a", "b", "c")))
    # Not strict here: the SDK's own type refuses the `finish_reason: null` that OpenAI sends mid-stream.
    lenient = openai.OpenAI(base_url=bridge.url + "/v1", api_key="x", max_retries=0)
    chunks = list(lenient.completions.create(model="gpt-3.5-turbo-instruct", prompt=["Go"], max_tokens=2, stream=True))
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "ab"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert fake.requests[1].body["max_tokens"] == 2
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="gpt-3.5-turbo-instruct", prompt=["one", "two"])


def test_legacy_completions_default_to_openais_16_tokens(bridge, fake):
    bridge.client().completions.create(model="gpt-3.5-turbo-instruct", prompt="x")
    assert fake.requests[0].body["max_tokens"] == 16


def test_moderations_answer_not_flagged_without_running_claude(bridge, fake):
    result = bridge.client().moderations.create(input=["hello", "world"])
    assert [r.flagged for r in result.results] == [False, False]
    assert result.results[0].categories.violence is False
    assert fake.requests == []


def test_websocket_upgrade_is_426_so_clients_fall_back_to_sse_at_once(bridge):
    connection = http.client.HTTPConnection("127.0.0.1", bridge.port, timeout=10)
    connection.request("GET", "/v1/responses", headers={"Connection": "Upgrade", "Upgrade": "websocket",
                       "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})  # fmt: skip
    response = connection.getresponse()
    assert response.status == 426
    assert json.loads(response.read())["error"]["code"] == "upgrade_required"


def test_errors_in_the_input_name_the_input_not_the_translated_messages(bridge, fake):
    client = bridge.client()
    with pytest.raises(openai.BadRequestError) as responses_error:
        client.responses.create(model="sonnet", input=[{"role": "assistant", "content": "prefilled"}])
    with pytest.raises(openai.BadRequestError) as completions_error:
        client.completions.create(model="sonnet", prompt=[])
    assert responses_error.value.param == "input"
    assert completions_error.value.param == "prompt"
    assert fake.requests == []


def test_earlier_output_items_referred_to_by_id_are_the_conversation(bridge, fake):
    """Clients of a storing API (Vercel's AI SDK by default) send earlier answers back as `item_reference`s."""
    client = bridge.client()
    first = client.responses.create(model="gpt-4o", input="first")
    (message,) = first.output
    items = [
        {"role": "user", "content": "first"},
        {"type": "item_reference", "id": message.id},
        {"role": "user", "content": "second"},
    ]
    assert client.responses.create(model="gpt-4o", input=items).output_text == "ECHO: second"
    assert ("assistant", [{"type": "text", "text": "ECHO: first"}]) in conversation(fake.requests[-1].body)
    with pytest.raises(openai.NotFoundError, match="Item with id 'msg_gone' not found"):
        client.responses.create(model="gpt-4o", input=[{"type": "item_reference", "id": "msg_gone"}, *items[2:]])
