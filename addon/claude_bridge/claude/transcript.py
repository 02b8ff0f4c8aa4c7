"""A minimal session transcript the CLI can `--resume`, so the API sees the conversation's exact history.

`--resume` takes the transcript's path, so it lives in the run's private directory. Each line is one message,
chained to the previous one by `parentUuid` (without the chain the CLI keeps only the last message). The format
is the CLI's internal one, verified on the pinned version, which is why flattening stays available as a fallback.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from pathlib import Path

from .invocation import HistoryMessage


def write(history: Sequence[HistoryMessage], path: Path) -> None:
    parent: str | None = None
    lines = []
    for message in history:
        line_id = str(uuid.uuid4())
        line = {
            "type": message.role,
            "uuid": line_id,
            "parentUuid": parent,
            "message": {"role": message.role, "content": message.content},
        }
        lines.append(json.dumps(line))  # ASCII escapes: safe for any string, lone surrogates included
        parent = line_id
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
