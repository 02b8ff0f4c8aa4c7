"""Which Claude model answers a requested model name.

Apps hard-code OpenAI model names, so the table maps those too. Exact names win over patterns;
among patterns (`*` wildcards) the longest wins, so `gpt-4o-mini*` beats `gpt-4o*` in any order.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping

from ..openai.errors import OpenAIError

# Claude Code's own aliases always name its current models of each family.
DEFAULT_MODEL_MAP: dict[str, str] = {
    "opus": "opus",
    "sonnet": "sonnet",
    "haiku": "haiku",
    "claude-opus-4": "opus",
    "claude-sonnet-4": "sonnet",
    "claude-haiku-4": "haiku",
    "gpt-5*": "opus",
    "gpt-5-mini*": "sonnet",
    "gpt-5-nano*": "haiku",
    "gpt-4.1*": "sonnet",
    "gpt-4.1-mini*": "haiku",
    "gpt-4.1-nano*": "haiku",
    "gpt-4o*": "sonnet",
    "gpt-4o-mini*": "haiku",
    "chatgpt-4o*": "sonnet",
    "gpt-4-turbo*": "sonnet",
    "gpt-4": "sonnet",
    "gpt-3.5-turbo*": "haiku",
    "o1*": "opus",
    "o3*": "opus",
    "o3-mini*": "sonnet",
    "o4-mini*": "sonnet",
    # Full Claude ids (`claude-sonnet-4-5-20250929`, ...) go to the CLI unchanged.
    "claude-*": "*",
}

# A target of `*` means: the requested name itself.
SAME_NAME = "*"


class ModelMap:
    def __init__(self, table: Mapping[str, str]) -> None:
        self._exact: dict[str, str] = {name: model for name, model in table.items() if "*" not in name}
        self._patterns = sorted(
            ((name, model) for name, model in table.items() if "*" in name),
            key=lambda item: len(item[0]),
            reverse=True,
        )

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> ModelMap:
        """The default table with `name=claude-model` entries (from the `bridge_model_map` option) on top."""
        table = dict(DEFAULT_MODEL_MAP)
        for entry in entries:
            name, sep, model = entry.partition("=")
            name, model = name.strip(), model.strip()
            if not sep or not name or not model:
                raise ValueError(f"model map entry {entry!r} is not of the form name=claude-model")
            table[name] = model
        return cls(table)

    def resolve(self, name: str) -> str:
        """The Claude model for `name`; OpenAI's own 404 when the table has no answer."""
        model = self._exact.get(name) or next(
            (model for pattern, model in self._patterns if fnmatch.fnmatchcase(name, pattern)), None
        )
        if model == SAME_NAME:
            return name
        if model:
            return model
        raise OpenAIError(
            404,
            f"The model `{name}` does not exist or you do not have access to it. "
            "claude-bridge knows the names in its model map; add one with "
            "`--set bridge_model_map=NAME=CLAUDE_MODEL` (NAME may use `*`, and `*` alone catches every name).",
            code="model_not_found",
            param="model",
        )

    def listed_names(self) -> list[str]:
        """The names `/v1/models` lists: exact entries, and the plain names patterns extend (`gpt-4o*`: `gpt-4o`)."""
        stems = {pattern[:-1] for pattern, _ in self._patterns if pattern.endswith("*")}
        return sorted(self._exact.keys() | {stem for stem in stems if stem[-1:].isalnum() and "*" not in stem})
