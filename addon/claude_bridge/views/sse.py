"""A server-sent event stream split into its events, for reading back what a flow's response carried."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerSentEvent:
    event: str | None
    data: str


def parse(body: bytes) -> list[ServerSentEvent]:
    """Every event with data, in order; comments and fields other than `event` and `data` are skipped.

    Raises UnicodeDecodeError for a body that is not text (the view then steps aside).
    """
    found: list[ServerSentEvent] = []
    text = body.decode().replace("\r\n", "\n").replace("\r", "\n")
    for chunk in text.split("\n\n"):
        name, data = None, []
        for line in chunk.split("\n"):
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        if data:
            found.append(ServerSentEvent(name, "\n".join(data)))
    return found
