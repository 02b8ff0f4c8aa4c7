"""Chat request parsing and its translation into one Claude invocation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from claude_bridge.claude.invocation import HistoryMessage
from claude_bridge.openai.errors import OpenAIError
from claude_bridge.translate.model_map import ModelMap
from claude_bridge.translate.request import ChatJob, HistoryMode, chat_job, parse_chat_request

MODELS = ModelMap.from_entries([])


def body(**fields: Any) -> bytes:
    return json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], **fields}).encode()


def job(history_mode: HistoryMode = "resume", **fields: Any) -> ChatJob:
    return chat_job(parse_chat_request(body(**fields)), MODELS, history_mode)


def text(*texts: str) -> list[dict[str, str]]:
    return [{"type": "text", "text": t} for t in texts]


def bad_request(call: Any) -> OpenAIError:
    with pytest.raises(OpenAIError) as caught:
        call()
    assert caught.value.status == 400
    assert caught.value.error.type == "invalid_request_error"
    return caught.value


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b"\xff\xfe"])
def test_invalid_json_is_a_400_without_param(raw: bytes) -> None:
    error = bad_request(lambda: parse_chat_request(raw))
    assert "JSON" in error.error.message
    assert error.error.param is None


@pytest.mark.parametrize("raw", [b"[]", b'"hi"', b"42", b"null"])
def test_body_that_is_not_an_object_is_a_400(raw: bytes) -> None:
    assert "JSON object" in bad_request(lambda: parse_chat_request(raw)).error.message


@pytest.mark.parametrize(
    ("data", "param"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": "gpt-4o"}, "messages"),
        ({"model": "", "messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": "gpt-4o", "messages": []}, "messages"),
        ({"model": "gpt-4o", "messages": "hi"}, "messages"),
        ({"model": "gpt-4o", "messages": [{"role": "user"}]}, "messages[0].content"),
        ({"model": "gpt-4o", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"model": 5, "messages": [{"role": "user", "content": "hi"}]}, "model"),
    ],
)
def test_missing_or_mistyped_field_is_named_in_param(data: dict[str, Any], param: str) -> None:
    error = bad_request(lambda: parse_chat_request(json.dumps(data).encode()))
    assert error.error.param == param
    assert f"'{param}'" in error.error.message


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": "many"}, "max_tokens"),
        ({"max_completion_tokens": -1}, "max_completion_tokens"),
        ({"max_tokens": 2**31}, "max_tokens"),
        ({"max_completion_tokens": 10**30}, "max_completion_tokens"),
        ({"n": 0}, "n"),
        ({"stop": 5}, "stop"),
        ({"stop": {}}, "stop"),  # not `stop.str`: a union member's label is no field of the request
        ({"stream_options": {"include_usage": "perhaps"}}, "stream_options.include_usage"),
    ],
)
def test_invalid_option_is_named_in_param(fields: dict[str, Any], param: str) -> None:
    assert bad_request(lambda: parse_chat_request(body(**fields))).error.param == param


@pytest.mark.parametrize(
    ("part", "param"),
    [
        ({"type": "text"}, "messages[1].content[1].text"),
        ({"type": "text", "text": 5}, "messages[1].content[1].text"),
        ({"type": 5}, "messages[1].content[1].type"),
        ("plain string", "messages[1].content[1]"),
    ],
)
def test_bad_content_part_is_named_down_to_its_field(part: Any, param: str) -> None:
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": [*text("ok"), part]}]
    assert bad_request(lambda: parse_chat_request(body(messages=messages))).error.param == param


@pytest.mark.parametrize(
    "model", ["gpt-4o\r\nX-Injected: 1", "claude-sonnet-4-5\0", "claude-sonnet-4-5 --help", "\u200bgpt-4o", "gpt-4o\t"]
)
def test_model_name_with_whitespace_or_control_characters_is_a_400(model: str) -> None:
    """`claude-*` names go to the CLI's argv unchanged (a NUL made the spawn fail with a 500)."""
    error = bad_request(lambda: parse_chat_request(body(model=model)))
    assert error.error.param == "model"
    assert "whitespace or control characters" in error.error.message


def test_a_model_name_too_long_for_any_model_is_a_400() -> None:
    """A 200 KB `claude-*` name went to the CLI's argv and failed the spawn (E2BIG) with a 500."""
    error = bad_request(lambda: parse_chat_request(body(model="claude-" + "x" * 200_000)))
    assert error.error.param == "model"
    assert "at most 256 characters" in error.error.message


@pytest.mark.parametrize("role", ["robot", "critic", ""])
def test_unknown_role_is_a_400_naming_the_message(role: str) -> None:
    error = bad_request(lambda: parse_chat_request(body(messages=[{"role": role, "content": "x"}])))
    assert error.error.param is not None and error.error.param.startswith("messages[0]")
    assert repr(role) in error.error.message


def test_fields_the_bridge_does_not_use_are_ignored() -> None:
    request = parse_chat_request(
        body(
            temperature=0.2,
            top_p=0.9,
            seed=7,
            user="u-1",
            logit_bias={"50256": -100},
            presence_penalty=0.5,
            response_format={"type": "text"},
            metadata={"k": "v"},
            messages=[{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {}}], "x": 1}],
        )
    )
    assert request.model == "gpt-4o"
    assert not hasattr(request, "temperature")


def test_system_and_developer_messages_join_into_the_system_prompt() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": text("Use French.", "  ", "No emoji.")},
        {"role": "user", "content": "hi"},
    ]
    assert job(messages=messages).invocation.system_prompt == "Be brief.\n\nUse French.\nNo emoji."


@pytest.mark.parametrize("system", [[], [{"role": "system", "content": "   "}]])
def test_no_system_text_means_no_system_prompt(system: list[dict[str, Any]]) -> None:
    assert job(messages=[*system, {"role": "user", "content": "hi"}]).invocation.system_prompt is None


def test_text_parts_stay_separate_blocks_and_blank_ones_are_dropped() -> None:
    messages = [{"role": "user", "content": text("first", "", " \n", "second")}]
    assert job(messages=messages).invocation.prompt == text("first", "second")


def test_string_content_becomes_one_block_and_the_model_is_mapped() -> None:
    invocation = job().invocation
    assert invocation.prompt == text("hi")
    assert invocation.model == "sonnet"
    assert invocation.history == ()


def test_earlier_turns_become_history_and_the_last_user_message_the_prompt() -> None:
    messages = [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"},
    ]
    invocation = job(messages=messages).invocation
    assert invocation.history == (HistoryMessage("user", text("q1")), HistoryMessage("assistant", text("a1")))
    assert invocation.prompt == text("q2")


def test_consecutive_messages_of_one_role_merge_into_one_turn() -> None:
    messages = [
        {"role": "user", "content": "q1"},
        {"role": "system", "content": "between"},
        {"role": "user", "content": text("q2", "q3")},
        {"role": "assistant", "content": "a1"},
        {"role": "assistant", "content": None},
        {"role": "assistant", "content": "a2"},
        {"role": "user", "content": "q4"},
    ]
    invocation = job(messages=messages).invocation
    assert invocation.history == (
        HistoryMessage("user", text("q1", "q2", "q3")),
        HistoryMessage("assistant", text("a1", "a2")),
    )
    assert invocation.prompt == text("q4")


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": "prefill"}],
        [{"role": "system", "content": "only a system prompt"}],
        [{"role": "user", "content": "  "}],
        [{"role": "user", "content": []}],
    ],
)
def test_without_a_final_user_turn_with_text_it_is_a_400(messages: list[dict[str, Any]]) -> None:
    assert bad_request(lambda: job(messages=messages)).error.param == "messages"


def test_more_than_one_choice_is_refused() -> None:
    assert bad_request(lambda: job(n=2)).error.param == "n"


def test_one_choice_is_accepted() -> None:
    assert job(n=1).invocation.prompt == text("hi")


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, None),
        ({"max_tokens": 100}, 100),
        ({"max_completion_tokens": 50}, 50),
        ({"max_tokens": 100, "max_completion_tokens": 50}, 50),
    ],
)
def test_max_completion_tokens_wins_over_max_tokens(fields: dict[str, int], expected: int | None) -> None:
    assert job(**fields).invocation.max_output_tokens == expected


@pytest.mark.parametrize(("stop", "expected"), [(None, ()), ("END", ("END",)), (["a", "b"], ("a", "b")), ([], ())])
def test_stop_is_a_tuple_whether_sent_as_string_or_list(stop: Any, expected: tuple[str, ...]) -> None:
    assert job(stop=stop).stop == expected


@pytest.mark.parametrize(
    ("fields", "stream", "include_usage"),
    [
        ({}, False, False),
        ({"stream": True}, True, False),
        ({"stream": True, "stream_options": {"include_usage": True}}, True, True),
        ({"stream": True, "stream_options": {"include_usage": False}}, True, False),
        ({"stream": True, "stream_options": {}}, True, False),
    ],
)
def test_stream_and_include_usage(fields: dict[str, Any], stream: bool, include_usage: bool) -> None:
    result = job(**fields)
    assert (result.stream, result.include_usage) == (stream, include_usage)


def test_flatten_puts_the_labelled_transcript_ahead_of_the_new_message() -> None:
    messages = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": text("q1", "q1b")},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"},
    ]
    invocation = job("flatten", messages=messages).invocation
    assert invocation.history == ()
    assert invocation.system_prompt == "sys"
    assert invocation.prompt == text(
        "The conversation so far:\n\nUser: q1\nq1b\n\nAssistant: a1\n\nThe user's new message follows.", "q2"
    )


def test_flatten_leaves_a_single_message_alone() -> None:
    assert job("flatten").invocation.prompt == text("hi")


@pytest.mark.parametrize(
    ("messages", "param"),
    [
        ([{"role": "user", "content": [*text("listen"), {"type": "input_audio", "input_audio": {}}]}],
         "messages[0].content[1]"),
        ([{"role": "system", "content": [{"type": "input_audio", "input_audio": {}}]},
          {"role": "user", "content": "hi"}], "messages[0].content[0]"),
        ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": [{"type": "refusal"}]},
          {"role": "user", "content": "again"}], "messages[1].content[0]"),
    ],
)  # fmt: skip
def test_unsupported_part_type_is_a_400_naming_the_part(messages: list[dict[str, Any]], param: str) -> None:
    error = bad_request(lambda: job(messages=messages))
    assert error.error.param == param
    assert "not supported" in error.error.message


@pytest.mark.parametrize(
    ("field", "value"), [("stream", "yes"), ("max_tokens", "5"), ("n", 1.5), ("stream_options", {"include_usage": 1})]
)
def test_values_of_the_wrong_json_type_are_refused_not_coerced(field: str, value: Any) -> None:
    body = {"model": "sonnet", "messages": [{"role": "user", "content": "hi"}], field: value}
    with pytest.raises(OpenAIError) as caught:
        parse_chat_request(json.dumps(body).encode())
    assert caught.value.status == 400
    assert caught.value.error.param is not None and caught.value.error.param.startswith(field)


TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


def tool_job(messages: list[dict[str, Any]], **fields: Any) -> ChatJob:
    return chat_job(parse_chat_request(body(messages=messages, tools=TOOLS, **fields)), MODELS, "resume")


def test_tool_calls_and_results_become_tool_use_and_tool_result_blocks() -> None:
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
    ]
    invocation = tool_job(messages).invocation
    assert [m.role for m in invocation.history] == ["user"]
    assert invocation.replay is not None, "the calls of a final tool-result turn go on stdin with it"
    assert invocation.replay.content == [
        {"type": "tool_use", "id": "call_1", "name": "mcp__app__get_weather", "input": {"city": "Paris"}}
    ]
    assert invocation.prompt == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "Sunny"}]}
    ]
    assert [tool.name for tool in invocation.tools] == ["get_weather"]


def test_tool_results_open_their_turn_when_a_user_message_follows() -> None:
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [CALL]},
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
        {"role": "user", "content": "and tomorrow?"},
    ]
    prompt = tool_job(messages).invocation.prompt
    assert [block["type"] for block in prompt] == ["tool_result", "text"]


@pytest.mark.parametrize("arguments", ["not json", "[1, 2]", '"text"'])
def test_tool_call_arguments_must_be_a_json_object(arguments: str) -> None:
    call = {**CALL, "function": {"name": "get_weather", "arguments": arguments}}
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_1", "content": "r"}]  # fmt: skip
    error = bad_request(lambda: tool_job(messages))
    assert error.error.param == "messages[1].tool_calls[0].function.arguments"


def test_empty_arguments_mean_no_arguments() -> None:
    call = {**CALL, "function": {"name": "get_weather", "arguments": ""}}
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_1", "content": "r"}]  # fmt: skip
    assert tool_job(messages).invocation.replay.content[0]["input"] == {}


def test_legacy_function_messages_pair_with_their_call() -> None:
    messages = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "function_call": {"name": "lookup", "arguments": "{}"}},
        {"role": "function", "name": "lookup", "content": "found"},
    ]
    request = parse_chat_request(body(messages=messages, functions=[{"name": "lookup"}]))
    job = chat_job(request, MODELS, "resume")
    use_id = job.invocation.replay.content[0]["id"]
    assert job.invocation.prompt[0]["tool_use_id"] == use_id
    assert job.legacy_functions and not job.parallel_tool_calls


@pytest.mark.parametrize(
    ("response_format", "schema"),
    [
        ({"type": "text"}, None),
        ({"type": "json_object"}, {"type": "object"}),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "required": ["a"]}}},
         {"type": "object", "required": ["a"]}),
    ],
)  # fmt: skip
def test_response_format_becomes_the_clis_json_schema(response_format: dict, schema: dict | None) -> None:
    assert job(response_format=response_format).invocation.json_schema == schema


@pytest.mark.parametrize(
    ("effort", "cli_effort", "thinking"),
    [
        (None, None, True),
        ("none", "low", False),
        ("minimal", "low", True),
        ("high", "high", True),
        ("xhigh", "xhigh", True),
    ],
)
def test_reasoning_effort_maps_to_the_clis_effort(effort: str | None, cli_effort: str | None, thinking: bool) -> None:
    invocation = job(reasoning_effort=effort).invocation if effort else job().invocation
    assert (invocation.effort, invocation.thinking) == (cli_effort, thinking)
