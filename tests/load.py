"""Many concurrent OpenAI clients against one bridge (the load test, and the benchmark's soak).

Each request carries its own token and the fake API echoes it, so an answer given to the wrong client shows.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import openai

BUSY_PAUSE = 1.0
"""Seconds a soak client waits after a 429, as a client with backoff would (not the full Retry-After)."""


@dataclass
class Tally:
    answered: int = 0
    busy: int = 0  # 429 bridge_busy: the run cap and its queue were full
    mixed_up: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return self.answered + self.busy + self.mixed_up + len(self.failures)


async def request(client: openai.AsyncOpenAI, tally: Tally, *, stream: bool) -> None:
    """One chat request; its outcome goes into the tally (a failure is recorded, never raised)."""
    prompt = f"load {uuid.uuid4()}"
    messages = [{"role": "user", "content": prompt}]
    try:
        if stream:
            chunks = await client.chat.completions.create(model="sonnet", messages=messages, stream=True)
            text = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
        else:
            answer = await client.chat.completions.create(model="sonnet", messages=messages)
            text = answer.choices[0].message.content or ""
    except openai.RateLimitError as e:
        if e.code == "bridge_busy" and e.response.headers.get("retry-after"):
            tally.busy += 1
        else:
            tally.failures.append(f"429 without the bridge's busy answer: {e.message}")
        return
    except openai.APIError as e:
        tally.failures.append(f"{type(e).__name__}: {e.message}")
        return
    if text == f"ECHO: {prompt}":
        tally.answered += 1
    else:
        tally.mixed_up += 1


async def burst(client: openai.AsyncOpenAI, clients: int, tally: Tally) -> None:
    """`clients` requests at once, half of them streamed."""
    await asyncio.gather(*(request(client, tally, stream=n % 2 == 0) for n in range(clients)))


async def soak(client: openai.AsyncOpenAI, clients: int, seconds: float, tally: Tally) -> None:
    """`clients` clients each sending one request after another until `seconds` have passed."""
    deadline = time.monotonic() + seconds

    async def client_loop(n: int) -> None:
        while time.monotonic() < deadline:
            busy = tally.busy
            await request(client, tally, stream=n % 2 == 0)
            if tally.busy > busy:
                await asyncio.sleep(BUSY_PAUSE)

    await asyncio.gather(*(client_loop(n) for n in range(clients)))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"no VmRSS for pid {pid}")


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))
