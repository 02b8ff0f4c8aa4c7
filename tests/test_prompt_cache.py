"""Anthropic's prompt cache as the fake API simulates it (fake_prompt_cache.py): the API's rules, and the usage the
fake reports and records."""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest

from fake_anthropic import ApiError, FakeAnthropic, Reply, Usage
from fake_prompt_cache import CacheUse, Prompt, PromptCache, estimate_tokens

MODEL = "claude-sonnet-5-5"  # what the CLI makes of "sonnet", the bridge's model for gpt-4o


def block(text: str, ttl: str | None = None) -> dict[str, Any]:
    made: dict[str, Any] = {"type": "text", "text": text}
    return made | ({"cache_control": {"type": "ephemeral", "ttl": ttl}} if ttl else {})


def body(system: list[dict[str, Any]], *messages: tuple[str, list[dict[str, Any]]], model: str = MODEL) -> Any:
    return {"model": model, "system": system, "messages": [{"role": r, "content": c} for r, c in messages]}


def tokens(*blocks: dict[str, Any]) -> int:
    return sum(estimate_tokens({k: v for k, v in b.items() if k != "cache_control"}) for b in blocks)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


# --- the simulation follows the API's rules ---------------------------------------------------------------------


def test_a_block_costs_its_compact_json_characters_over_four_rounded_up() -> None:
    assert estimate_tokens({"type": "text", "text": "abcd"}) == 8  # 29 characters
    assert estimate_tokens({"type": "text", "text": "abc"}) == 7  # 28


def test_a_second_identical_request_reads_what_the_first_wrote() -> None:
    cache = PromptCache(min_tokens=0)
    system, question = block("You are terse.", "5m"), block("hi")
    request = Prompt.parse(body([system], ("user", [question])))

    assert cache.use(request) == CacheUse(read=0, written=tokens(system), uncached=tokens(question))
    assert cache.use(request) == CacheUse(read=tokens(system), written=0, uncached=tokens(question))


def test_creation_is_what_lies_between_the_read_prefix_and_the_last_breakpoint() -> None:
    cache = PromptCache(min_tokens=0)
    system, first, answer, second, tail = block("S", "5m"), block("u1"), block("a1"), block("u2"), block("tail")
    cache.use(Prompt.parse(body([system], ("user", [first | block("u1", "5m")]))))

    grown = body([system], ("user", [first]), ("assistant", [answer]), ("user", [block("u2", "5m"), tail]))
    used = cache.use(Prompt.parse(grown))

    assert used == CacheUse(read=tokens(system, first), written=tokens(answer, second), uncached=tokens(tail))


@pytest.mark.parametrize(("blocks_between", "read"), [(20, True), (21, False)])
def test_a_read_ends_at_the_breakpoint_or_one_of_the_20_blocks_before_it(blocks_between: int, read: bool) -> None:
    cache = PromptCache(min_tokens=0)
    cache.use(Prompt.parse(body([block("S", "5m")], ("user", [block("q")]))))
    later = [block(f"b{i}") for i in range(blocks_between - 1)] + [block("last", "5m")]

    used = cache.use(Prompt.parse(body([block("S")], ("user", later))))

    assert used.read == (tokens(block("S")) if read else 0)


def test_a_string_is_the_same_block_as_its_text_block() -> None:
    """The CLI sends its environment message as a block with a breakpoint, then on the next turn as a string."""
    cache = PromptCache(min_tokens=0)
    cache.use(Prompt.parse(body([], ("user", [block("q")]), ("system", [block("env", "1h")]))))

    grown = body([], ("user", [block("q")]), ("system", "env"), ("user", [block("next", "1h")]))  # type: ignore[arg-type]

    assert cache.use(Prompt.parse(grown)).read == tokens(block("q"), block("env"))


def test_roles_and_message_boundaries_are_part_of_the_prefix() -> None:
    cache = PromptCache(min_tokens=0)
    cache.use(Prompt.parse(body([], ("user", [block("a"), block("b", "5m")]))))

    assert cache.use(Prompt.parse(body([], ("user", [block("a")]), ("user", [block("b", "5m")])))).read == 0
    assert cache.use(Prompt.parse(body([], ("assistant", [block("a"), block("b", "5m")])))).read == 0


def test_entries_live_for_their_ttl_from_their_last_use() -> None:
    clock = Clock()
    cache = PromptCache(min_tokens=0, clock=clock)
    five, hour = Prompt.parse(body([block("five", "5m")])), Prompt.parse(body([block("hour", "1h")]))
    cache.use(five), cache.use(hour)

    clock.now = 299
    assert cache.use(five).read > 0, "read within 5 minutes, which starts them again"
    clock.now = 598
    assert cache.use(five).read > 0
    assert cache.use(hour).read > 0
    clock.now = 598 + 301
    assert cache.use(five).read == 0, "expired 5 minutes after its last use"
    clock.now = 598 + 3601
    assert cache.use(hour).read == 0


@pytest.mark.parametrize(
    ("model", "chars", "cached"),
    [(MODEL, 4000, False), (MODEL, 4200, True), ("claude-haiku-5", 4200, False), ("claude-haiku-5", 8200, True)],
)
def test_a_prefix_under_the_models_minimum_is_not_cached(model: str, chars: int, cached: bool) -> None:
    """1024 tokens for Sonnet and Opus, 2048 for Haiku; shorter prompts are answered, not refused."""
    cache = PromptCache()
    request = Prompt.parse(body([block("x" * chars, "5m")], ("user", [block("q")]), model=model))

    first = cache.use(request)

    assert (first.written > 0, cache.use(request).read > 0) == (cached, cached)
    assert first.total == request.tokens()


def test_models_do_not_share_entries() -> None:
    cache = PromptCache(min_tokens=0)
    cache.use(Prompt.parse(body([block("S", "5m")])))

    assert cache.use(Prompt.parse(body([block("S", "5m")], model="claude-opus-5"))).read == 0


def test_writes_are_counted_by_ttl_and_a_top_level_cache_control_marks_the_last_block() -> None:
    cache = PromptCache(min_tokens=0)
    request = {**body([block("S", "1h")], ("user", [block("q")])), "cache_control": {"type": "ephemeral"}}

    assert cache.use(Prompt.parse(request)) == CacheUse(0, tokens(block("S"), block("q")), tokens(block("S")), 0)


@pytest.mark.parametrize(
    ("request_body", "message"),
    [
        (body([block(str(i), "5m") for i in range(5)]), "maximum of 4 blocks with cache_control"),
        (body([block("S", "2h")]), "ttl"),
        (body([{"type": "text", "text": "S", "cache_control": {"type": "persistent"}}]), "ephemeral"),
        ({"messages": [{"role": "user", "content": 3}]}, "content"),
    ],
)
def test_cache_control_the_api_refuses_is_a_value_error(request_body: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Prompt.parse(request_body)


# --- the fake API reports it ------------------------------------------------------------------------------------


def post(fake: FakeAnthropic, payload: dict[str, Any]) -> tuple[int, bytes]:
    client = http.client.HTTPConnection(fake.url.removeprefix("http://"), timeout=5)
    client.request("POST", "/v1/messages", json.dumps(payload))
    response = client.getresponse()
    return response.status, response.read()


def sse_usages(raw: bytes) -> dict[str, dict[str, Any]]:
    """The usage of message_start and message_delta in a streamed answer."""
    events = [json.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: ")]
    usages = {e["type"]: e.get("usage") for e in events if e["type"] == "message_delta"}
    return usages | {e["type"]: e["message"]["usage"] for e in events if e["type"] == "message_start"}


def test_the_fake_reports_and_records_cache_use_streaming_and_not() -> None:
    request = body([block("S" * 40, "1h")], ("user", [block("hello")]))
    system, question = tokens(block("S" * 40)), tokens(block("hello"))
    with FakeAnthropic(min_cache_tokens=0) as fake:
        status, raw = post(fake, request)
        streamed = sse_usages(post(fake, {**request, "stream": True})[1])
        first, second = fake.requests

    assert status == 200
    assert json.loads(raw)["usage"] == {
        "input_tokens": question,
        "output_tokens": 3,  # "ECHO: hello" in 4-character deltas
        "cache_creation_input_tokens": system,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": system},
    }
    expected = {"input_tokens": question, "cache_creation_input_tokens": 0, "cache_read_input_tokens": system}
    assert streamed["message_start"].items() >= {**expected, "output_tokens": 1}.items()
    assert streamed["message_delta"].items() >= {**expected, "output_tokens": 3}.items()
    assert (first.cache_read, first.cache_write, second.cache_read, second.cache_write) == (0, system, system, 0)


def test_errors_touch_no_entry_and_given_usage_replaces_only_the_report() -> None:
    request = body([block("S", "5m")], ("user", [block("hello")]))
    with FakeAnthropic(min_cache_tokens=0) as fake:
        fake.enqueue(ApiError(529, "overloaded_error", "busy"), Reply(("hi",), usage=Usage(input_tokens=7)))
        statuses = [post(fake, request)[0] for _ in range(3)]
        refused = post(fake, body([block(str(i), "5m") for i in range(5)]))
        errored, replied, again, _ = fake.requests

    assert statuses == [529, 200, 200]
    assert errored.cache == CacheUse()
    assert (replied.cache_write, again.cache_read) == (tokens(block("S")), tokens(block("S")))
    assert refused[0] == 400 and b"maximum of 4" in refused[1]
