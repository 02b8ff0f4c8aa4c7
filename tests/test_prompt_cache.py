"""Anthropic's prompt cache: the fake API's simulation of it, then what the real CLI and the bridge get from it.

The figures that matter are the share of a follow-up's input read from cache on a 10-turn chat: one CLI process
fed every turn on stdin reads the whole earlier conversation back; the bridge, a new CLI per request resuming a
synthetic transcript, reads only the system prompt back. The shares are printed (run with `-s` to see them), with
the price of that input relative to no caching at all (reads cost 0.1 of an input token, 1-hour writes 2).
"""

from __future__ import annotations

import http.client
import itertools
import json
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from claude_bridge.claude.invocation import MAX_TURNS, SAFE_FLAGS
from conftest import CLAUDE_BIN
from fake_anthropic import ApiError, FakeAnthropic, Recorded, Reply, Usage, cli_env
from fake_prompt_cache import CacheUse, Prompt, PromptCache, estimate_tokens, minimum_tokens

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


# --- the real CLI and the bridge --------------------------------------------------------------------------------

LONG_SYSTEM = "You are the support assistant of a bicycle shop; answer briefly and politely. " * 60  # ~1,200 tokens
SHORT_TURNS = [f"Question {i}: is a {20 + i}-inch wheel right for a rider of my height?" for i in range(10)]
LONG_TURNS = [turn + " My bike has a steel frame, rim brakes and a 1x drivetrain." * 10 for turn in SHORT_TURNS]
CHATS = {
    # The chat DESIGN.md measured: no client system prompt, short turns, caching from the first token.
    "short chat, no minimum": ("", 0, SHORT_TURNS),
    # What a real account would be billed (Sonnet's minimum of 1024 tokens) for an app with a long system prompt,
    "long system prompt, real minimum": (LONG_SYSTEM, None, SHORT_TURNS),
    # ... and for one without a system prompt whose conversation passes the minimum at its third turn.
    "long turns, real minimum": ("", None, LONG_TURNS),
}


@dataclass(frozen=True)
class Chat:
    name: str
    system_prompt: str
    minimum: int  # of the fake's cache
    turns: list[str]


@pytest.fixture(params=list(CHATS))
def chat(request: pytest.FixtureRequest, fake: Any) -> Chat:
    """A chat to hold, with the fake's cache minimum set for it."""
    system_prompt, minimum, turns = CHATS[request.param]
    fake.server.cache.min_tokens = minimum
    return Chat(request.param, system_prompt, minimum_tokens(MODEL) if minimum is None else minimum, turns)


def follow_up_share(requests: list[Recorded]) -> float:
    """The share of the follow-ups' input read from cache."""
    follow_ups = requests[1:]
    return sum(r.cache_read for r in follow_ups) / sum(r.cache.total for r in follow_ups)


def follow_up_price(requests: list[Recorded]) -> float:
    """What the follow-ups' input costs, as a share of its price without caching (reads 0.1, writes 1.25 or 2)."""
    follow_ups = [r.cache for r in requests[1:]]
    price = sum(c.read * 0.1 + c.written_1h * 2 + (c.written - c.written_1h) * 1.25 + c.uncached for c in follow_ups)
    return price / sum(c.total for c in follow_ups)


def test_a_second_identical_request_reads_the_system_prompt_back(bridge: Any, fake: Any) -> None:
    messages = [{"role": "system", "content": LONG_SYSTEM}, {"role": "user", "content": "hi"}]
    client = bridge.client()

    client.chat.completions.create(model="gpt-4o", messages=messages)
    again = client.chat.completions.create(model="gpt-4o", messages=messages)

    first, second = fake.requests
    system = Prompt.parse(second.body).section_tokens("system")
    assert system > 1024, "over Sonnet's minimum, as the real API needs"
    assert (first.cache_read, first.cache_write) == (0, first.cache.total), "written up to the environment block"
    assert second.cache_read == system, "the environment names each run's own directory: read up to it only"
    assert again.usage.prompt_tokens == second.cache.total
    assert again.usage.prompt_tokens_details.cached_tokens == system


def test_one_cli_fed_every_turn_reads_the_whole_earlier_conversation_back(
    chat: Chat, fake: Any, tmp_path: Path
) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "cwd").mkdir()
    (tmp_path / "system.txt").write_text(chat.system_prompt)
    argv = [CLAUDE_BIN, *SAFE_FLAGS, "--max-turns", str(MAX_TURNS), "--model", "sonnet"]
    argv += ["--system-prompt-file", str(tmp_path / "system.txt")]
    env = cli_env(tmp_path / "home", fake.url)
    process = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=tmp_path / "cwd", env=env
    )
    assert process.stdin is not None and process.stdout is not None
    watchdog = threading.Timer(120, process.kill)
    watchdog.start()
    results = []
    try:
        for turn in chat.turns:
            message = {"role": "user", "content": [{"type": "text", "text": turn}]}
            process.stdin.write(json.dumps({"type": "user", "message": message}) + "\n")
            process.stdin.flush()  # and kept open: the next turn goes to the same process
            results.append(next(line for line in map(json.loads, process.stdout) if line["type"] == "result"))
        process.stdin.close()
        assert process.wait(30) == 0
    finally:
        watchdog.cancel()

    requests = fake.requests
    assert len(requests) == len(results) == len(chat.turns)
    for previous, request in itertools.pairwise(requests):
        if previous.cache.total >= chat.minimum:
            assert request.cache_read == previous.cache.total, "everything the previous turn sent"
            assert request.cache.uncached == 0
    assert [r["usage"]["cache_read_input_tokens"] for r in results] == [r.cache_read for r in requests]
    share = follow_up_share(requests)
    price = follow_up_price(requests)
    print(f"\none CLI, {len(chat.turns)} turns on stdin ({chat.name}): {share:.0%} read from cache, priced {price:.0%}")
    assert share > 0.75 and price < 0.5


def test_a_cli_per_request_resuming_the_history_reads_only_the_system_prompt_back(
    chat: Chat, bridge: Any, fake: Any
) -> None:
    client = bridge.client()
    messages = [{"role": "system", "content": chat.system_prompt}] if chat.system_prompt else []
    cached = []
    for turn in chat.turns:
        messages.append({"role": "user", "content": turn})
        completion = client.chat.completions.create(model="gpt-4o", messages=messages)
        messages.append({"role": "assistant", "content": completion.choices[0].message.content})
        cached.append(completion.usage.prompt_tokens_details.cached_tokens)

    requests = fake.requests
    assert cached == [r.cache_read for r in requests]
    for request in requests[1:]:
        system = Prompt.parse(request.body).section_tokens("system")
        assert request.cache_read == (system if system >= chat.minimum else 0)
    share = follow_up_share(requests)
    price = follow_up_price(requests)
    print(f"\na CLI per request, --resume ({chat.name}): {share:.0%} read from cache, priced {price:.0%}")
    if not chat.system_prompt:
        assert price > 1, "every request writes the whole conversation to cache for an hour and never reads it"
