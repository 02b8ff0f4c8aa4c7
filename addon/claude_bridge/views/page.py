"""Plain text for the content views: sections, indented blocks, JSON pretty-printed, images as type and size."""

from __future__ import annotations

import json
from typing import Any

RULE_WIDTH = 72


class Page:
    """Lines of a rendered message, built top to bottom."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def line(self, text: str = "", indent: int = 0) -> None:
        self.lines.append(" " * indent + text if text else "")

    def block(self, text: str, indent: int = 2) -> None:
        """Text as it was written, every line indented; an empty text says so rather than vanishing."""
        for line in (text if text != "" else "(empty)").splitlines() or [""]:
            self.line(line, indent)

    def section(self, title: str) -> None:
        if self.lines:
            self.line()
        self.line(f"── {title} ".ljust(RULE_WIDTH, "─"))

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def pretty_json(value: Any) -> str:
    """Arguments and schemas, indented; a string that is not JSON (a model's broken arguments) stays as it is."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    return json.dumps(value, indent=2, ensure_ascii=False)


def size(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} KB"
    return f"{count / 1024 / 1024:.1f} MB"


def base64_size(data: str) -> str:
    """The size base64 text decodes to, worked out from its length (the bytes are never shown)."""
    data = data.strip()
    return size(len(data) * 3 // 4 - data[-2:].count("="))


def image_url(url: str) -> str:
    """A data URL as its type and size (never its bytes); any other URL as it is, cut at 200 characters."""
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header.removeprefix("data:").split(";")[0] or "unknown type"
        return f"{media_type}, {base64_size(data) if header.endswith(';base64') else size(len(data))} inline"
    return url if len(url) <= 200 else url[:200] + "…"


def first_line(text: str) -> str:
    """A tool's description in a list of tools: its first line, cut at 120 characters."""
    line = text.strip().split("\n", 1)[0]
    return line if len(line) <= 120 else line[:120] + "…"
