"""Requested model names to Claude models: the default table, patterns, and overrides."""

from __future__ import annotations

import pytest

from claude_bridge.openai.errors import OpenAIError
from claude_bridge.translate.model_map import ModelMap

DEFAULT = ModelMap.from_entries([])


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("claude-opus-4", "opus"),
        ("claude-sonnet-4", "sonnet"),
        ("claude-haiku-4", "haiku"),
        ("opus", "opus"),
        ("sonnet", "sonnet"),
        ("haiku", "haiku"),
        ("gpt-4", "sonnet"),
        ("gpt-4o", "sonnet"),
        ("gpt-4o-2024-08-06", "sonnet"),
        ("gpt-4o-mini", "haiku"),
        ("gpt-4o-mini-2024-07-18", "haiku"),
        ("chatgpt-4o-latest", "sonnet"),
        ("gpt-4-turbo-2024-04-09", "sonnet"),
        ("gpt-4.1", "sonnet"),
        ("gpt-4.1-mini-2025-04-14", "haiku"),
        ("gpt-4.1-nano", "haiku"),
        ("gpt-3.5-turbo-0125", "haiku"),
        ("gpt-5", "opus"),
        ("gpt-5-mini", "sonnet"),
        ("gpt-5-nano-2025-08-07", "haiku"),
        ("o1", "opus"),
        ("o3-mini", "sonnet"),
        ("o4-mini-2025-04-16", "sonnet"),
    ],
)
def test_default_table(name: str, model: str) -> None:
    assert DEFAULT.resolve(name) == model


@pytest.mark.parametrize("name", ["claude-sonnet-4-5-20250929", "claude-opus-4-1", "claude-3-5-haiku-latest"])
def test_full_claude_ids_pass_through(name: str) -> None:
    assert DEFAULT.resolve(name) == name


def test_longest_pattern_wins_whatever_the_table_order() -> None:
    forward = ModelMap({"gpt-4o*": "sonnet", "gpt-4o-mini*": "haiku"})
    backward = ModelMap({"gpt-4o-mini*": "haiku", "gpt-4o*": "sonnet"})
    for table in (forward, backward):
        assert table.resolve("gpt-4o-mini-2024-07-18") == "haiku"
        assert table.resolve("gpt-4o-2024-08-06") == "sonnet"


def test_exact_name_wins_over_a_longer_pattern() -> None:
    assert (
        ModelMap({"gpt-4-turbo-preview-and-more*": "haiku", "gpt-4-turbo-preview-and-more": "opus"}).resolve(
            "gpt-4-turbo-preview-and-more"
        )
        == "opus"
    )


@pytest.mark.parametrize("name", ["gpt-2", "llama-3", "GPT-4O", "claude", "o2"])
def test_unknown_name_is_openai_model_not_found(name: str) -> None:
    with pytest.raises(OpenAIError) as caught:
        DEFAULT.resolve(name)
    assert caught.value.status == 404
    assert caught.value.error.code == "model_not_found"
    assert caught.value.error.param == "model"
    assert f"`{name}`" in caught.value.error.message
    assert "bridge_model_map" in caught.value.error.message


def test_entries_override_the_default_table() -> None:
    models = ModelMap.from_entries(["gpt-4o = opus", "my-model=claude-opus-4-1", "gpt-4o-mini*=sonnet"])
    assert models.resolve("gpt-4o") == "opus"
    assert models.resolve("my-model") == "claude-opus-4-1"
    assert models.resolve("gpt-4o-mini-2024-07-18") == "sonnet"
    assert models.resolve("gpt-4o-2024-08-06") == "sonnet"


def test_catch_all_maps_unknown_names_but_not_claude_ids_or_known_names() -> None:
    models = ModelMap.from_entries(["*=sonnet"])
    assert models.resolve("llama-3") == "sonnet"
    assert models.resolve("gpt-4o-mini") == "haiku"
    assert models.resolve("claude-opus-4-1-20250805") == "claude-opus-4-1-20250805"


def test_star_target_passes_the_name_through() -> None:
    models = ModelMap.from_entries(["my-claude=*", "proxy-*=*"])
    assert models.resolve("my-claude") == "my-claude"
    assert models.resolve("proxy-sonnet") == "proxy-sonnet"


@pytest.mark.parametrize("entry", ["gpt-4o", "=sonnet", "gpt-4o=", " = ", ""])
def test_malformed_entry_is_a_value_error(entry: str) -> None:
    with pytest.raises(ValueError, match="name=claude-model"):
        ModelMap.from_entries([entry])


def test_listed_names_are_exact_names_and_the_names_patterns_extend() -> None:
    table = ModelMap.from_entries(["my-model=opus", "team-*=haiku", "gpt-7*=opus"])
    names = table.listed_names()
    assert names == sorted(names)
    assert {"claude-sonnet-4", "gpt-4", "opus", "my-model"} <= set(names)
    assert {"gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-5", "o3", "gpt-7"} <= set(names), "apps pick from this list"
    assert not {"team-", "claude-", "*", ""} & set(names)
    assert all(table.resolve(name) for name in names)
