"""A minimal session transcript the CLI can `--resume`, so the API sees the conversation's exact history.

The CLI looks sessions up under `<config dir>/projects/<cwd, non-alphanumerics as '-'>/<session id>.jsonl`;
each line is one message, chained to the previous by `parentUuid`. The format is the CLI's internal one
(verified on the pinned version), which is why flattening stays available as a fallback.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from .invocation import HistoryMessage


def config_dir(env: Mapping[str, str]) -> Path:
    if configured := env.get("CLAUDE_CONFIG_DIR"):
        return Path(configured)
    return Path(env.get("HOME") or Path.home()) / ".claude"


def write(history: Sequence[HistoryMessage], *, cwd: Path, env: Mapping[str, str]) -> tuple[Path, str]:
    """Write the transcript for a run in `cwd`; returns its path and the session id to resume."""
    session_id = str(uuid.uuid4())
    folder = config_dir(env) / "projects" / re.sub(r"[^a-zA-Z0-9]", "-", str(cwd))
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / f"{session_id}.jsonl"
    parent: str | None = None
    lines = []
    for message in history:
        line_id = str(uuid.uuid4())
        lines.append(
            json.dumps(
                {
                    "type": message.role,
                    "uuid": line_id,
                    "parentUuid": parent,
                    "sessionId": session_id,
                    "cwd": str(cwd),
                    "message": {"role": message.role, "content": message.content},
                },
                ensure_ascii=False,
            )
        )
        parent = line_id
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path, session_id


def remove(path: Path) -> None:
    """Remove the transcript and its per-run project folder (each run has its own cwd, so its own folder)."""
    path.unlink(missing_ok=True)
    try:
        path.parent.rmdir()
    except OSError:
        pass
