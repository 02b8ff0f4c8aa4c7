"""Property-based fuzzing: malformed requests get a 4xx OpenAI error, never a 5xx, a traceback or a hang.

Two levels. The parsers, driven through the same translation path the addon takes up to the CLI's spawn, with
thousands of arbitrary byte strings and mutated valid requests (wrong types, unknown roles, empty messages,
absurd max_tokens, odd model names, deep nesting, invalid UTF-8). And the running bridge, sent a few hundred raw
HTTP requests over a socket (broken JSON, lying Content-Length, chunked and oversized bodies), whose answer must
be the status the parsers predict, in OpenAI's error shape. Hypothesis runs derandomized and without its example
database, so every run tries the same cases; conftest prints how many.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import functools
import gzip
import http.client
import json
import os
import socket
import string
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from claude_bridge.claude.invocation import ClaudeInvocation, ClaudeSettings, child_env
from claude_bridge.openai.completions import CompletionCreateParams
from claude_bridge.openai.errors import OpenAIError
from claude_bridge.openai.moderations import ModerationCreateParams
from claude_bridge.openai.responses import ResponseCreateParams
from claude_bridge.translate import legacy, responses
from claude_bridge.translate.model_map import ModelMap
from claude_bridge.translate.request import HistoryMode, chat_job, parse_chat_request, parse_request
from conftest import FUZZ_CASES, Bridge

CASES: collections.Counter[str] = collections.Counter()

MODELS = ModelMap.from_entries([])


def fuzz(examples: int) -> settings:
    """Every run tries the same cases: CI stays deterministic, and a failure reproduces."""
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )


# The prompt of the valid templates: a socket case that happens to be valid gets a short fake answer.
PROMPT = "[[fake:reply text=ok]]"


@pytest.fixture(scope="module", autouse=True)
def _report_cases(pytestconfig: pytest.Config) -> None:
    pytestconfig.stash[FUZZ_CASES] = CASES


def counted(test: Callable[..., None]) -> Callable[..., None]:
    """Counts each example that passed under its test's id, for the summary line."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        test(*args, **kwargs)
        CASES[os.environ["PYTEST_CURRENT_TEST"].split("::")[-1].removesuffix(" (call)")] += 1

    return run


# --- the translation path, as addon.py runs it -------------------------------------------------------------


def _cli_inputs(invocation: ClaudeInvocation) -> None:
    """Everything the CLI is handed, encoded as the spawn will: argv and environment strings, stdin JSON."""
    argv = [invocation.model, invocation.effort or ""]
    env = child_env(ClaudeSettings(), invocation, {})
    for value in [*argv, *env.values()]:
        assert "\0" not in value
        os.fsencode(value)
    messages = [*invocation.history, invocation.replay] if invocation.replay else list(invocation.history)
    json.dumps([message.content for message in messages] + [invocation.prompt, invocation.system_prompt])
    json.dumps(invocation.json_schema)


def _chat(body: bytes, history: HistoryMode) -> None:
    _cli_inputs(chat_job(parse_chat_request(body), MODELS, history).invocation)


def _responses(body: bytes, history: HistoryMode) -> None:
    request = parse_request(body, ResponseCreateParams)
    store = responses.ResponseStore(1)  # empty: every id a client names is unknown, as to a new bridge
    earlier = store.conversation(request.previous_response_id) if request.previous_response_id else []
    chat, _ = responses.chat_request(request, earlier, store.item)
    _cli_inputs(chat_job(chat, MODELS, history).invocation)


def _completions(body: bytes, history: HistoryMode) -> None:
    chat = legacy.chat_request(parse_request(body, CompletionCreateParams))
    _cli_inputs(chat_job(chat, MODELS, history).invocation)


def _moderations(body: bytes, history: HistoryMode) -> None:
    json.dumps(legacy.not_flagged(parse_request(body, ModerationCreateParams)).model_dump())


TRANSLATE: dict[str, Callable[[bytes, HistoryMode], None]] = {
    "/v1/chat/completions": _chat,
    "/v1/responses": _responses,
    "/v1/completions": _completions,
    "/v1/moderations": _moderations,
}
ENDPOINTS = list(TRANSLATE)


def outcome(endpoint: str, body: bytes, history: HistoryMode = "resume") -> OpenAIError | None:
    """None when the request would run; else its OpenAI error, which must be a client error.

    Any other exception propagates and fails the test: in the bridge it would be a 500.
    """
    try:
        TRANSLATE[endpoint](body, history)
    except OpenAIError as e:
        assert 400 <= e.status < 500, e.error
        json.dumps(e.response().model_dump())
        return e
    return None


# --- strategies --------------------------------------------------------------------------------------------

TEMPLATES: dict[str, list[dict[str, Any]]] = {
    "/v1/chat/completions": [
        {
            "model": "gpt-4o",
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": PROMPT}],
        },
        {
            "model": "claude-sonnet-4-5-20250929",
            "messages": [
                {"role": "developer", "content": [{"type": "text", "text": "Use the tool."}]},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    ],
                },
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": PROMPT},
            ],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
            "tool_choice": {"type": "function", "function": {"name": "f"}},
            "max_tokens": 100,
            "stream": True,
            "stream_options": {"include_usage": True},
            "stop": ["\n\n"],
            "response_format": {"type": "text"},
            "reasoning_effort": "low",
        },
        {
            "model": "gpt-3.5-turbo",
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": None, "function_call": {"name": "w", "arguments": "{}"}},
                {"role": "function", "name": "w", "content": PROMPT},
            ],
            "functions": [{"name": "w", "description": "the weather"}],
            "function_call": "auto",
            "max_completion_tokens": 50,
            "n": 1,
        },
    ],
    "/v1/responses": [
        {"model": "gpt-5", "input": PROMPT, "instructions": "Be brief.", "max_output_tokens": 100},
        {
            "model": "o3",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "go"}]},
                {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": PROMPT},
            ],
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}, {"type": "web_search"}],
            "tool_choice": {"type": "function", "name": "f"},
            "text": {"format": {"type": "text"}},
            "reasoning": {"effort": "high"},
            "stream": True,
            "store": False,
        },
    ],
    "/v1/completions": [
        {"model": "gpt-3.5-turbo-instruct", "prompt": PROMPT, "max_tokens": 5, "stop": "\n"},
        {"model": "sonnet", "prompt": [PROMPT], "stream": True, "n": 1, "echo": False},
    ],
    "/v1/moderations": [{"input": "text"}, {"input": ["a", "b"], "model": "omni-moderation-latest"}],
}

# Structured output needs the model to call the CLI's StructuredOutput tool, which no directive of the fake API
# asks for: these go to the parsers only.
STRUCTURED: dict[str, list[dict[str, Any]]] = {
    "/v1/chat/completions": [
        {**TEMPLATES["/v1/chat/completions"][1], "response_format": response_format}
        for response_format in (
            {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}, "strict": True}},
            {"type": "json_object"},
        )
    ],
    "/v1/responses": [
        {**TEMPLATES["/v1/responses"][1], "text": {"format": {"type": "json_schema", "name": "r", "schema": {}}}}
    ],
}

ROLES = ("system", "developer", "user", "assistant", "tool", "function")

ABSURD_NUMBERS = st.sampled_from(
    [-1, 0, 2**31, 2**63, 10**30, -(10**30), 0.5, 1.0, 1e308, float("inf"), float("nan"), True, False]
)
BAD_MODEL_NAMES = st.sampled_from(
    ["gpt-4o\r\nX-Injected: 1", "claude-x\ny", "claude-\0", "gpt 4o", " gpt-4o", "gpt-4o\t", "claude-\u2028", "\x7f"]
)
ODD_STRINGS = st.one_of(
    st.text(max_size=20),
    st.sampled_from(["", " ", "\n", "\r\n", "\0", "\ud800", "\udcff", "🙂"]),
    st.just(10_000).map(lambda n: "x" * n),
    BAD_MODEL_NAMES,
    st.sampled_from(ROLES),
)
# Replaced by DEEP_JSON in the encoded body: nesting too deep to build as a Python value.
DEEP = "\x00deep\x00"
DEEP_JSON = "[" * 10_000 + "]" * 10_000

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ODD_STRINGS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
# Fresh containers each time: a mutation may later add to them.
WEIRD = st.one_of(JSON, ABSURD_NUMBERS, ODD_STRINGS, st.sampled_from([[], {}, [[]], DEEP]).map(copy.deepcopy))


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a request, the whole request last (so the simplest mutation, as Hypothesis sees it, is not
    to replace the whole body)."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield from _paths(child, (*path, key))
    yield path


@st.composite
def mutated(draw: st.DrawFn, templates: list[dict[str, Any]]) -> Any:
    """A valid request with one to three things wrong: a value swapped for an odd one, removed, or added."""
    request: Any = copy.deepcopy(draw(st.sampled_from(templates)))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(list(_paths(request))))
        if not path:
            request = draw(WEIRD)
            continue
        *parents, key = path
        parent = functools.reduce(lambda node, step: node[step], parents, request)
        match draw(st.sampled_from(["replace", "remove", "add", "empty"])):
            case "replace":
                parent[key] = draw(WEIRD)
            case "remove":
                del parent[key]
            case "add" if isinstance(parent, dict):
                parent[draw(st.text(max_size=10))] = draw(WEIRD)
            case "add":
                parent.append(draw(WEIRD))
            case "empty":
                parent[key] = type(parent[key])() if isinstance(parent[key], dict | list | str) else None
    return request


@st.composite
def encoded(draw: st.DrawFn, value: Any) -> bytes:
    """JSON text of `value`, UTF-8 (invalid where it holds lone surrogates), sometimes cut or with bytes spliced in."""
    text = json.dumps(value, ensure_ascii=draw(st.booleans())).replace(json.dumps(DEEP), DEEP_JSON)
    body = text.encode("utf-8", "surrogatepass")
    match draw(st.sampled_from(["intact"] * 8 + ["cut", "splice"])):
        case "cut":
            body = body[: draw(st.integers(0, len(body)))]
        case "splice":
            at = draw(st.integers(0, len(body)))
            body = body[:at] + draw(st.binary(min_size=1, max_size=4)) + body[at:]
    return body


def bodies(endpoint: str, structured: bool = False) -> st.SearchStrategy[bytes]:
    """Mutated requests, and the endpoint's fields with arbitrary values."""
    templates = TEMPLATES[endpoint] + (STRUCTURED.get(endpoint, []) if structured else [])
    fields = sorted({field for template in templates for field in template})
    soup = st.dictionaries(st.sampled_from(fields), WEIRD, max_size=len(fields))
    return st.one_of(mutated(templates), soup).flatmap(encoded)


HISTORY_MODES = st.sampled_from(["resume", "flatten"])


# --- the parsers -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@fuzz(1000)
@given(body=st.binary(max_size=300))
@counted
def test_arbitrary_bytes_are_answered_or_refused_with_a_4xx(endpoint: str, body: bytes) -> None:
    outcome(endpoint, body)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@fuzz(1000)
@given(data=st.data(), history=HISTORY_MODES)
@counted
def test_mutated_requests_are_answered_or_refused_with_a_4xx(
    endpoint: str, data: st.DataObject, history: HistoryMode
) -> None:
    outcome(endpoint, data.draw(bodies(endpoint, structured=True)), history)


TOKEN_FIELDS = [
    ("/v1/chat/completions", "max_tokens"),
    ("/v1/chat/completions", "max_completion_tokens"),
    ("/v1/responses", "max_output_tokens"),
    ("/v1/completions", "max_tokens"),
]


@fuzz(400)
@given(
    endpoint_field=st.sampled_from(TOKEN_FIELDS),
    value=st.one_of(
        st.integers(max_value=0),
        st.integers(min_value=2**31),
        st.floats(),
        st.text(max_size=10),
        st.booleans(),
        st.lists(st.integers(), max_size=2),
    ),
)
@counted
def test_absurd_max_tokens_are_refused_naming_the_field(endpoint_field: tuple[str, str], value: Any) -> None:
    endpoint, field = endpoint_field
    error = outcome(endpoint, json.dumps({**TEMPLATES[endpoint][0], field: value}).encode())
    assert error is not None
    assert (error.status, error.error.param) == (400, field)


def _one_message(endpoint: str, message: Any) -> dict[str, Any]:
    key = "messages" if endpoint == "/v1/chat/completions" else "input"
    return {"model": "gpt-4o", key: [message]}


@fuzz(400)
@given(
    endpoint_roles=st.sampled_from(
        [("/v1/chat/completions", ROLES), ("/v1/responses", ("user", "assistant", "system", "developer"))]
    ),
    role=st.one_of(st.text(max_size=12), st.none(), st.integers(), st.sampled_from(ROLES).map(str.upper)),
)
@counted
def test_unknown_roles_are_refused_naming_the_message(endpoint_roles: tuple[str, tuple[str, ...]], role: Any) -> None:
    endpoint, roles = endpoint_roles
    assume(role not in roles)
    error = outcome(endpoint, json.dumps(_one_message(endpoint, {"role": role, "content": PROMPT})).encode())
    assert error is not None
    assert error.status == 400
    assert error.error.param is not None and error.error.param.startswith(("messages[0]", "input[0]"))


BLANK_TEXT = st.text(alphabet=" \t\r\n\u00a0\u2003", max_size=5)


def _blank_content(part_type: str) -> st.SearchStrategy[Any]:
    return st.one_of(BLANK_TEXT, st.lists(BLANK_TEXT.map(lambda text: {"type": part_type, "text": text}), max_size=3))


EMPTY_REQUESTS = st.one_of(
    st.just(("/v1/chat/completions", {"model": "gpt-4o", "messages": []})),
    st.just(("/v1/responses", {"model": "gpt-4o", "input": []})),
    _blank_content("text").map(
        lambda content: (
            "/v1/chat/completions",
            {"model": "gpt-4o", "messages": [{"role": "user", "content": content}]},
        )
    ),
    _blank_content("input_text").map(
        lambda content: ("/v1/responses", {"model": "gpt-4o", "input": [{"role": "user", "content": content}]})
    ),
    BLANK_TEXT.map(lambda text: ("/v1/responses", {"model": "gpt-4o", "input": text})),
    BLANK_TEXT.map(lambda text: ("/v1/completions", {"model": "gpt-4o", "prompt": text})),
)


@fuzz(300)
@given(endpoint_request=EMPTY_REQUESTS)
@counted
def test_empty_messages_are_refused(endpoint_request: tuple[str, dict[str, Any]]) -> None:
    endpoint, request = endpoint_request
    error = outcome(endpoint, json.dumps(request).encode())
    assert error is not None and error.status == 400


# A character no model name may hold: whitespace, control and format characters, lone surrogates.
UNPRINTABLE = st.characters(categories=["Cc", "Cf", "Cs", "Zs", "Zl", "Zp"])


@fuzz(500)
@given(
    endpoint=st.sampled_from(ENDPOINTS),
    name=st.tuples(st.sampled_from(["", "gpt-4o", "claude-", "sonnet"]), UNPRINTABLE, st.text(max_size=8)).map("".join),
)
@counted
def test_model_names_with_whitespace_or_control_characters_are_refused(endpoint: str, name: str) -> None:
    """Before the model map: `claude-*` names go to the CLI's argv as they are, and every name is echoed back."""
    error = outcome(endpoint, json.dumps({**TEMPLATES[endpoint][0], "model": name}).encode())
    assert error is not None
    assert (error.status, error.error.param) == (400, "model")


# --- the running bridge ------------------------------------------------------------------------------------

# The fuzzed bridge's body limit: small, so oversized bodies cost little to send.
MAX_BODY = 64 * 1024
# Far longer than any answer here takes; a request still unanswered then is a hung connection.
ANSWER_TIMEOUT = 30

# Framing headers are the request's own; Content-Encoding is left to its own test.
RESERVED_HEADERS = {
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "expect",
    "upgrade",
    "content-encoding",
}
HEADER_NAMES = st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=16)
# Header values may hold any visible byte, tab and space (obs-text too); never CR, LF or NUL, which end or break one.
HEADER_VALUES = st.binary(max_size=40).map(lambda raw: bytes(b for b in raw if b == 9 or (b >= 32 and b != 127)))


# How much more a lying Content-Length promises than is sent.
LONG_BY = 100


@dataclass(frozen=True)
class RawRequest:
    """A request as it goes on the wire. `framing`: an honest Content-Length, one that promises half the body
    (the rest is ignored), one that promises more than comes before the client stops sending, or chunked."""

    endpoint: str
    body: bytes
    method: str = "POST"
    path: str = ""
    headers: tuple[tuple[bytes, bytes], ...] = ((b"Content-Type", b"application/json"),)
    framing: Literal["length", "short", "long", "chunked"] = "length"
    padding: int = 0  # spaces after the body, to make it oversized (kept apart for a readable failure report)

    @property
    def payload(self) -> bytes:
        return self.body + b" " * self.padding

    def wire(self) -> bytes:
        payload = self.payload
        declared = {"length": len(payload), "short": len(payload) // 2, "long": len(payload) + LONG_BY}
        head = [
            f"{self.method} {self.path or self.endpoint} HTTP/1.1".encode(),
            b"Host: api.openai.com",
            b"Connection: close",
            *(name + b": " + value for name, value in self.headers),
        ]
        if self.framing == "chunked":
            head.append(b"Transfer-Encoding: chunked")
            chunks = [payload[i : i + 4096] for i in range(0, len(payload), 4096)]
            payload = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"
        else:
            head.append(b"Content-Length: %d" % declared[self.framing])
        return b"\r\n".join(head) + b"\r\n\r\n" + payload

    def refused_as_not_json(self) -> bool:
        content_type = dict(self.headers).get(b"Content-Type", b"")
        return self.method == "POST" and content_type.split(b";")[0].strip().lower() != b"application/json"

    def expected(self) -> set[int | None]:
        """The statuses the bridge may answer with, as its parsers decide for the body it reads.

        None is a connection closed without an answer: right only when the client stopped sending mid-body, when
        there is no request to answer (mitmproxy may still have refused an oversized Content-Length by then).
        """
        body = self.payload
        if self.framing == "long":
            oversized = len(body) + LONG_BY > MAX_BODY
            return {None, 413} if oversized else {None, 415} if self.refused_as_not_json() else {None}
        if self.framing == "length" and len(body) > MAX_BODY:
            return {413}  # refused on its Content-Length, before the type is looked at
        if self.refused_as_not_json():
            return {415}
        if self.framing == "short":
            body = body[: len(body) // 2]
        if len(body) > MAX_BODY:
            return {413}
        if self.method != "POST":
            return {405}
        error = outcome(self.endpoint, body)
        return {error.status if error else 200}


@st.composite
def raw_requests(draw: st.DrawFn) -> RawRequest:
    endpoint = draw(st.sampled_from(ENDPOINTS))
    content_type = draw(
        st.sampled_from([b"application/json", b"text/plain", b"", b"application/json; charset=latin-1"])
    )
    extra_headers = draw(st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=3))
    return RawRequest(
        endpoint=endpoint,
        body=draw(bodies(endpoint)),
        method=draw(st.sampled_from(["POST"] * 18 + ["GET", "PUT"])),
        path=endpoint + draw(st.sampled_from(["", "", "", "/", "?x=%ff%00", "?stream=true"])),
        headers=(
            (b"Content-Type", content_type),
            *((name.encode(), value) for name, value in extra_headers if name.lower() not in RESERVED_HEADERS),
        ),
        framing=draw(st.sampled_from(["length"] * 6 + ["short", "long", "chunked"])),
        padding=draw(st.sampled_from([0] * 9 + [MAX_BODY + 1])),
    )


class Answer(NamedTuple):
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def send(port: int, request: RawRequest) -> Answer | None:
    """The request on a new connection; the answer, or None when the bridge closed without one."""
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_TIMEOUT) as sock:
        # The bridge may answer (413) and close before it has read the whole body.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request.wire())
            if request.framing == "long":
                sock.shutdown(socket.SHUT_WR)  # the promised rest never comes
        response = http.client.HTTPResponse(sock)
        try:
            response.begin()
            return Answer(response.status, response.getheaders(), response.read())
        except http.client.RemoteDisconnected:
            return None
        except TimeoutError:
            pytest.fail(f"no answer within {ANSWER_TIMEOUT} s to {request!r:.300}")


@pytest.fixture(scope="module")
def fuzzed_bridge(start_bridge: Callable[..., Bridge]) -> Bridge:
    return start_bridge("claude_max_retries=0", f"bridge_max_body={MAX_BODY}")


def assert_bridge_unharmed(bridge: Bridge, log_from: int) -> None:
    """No traceback in its log since `log_from`, and no CLI left running."""
    deadline = time.monotonic() + 10
    while bridge.claude_children() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert bridge.claude_children() == []
    assert b"Traceback" not in bridge.log.read_bytes()[log_from:]


def test_raw_requests_get_the_predicted_answer_in_openais_shape(fuzzed_bridge: Bridge) -> None:
    @fuzz(300)
    @given(request=raw_requests())
    @counted
    def raw_request(request: RawRequest) -> None:
        answer = send(fuzzed_bridge.port, request)
        assert (answer and answer.status) in request.expected(), answer
        if answer is not None and answer.status != 200:
            assert set(json.loads(answer.body)["error"]) == {"message", "type", "param", "code"}
            assert b"Traceback" not in answer.body

    log_from = fuzzed_bridge.log.stat().st_size
    raw_request()
    assert_bridge_unharmed(fuzzed_bridge, log_from)


INJECTED_MODELS = st.tuples(
    st.sampled_from(["gpt-4o", "claude-sonnet-4-5", "sonnet", ""]),
    st.sampled_from(["\r\n", "\n", "\r", "\r\n\r\n", "\0", "\u2028", "\x85", " "]),
).map(lambda parts: f"{parts[0]}{parts[1]}X-Injected: 1")


def test_header_injection_in_model_names_is_refused(fuzzed_bridge: Bridge) -> None:
    @fuzz(60)
    @given(endpoint=st.sampled_from(ENDPOINTS), model=INJECTED_MODELS)
    @counted
    def injected(endpoint: str, model: str) -> None:
        body = json.dumps({**TEMPLATES[endpoint][0], "model": model}).encode()
        answer = send(fuzzed_bridge.port, RawRequest(endpoint, body))
        assert answer is not None and answer.status == 400
        assert json.loads(answer.body)["error"]["param"] == "model"
        assert "x-injected" not in {name.lower() for name, _ in answer.headers}

    log_from = fuzzed_bridge.log.stat().st_size
    injected()
    assert_bridge_unharmed(fuzzed_bridge, log_from)


@pytest.mark.parametrize(
    ("encoding", "status"), [(b"gzip", 400), (b"deflate", 400), (b"x-unknown", 415)], ids=["gzip", "deflate", "unknown"]
)
def test_a_body_its_content_encoding_cannot_decode_is_a_4xx(
    fuzzed_bridge: Bridge, encoding: bytes, status: int
) -> None:
    body = json.dumps(TEMPLATES["/v1/chat/completions"][0]).encode()
    headers = ((b"Content-Type", b"application/json"), (b"Content-Encoding", encoding))
    answer = send(fuzzed_bridge.port, RawRequest("/v1/chat/completions", body, headers=headers))
    assert answer is not None and answer.status == status
    assert set(json.loads(answer.body)["error"]) == {"message", "type", "param", "code"}


def test_a_small_gzip_body_past_the_limit_once_inflated_is_413(fuzzed_bridge: Bridge) -> None:
    bomb = gzip.compress(b"[" * (8 * 1024 * 1024))  # 8 MB inflated, about 8 KB sent: under the limit until inflated
    assert len(bomb) < MAX_BODY
    headers = ((b"Content-Type", b"application/json"), (b"Content-Encoding", b"gzip"))
    answer = send(fuzzed_bridge.port, RawRequest("/v1/chat/completions", bomb, headers=headers))
    assert answer is not None and answer.status == 413


def test_a_gzipped_request_is_answered(fuzzed_bridge: Bridge) -> None:
    body = gzip.compress(json.dumps(TEMPLATES["/v1/chat/completions"][0]).encode())
    headers = ((b"Content-Type", b"application/json"), (b"Content-Encoding", b"gzip"))
    answer = send(fuzzed_bridge.port, RawRequest("/v1/chat/completions", body, headers=headers))
    assert answer is not None and answer.status == 200
