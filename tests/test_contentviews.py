"""The content views on real bridged flows (saved by a running bridge) and on bodies made to be broken.

Rendering goes through mitmproxy's own `contentviews.prettify_message` with view "auto", as mitmweb and mitmdump
call it, so each test also shows which view mitmproxy picked.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from mitmproxy import contentviews, http, io
from mitmproxy.test import taddons, tflow
from test_tools_e2e import WEATHER

from claude_bridge.views import ContentViews
from conftest import ROOT
from fake_anthropic import FakeAnthropic, Reply, ToolUse

Json = dict[str, Any]
BRIDGE_SCRIPT = ROOT / "addon" / "bridge.py"

PARIS = {"city": "Paris", "unit": "c"}
PIXEL = (  # an 8x8 PNG of 75 bytes
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAICAIAAABLbSncAAAAEklEQVR4nGP4z8CAFWEXHbQSACj/P8Fu7N9hAAAAAElFTkSuQmCC"
)


@pytest.fixture(autouse=True)
def views() -> Iterator[None]:
    with taddons.context():
        ContentViews().load(None)
        yield


def shown(message: http.Message, flow: http.HTTPFlow) -> tuple[str | None, str]:
    """The view mitmproxy picks for `message` on its own, and the text it shows."""
    pretty = contentviews.prettify_message(message, flow)
    return pretty.view_name, pretty.text


@pytest.fixture(scope="module")
def saved(start_bridge, fake_server: FakeAnthropic, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Json]:
    """A flow file a bridge saved with one flow of each kind, and the CLI's Anthropic request for the tool call."""
    saved = tmp_path_factory.mktemp("flows") / "flows.mitm"
    fake_server.reset()
    bridge = start_bridge(f"save_stream_file={saved}")
    client = bridge.client()
    ask = [{"role": "system", "content": "Be brief."},
           {"role": "user", "content": [{"type": "text", "text": "weather in Paris?"},
                                        {"type": "image_url", "image_url": {"url": PIXEL}}]}]  # fmt: skip
    fake_server.enqueue(ToolUse((("get_weather", PARIS),), text="Let me check."))
    list(client.chat.completions.create(model="gpt-4o", messages=ask, tools=[WEATHER], stream=True, temperature=0.2))
    anthropic_request = fake_server.requests[-1].body
    fake_server.enqueue(Reply(("Sunny", " in Paris.")), Reply(("plain answer",)), Reply(("once", " upon")))
    list(client.responses.create(model="gpt-4o", input="weather?", instructions="Be brief.", stream=True))
    client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "n"}])
    # Not strict: the SDK's own type refuses the `finish_reason: null` that OpenAI sends mid-stream.
    lenient = openai.OpenAI(base_url=bridge.url + "/v1", api_key=bridge.api_key, max_retries=0)
    list(lenient.completions.create(model="gpt-3.5-turbo-instruct", prompt="Once", stream=True, max_tokens=50))
    fake_server.enqueue(ToolUse((("get_weather", PARIS),)))
    client.responses.create(model="gpt-4o", input="weather?", tools=[{"type": "function", **WEATHER["function"]}])
    bridge.stop()
    fake_server.reset()
    return saved, anthropic_request


@pytest.fixture(scope="module")
def flows(saved: tuple[Path, Json]) -> dict[str, Any]:
    """The saved flows by what they are, and the Anthropic request."""
    with saved[0].open("rb") as f:
        bridged = [flow for flow in io.FlowReader(f).stream() if flow.request.path.startswith("/v1/")]
    names = ["chat tool stream", "responses stream", "chat", "legacy stream", "responses tool call"]
    assert len(bridged) == len(names)
    return dict(zip(names, bridged, strict=True)) | {"anthropic request": saved[1]}


def test_a_streamed_chat_request_reads_as_a_conversation(flows):
    flow = flows["chat tool stream"]
    view, text = shown(flow.request, flow)
    assert view == "OpenAI"
    assert text.startswith("Chat Completions request for gpt-4o, streamed\n")
    assert "── system ─" in text and "  Be brief." in text
    assert "── user ─" in text and "  weather in Paris?" in text
    assert "[image: image/png, 75 B inline]" in text
    assert "iVBOR" not in text, "an image's bytes are never shown"
    assert "tools offered: 1" in text and "get_weather(city*, unit): Current weather for a city" in text
    assert "not used by the bridge: temperature" in text
    assert "sk-test" not in text and "Bearer" not in text


def test_a_streamed_tool_call_is_assembled_with_its_arguments(flows):
    flow = flows["chat tool stream"]
    view, text = shown(flow.response, flow)
    assert view == "OpenAI"
    assert "── answer ─" in text and "  Let me check." in text
    call = text.split("── tool call get_weather (")[1]
    arguments = call.split("\n", 1)[1].split("\n\n")[0]
    assert json.loads(arguments) == PARIS
    assert '  "city": "Paris",' in arguments, "pretty-printed"
    assert "finish reason: tool_calls" in text
    assert "the stream ends" not in text and "not read" not in text


def test_the_answer_starts_with_what_the_run_did(flows):
    flow = flows["chat tool stream"]
    _, text = shown(flow.response, flow)
    first, timing, tokens = text.splitlines()[:3]
    assert first.startswith("claude-bridge: claude-sonnet-5-5 finished (tool_use), served by a new CLI")
    assert re.fullmatch(r"first token (\d+) ms \(CLI start-up (\d+) ms, then the API (\d+) ms\); \d+ ms in all", timing)
    assert re.fullmatch(r"tokens in \d+ \(cache read \d+, written \d+\) out \d+; cost \$\d+\.\d{4}", tokens)
    # The comment says the same in one line.
    assert re.search(r" by a new CLI; .* first token \d+ ms \(start-up \d+ \+ API \d+\)$", flow.comment), flow.comment


def test_a_responses_stream_is_assembled(flows):
    flow = flows["responses stream"]
    _, request = shown(flow.request, flow)
    assert request.startswith("Responses request for gpt-4o, streamed\n")
    assert "── instructions ─" in request and "── user ─" in request and "  weather?" in request
    view, text = shown(flow.response, flow)
    assert view == "OpenAI"
    assert "Responses answer from gpt-4o, streamed in" in text
    assert "status: completed" in text
    assert "  Sunny in Paris." in text
    assert re.search(r"usage: input \d+ \(cached \d+, cache write \d+\) · output \d+", text)


def test_a_responses_tool_call_not_streamed(flows):
    flow = flows["responses tool call"]
    _, request = shown(flow.request, flow)
    assert "get_weather(city*, unit)" in request
    _, text = shown(flow.response, flow)
    assert "not streamed" in text
    assert "── tool call get_weather (call_" in text or "── tool call get_weather (toolu_" in text
    assert '"unit": "c"' in text


def test_a_chat_answer_not_streamed(flows):
    flow = flows["chat"]
    view, text = shown(flow.response, flow)
    assert view == "OpenAI"
    assert "Chat Completions answer from gpt-4o, not streamed" in text
    assert "  plain answer" in text and "finish reason: stop" in text
    assert re.search(r"usage: prompt \d+ \(cached \d+\) · completion \d+ \(reasoning 0\) · total \d+", text)


def test_a_legacy_completion_stream(flows):
    flow = flows["legacy stream"]
    _, request = shown(flow.request, flow)
    assert request.startswith("Completions (legacy) request for gpt-3.5-turbo-instruct, streamed\nmax_tokens 50")
    assert "── prompt ─" in request and "  Once" in request
    _, text = shown(flow.response, flow)
    assert "  once upon" in text and "finish reason: stop" in text


def test_the_clis_anthropic_request_shows_its_blocks_and_cache_breakpoints(flows, fake):
    flow = anthropic_flow(flows["anthropic request"], fake.server)
    view, text = shown(flow.request, flow)
    assert view == "Anthropic Messages"
    assert text.startswith("Anthropic Messages request for claude-sonnet-5-5, streamed\n")
    assert "── system block 0 ─" in text
    assert "  Be brief." in text
    assert "── user (message 0) ─" in text and "  weather in Paris?" in text
    assert "[image: image/png, 75 B inline]" in text
    assert "mcp__app__get_weather(city, unit): Current weather for a city" in text
    breakpoints = re.findall(r"▲ cache breakpoint (\d+) \(ephemeral", text)
    assert breakpoints and breakpoints == [str(n) for n in range(1, len(breakpoints) + 1)]
    assert f"cache breakpoints: {len(breakpoints)} (system block" in text


def test_an_anthropic_stream_is_assembled_with_its_usage(flows, fake):
    flow = anthropic_flow(flows["anthropic request"], fake.server)
    view, text = shown(flow.response, flow)
    assert view == "Anthropic Messages"
    assert "Anthropic Messages answer from claude-sonnet-5-5, streamed in" in text
    assert "── text ─" in text and "  Let me check." in text
    tool_use = text.split("── tool_use mcp__app__get_weather (")[1].split("\n", 1)[1].split("\n\n")[0]
    assert json.loads(tool_use) == PARIS
    assert "stop reason: tool_use" in text
    assert "sk-ant-oat01-secret" not in text + shown(flow.request, flow)[1], "headers are never shown"
    usage = re.search(r"usage: input \d+ · cache read (\d+) · cache written (\d+) (\(1h \d+\) )?· output \d+", text)
    assert usage and int(usage[1]) + int(usage[2]) > 0, text


def test_an_anthropic_answer_not_streamed(flows, fake):
    flow = anthropic_flow({**flows["anthropic request"], "stream": False}, fake.server)
    _, text = shown(flow.response, flow)
    assert "not streamed" in text and "  Let me check." in text and '"city": "Paris"' in text


def anthropic_flow(body: dict[str, Any], fake: FakeAnthropic) -> http.HTTPFlow:
    """A flow of the CLI's request sent again to the fake API, which answers with the same tool call (the `fake`
    fixture's reset restores the cache's minimum)."""
    fake.enqueue(ToolUse((("get_weather", PARIS),), text="Let me check."))
    fake.cache.min_tokens = 0  # a short prompt cached, so the usage has cache writes (or, sent again, reads) to show
    data = json.dumps(body).encode()
    headers = {"content-type": "application/json", "authorization": "Bearer sk-ant-oat01-secret"}
    with urllib.request.urlopen(urllib.request.Request(fake.url + "/v1/messages?beta=true", data, headers)) as answer:
        status, answer_headers, answer_body = answer.status, dict(answer.headers.items()), answer.read()
    flow = tflow.tflow(
        req=http.Request.make("POST", fake.url + "/v1/messages?beta=true", data, headers),
        resp=http.Response.make(status, answer_body, answer_headers),
    )
    return flow


def constructed(path: str, body: bytes, content_type: str, status: int = 200) -> tuple[str | None, str]:
    flow = tflow.tflow(
        req=http.Request.make("POST", "https://api.openai.com" + path, b"{}"),
        resp=http.Response.make(status, body, {"content-type": content_type}),
    )
    return shown(flow.response, flow)


def request_view(path: str, body: Json) -> tuple[str | None, str]:
    flow = tflow.tflow(req=http.Request.make("POST", "https://api.openai.com" + path, json.dumps(body).encode()))
    return shown(flow.request, flow)


def test_a_chat_request_shows_its_tool_loop_settings_and_response_format():
    schema = {"type": "object", "properties": {"sky": {"type": "string"}}}
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
    view, text = request_view(
        "/v1/chat/completions",
        {
            "model": "gpt-4o",
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
            ],
            "stop": ["END"],
            "reasoning_effort": "low",
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "sky", "strict": True, "schema": schema},
            },
            "seed": 7,
        },
    )
    assert view == "OpenAI"
    assert text.splitlines()[1] == 'stop ["END"] · reasoning_effort low'
    assert '  → calls get_weather (call_1)\n    {\n      "city": "Paris"\n    }' in text
    assert "── tool, result of call_1 ─" in text and "  sunny" in text
    assert "── response format: json_schema sky (strict) ─" in text and '"sky": {' in text
    assert "not used by the bridge: seed" in text


def test_a_responses_request_shows_its_input_items():
    view, text = request_view(
        "/v1/responses",
        {
            "model": "gpt-4o",
            "previous_response_id": "resp_1",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "what is this?"},
                                             {"type": "input_image", "image_url": PIXEL, "detail": "low"}]},
                {"type": "function_call", "call_id": "call_2", "name": "look", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "call_2", "output": "a pixel"},
                {"type": "reasoning", "summary": []},
            ],
            "tools": [{"type": "web_search"}],
        },
    )  # fmt: skip
    assert view == "OpenAI"
    assert text.splitlines()[:2] == ["Responses request for gpt-4o, not streamed", "previous_response_id resp_1"]
    assert "[image: image/png, 75 B inline, detail low]" in text
    assert "  → calls look (call_2)" in text and "── tool, result of call_2 ─" in text and "  a pixel" in text
    assert "── reasoning item (not used) ─" in text
    assert "── tools offered: 1 ─" in text and "  web_search (a hosted tool: not served)" in text


def test_an_error_answer_reads_as_the_error():
    error = {"error": {"message": "Rate limited.", "type": "rate_limit_error", "param": None, "code": "rate_limit"}}
    view, text = constructed("/v1/chat/completions", json.dumps(error).encode(), "application/json", 429)
    assert view == "OpenAI"
    assert text.startswith("Chat Completions error, not streamed\n")
    assert "rate_limit_error, rate_limit: Rate limited." in text


def test_a_stream_that_breaks_off_says_so():
    chunk = {"id": "c", "created": 1, "model": "gpt-4o", "choices": [{"index": 0, "delta": {"content": "Hal"}}]}
    body = f"data: {json.dumps(chunk)}\n\n".encode()
    view, text = constructed("/v1/chat/completions", body, "text/event-stream")
    assert view == "OpenAI"
    assert "  Hal" in text
    assert "the stream ends without its last event: the answer was cut short" in text
    error = {"error": {"message": "The Claude API stream broke off.", "type": "server_error"}}
    view, text = constructed(
        "/v1/chat/completions", body + f"data: {json.dumps(error)}\n\n".encode(), "text/event-stream"
    )
    assert "── error ─" in text and "server_error: The Claude API stream broke off." in text
    assert "cut short" not in text, "the error ends it"


MALFORMED = [
    ("/v1/chat/completions", b'{"model": "gpt-4o", "messages": []}', None),
    ("/v1/chat/completions", b"{not json", None),
    ("/v1/chat/completions", b"\xff\xfe", None),
    ("/v1/responses", b'{"model": "gpt-4o"}', None),
    ("/v1/messages", b'{"model": "claude", "messages": "hi"}', None),
    ("/v1/chat/completions", None, b'{"id": 1}'),
    ("/v1/chat/completions", None, b"data: {}\n\ndata: [oops\n\n"),
    ("/v1/messages", None, b"event: message_start\ndata: {\n\n"),
    ("/v1/messages", None, b"\x89PNG\r\n"),
]


@pytest.mark.parametrize(("path", "request_body", "response_body"), MALFORMED)
def test_malformed_bodies_fall_back_to_mitmproxys_views(path, request_body, response_body):
    content_type = "text/event-stream" if response_body and b"data:" in response_body else "application/json"
    flow = tflow.tflow(
        req=http.Request.make("POST", "https://api.openai.com" + path, request_body or b"{}"),
        resp=http.Response.make(200, response_body or b"{}", {"content-type": content_type}),
    )
    message = flow.request if request_body is not None else flow.response
    view, _ = shown(message, flow)
    assert view not in ("OpenAI", "Anthropic Messages")
    chosen = contentviews.registry["openai" if path != "/v1/messages" else "anthropic messages"]
    text = chosen.prettify(message.content, contentviews.make_metadata(message, flow))
    assert text.startswith(f"{chosen.name} cannot read this body: ")


def test_other_flows_keep_mitmproxys_views():
    flow = tflow.tflow(
        req=http.Request.make("POST", "https://example.com/v1/chat/completions/x", b'{"model": "m", "messages": []}'),
        resp=http.Response.make(200, b'{"a": 1}', {"content-type": "application/json"}),
    )
    assert shown(flow.request, flow)[0] != "OpenAI"
    assert shown(flow.response, flow)[0] == "JSON"


def test_mitmdump_shows_the_views_in_its_flow_detail(saved, tmp_path):
    """`mitmdump -r` of a saved file with the bridge's script loaded: its flow detail is the views' text."""
    argv = [str(Path(sys.executable).parent / "mitmdump"), "-n", "-r", str(saved[0]), "-s", str(BRIDGE_SCRIPT)]
    argv += ["--flow-detail", "3", "--listen-host", "127.0.0.1", "--set", f"confdir={tmp_path}"]
    shown = subprocess.run(argv, capture_output=True, text=True, timeout=60, env={**os.environ, "HOME": str(tmp_path)})
    assert shown.returncode == 0, shown.stderr
    assert "    Chat Completions request for gpt-4o, streamed" in shown.stdout
    assert "    ── tool call get_weather (" in shown.stdout
    assert '        "city": "Paris",' in shown.stdout
    assert "    Completions answer from gpt-3.5-turbo-instruct, streamed in" in shown.stdout
    assert "data: " not in shown.stdout, "no raw stream where a view reads it"
