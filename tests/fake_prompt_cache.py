"""Anthropic's prompt cache as the fake API simulates it: what a request reads, writes and pays for in full.

Rules followed, from Anthropic's prompt caching documentation:

- The prompt is tools, then system, then messages, each cut into blocks: one per tool definition, per system text
  block and per message content block (a string is one text block, as the API treats it).
- `cache_control` (`{"type": "ephemeral"}`, `ttl` "5m" by default or "1h") on a block is a breakpoint; a
  top-level `cache_control` (automatic caching) puts one on the last block. More than 4 breakpoints, another
  type or another ttl is a 400.
- Reads: for each breakpoint the longest entry ending at it or at one of the 20 blocks before it (the lookback)
  whose prefix matches exactly is read. `cache_read_input_tokens` is the longest prefix read.
- Writes: an entry for the prefix ending at each breakpoint. `cache_creation_input_tokens` is what lies between
  the prefix read and the last breakpoint written; `input_tokens` is what comes after.
- A prefix shorter than the model's minimum (`minimum_tokens`) is not written, without error.
- An entry lives for its ttl from its last use (written or read).
- Entries are keyed by the model and the exact content of every block of the prefix, roles and message
  boundaries included, `cache_control` markers excluded.

Simplified:

- Tokens are estimated, not counted by Claude's tokenizer: each block is ceil(characters / 4) of its compact JSON
  (`cache_control` excluded), and nothing else in the body counts (model, max_tokens, thinking...). Deterministic,
  so tests can assert exact numbers; images count by their base64 size, not their pixels.
- What else the real API keys its caches on is not modelled: changing `tool_choice`, `thinking` or adding an image
  leaves the fake's entries valid. Neither is the rule that 1-hour breakpoints come before 5-minute ones.
- One cache for everything the fake serves (the real one is per organisation), written when the request arrives
  (the real one when the response starts), so two concurrent identical requests read each other's entries.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal

Json = dict[str, Any]

LOOKBACK = 20
"""Blocks before a breakpoint at which a read may also end."""

MAX_BREAKPOINTS = 4

TTL_SECONDS = {"5m": 300.0, "1h": 3600.0}


def minimum_tokens(model: str) -> int:
    """The shortest prefix the real API caches for a model (documented for Sonnet/Opus and Haiku)."""
    return 2048 if "haiku" in model else 1024


def estimate_tokens(block: Json) -> int:
    """The fake's token count for one block: its compact JSON's characters / 4, rounded up."""
    return -(-len(json.dumps(block, ensure_ascii=False, separators=(",", ":"))) // 4)


@dataclass(frozen=True)
class Block:
    """One block of the prompt, as far as the cache is concerned."""

    section: Literal["tools", "system", "messages"]
    content: Json  # without cache_control
    tokens: int
    ttl: str | None  # set on a breakpoint
    message: int = -1  # index of its message in `messages`
    role: str = ""


@dataclass(frozen=True)
class Prompt:
    """A request's prompt cut into blocks, with the hash of every prefix."""

    model: str
    blocks: tuple[Block, ...]
    prefix_keys: tuple[str, ...]  # prefix_keys[i]: the key of blocks[: i + 1]

    @classmethod
    def parse(cls, body: Json) -> Prompt:
        """The prompt of a Messages API body; ValueError (a 400) for cache_control the API refuses."""
        blocks = [_block("tools", tool) for tool in _content(body.get("tools") or [])]
        blocks += [_block("system", b) for b in _content(body.get("system") or [])]
        for index, message in enumerate(_content(body.get("messages") or [])):
            role = str(message.get("role", ""))
            blocks += [_block("messages", b, index, role) for b in _content(message.get("content", []))]
        automatic = body.get("cache_control")
        if automatic is not None and blocks:
            blocks[-1] = replace(blocks[-1], ttl=_ttl(automatic))
        breakpoints = sum(b.ttl is not None for b in blocks)
        if breakpoints > MAX_BREAKPOINTS:
            raise ValueError(
                f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {breakpoints}."
            )
        model = str(body.get("model", ""))
        key = hashlib.sha256(model.encode())
        keys = []
        for block in blocks:
            key.update(json.dumps([block.section, block.message, block.role, block.content], sort_keys=True).encode())
            keys.append(key.copy().hexdigest())
        return cls(model, tuple(blocks), tuple(keys))

    def tokens(self, end: int | None = None) -> int:
        """Tokens of the blocks before index `end` (all of them if None)."""
        return sum(block.tokens for block in self.blocks[:end])

    def section_tokens(self, *sections: str) -> int:
        """Tokens of the blocks in these sections ("tools", "system", "messages")."""
        return sum(block.tokens for block in self.blocks if block.section in sections)


def _content(content: object) -> list[Json]:
    """Blocks of a string (one text block) or a list of blocks; ValueError for anything else."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not all(isinstance(block, dict) for block in content):
        raise ValueError("content: must be a string or a list of blocks")
    return content


def _block(section: Literal["tools", "system", "messages"], raw: Json, message: int = -1, role: str = "") -> Block:
    control = raw.get("cache_control")
    content = {k: v for k, v in raw.items() if k != "cache_control"}
    return Block(section, content, estimate_tokens(content), None if control is None else _ttl(control), message, role)


def _ttl(control: Json) -> str:
    if not isinstance(control, dict) or control.get("type") != "ephemeral":
        raise ValueError(f"cache_control: type must be 'ephemeral', not {control!r}")
    ttl = control.get("ttl", "5m")
    if ttl not in TTL_SECONDS:
        raise ValueError(f"cache_control.ttl: must be '5m' or '1h', not {ttl!r}")
    return str(ttl)


@dataclass(frozen=True)
class CacheUse:
    """What one request read from the cache, wrote to it, and paid for in full (the API's usage fields)."""

    read: int = 0  # cache_read_input_tokens
    written: int = 0  # cache_creation_input_tokens
    written_1h: int = 0  # of which with the 1-hour ttl
    uncached: int = 0  # input_tokens

    @property
    def total(self) -> int:
        return self.read + self.written + self.uncached


@dataclass
class _Entry:
    ttl: float
    expires: float


@dataclass
class PromptCache:
    """The cache entries written so far; thread-safe. `min_tokens` None means the real API's `minimum_tokens`."""

    min_tokens: int | None = None
    clock: Callable[[], float] = time.monotonic
    _entries: dict[str, _Entry] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def use(self, prompt: Prompt) -> CacheUse:
        """Read what the prompt can read, write an entry at each breakpoint, and say what that cost."""
        breakpoints = [i for i, block in enumerate(prompt.blocks) if block.ttl is not None]
        minimum = minimum_tokens(prompt.model) if self.min_tokens is None else self.min_tokens
        with self._lock:
            now = self.clock()
            self._entries = {key: entry for key, entry in self._entries.items() if entry.expires > now}
            read_end = -1  # the last block read from cache
            for breakpoint in breakpoints:
                for end in range(breakpoint, max(breakpoint - LOOKBACK, 0) - 1, -1):
                    if end <= read_end:
                        break
                    entry = self._entries.get(prompt.prefix_keys[end])
                    if entry is not None:
                        entry.expires = now + entry.ttl
                        read_end = end
                        break
            written = written_1h = 0
            cached_end = read_end  # the last block read or written
            for breakpoint in breakpoints:
                ttl = prompt.blocks[breakpoint].ttl or "5m"
                if prompt.tokens(breakpoint + 1) < minimum:
                    continue
                if breakpoint > cached_end:
                    tokens = prompt.tokens(breakpoint + 1) - prompt.tokens(cached_end + 1)
                    written += tokens
                    written_1h += tokens if ttl == "1h" else 0
                    cached_end = breakpoint
                key = prompt.prefix_keys[breakpoint]
                old = self._entries.get(key)
                seconds = max(TTL_SECONDS[ttl], old.ttl if old else 0.0)
                self._entries[key] = _Entry(seconds, now + seconds)
        read = prompt.tokens(read_end + 1)
        return CacheUse(read, written, written_1h, prompt.tokens() - read - written)
