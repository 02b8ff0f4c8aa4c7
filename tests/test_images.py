"""image_url parts as Anthropic image blocks, and the 400s for images Claude cannot take."""

from __future__ import annotations

import base64
import json

import pytest

from claude_bridge.openai.errors import OpenAIError
from claude_bridge.translate.images import MAX_IMAGE_BYTES
from claude_bridge.translate.model_map import ModelMap
from claude_bridge.translate.request import chat_job, parse_chat_request

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 60).decode()


def image(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url, "detail": "high"}}


def prompt_of(*parts: dict, history_mode: str = "resume", history: list | None = None) -> list[dict]:
    messages = [*(history or []), {"role": "user", "content": [{"type": "text", "text": "look"}, *parts]}]
    request = parse_chat_request(json.dumps({"model": "sonnet", "messages": messages}).encode())
    return chat_job(request, ModelMap.from_entries([]), history_mode).invocation.prompt


@pytest.mark.parametrize(
    ("media_type", "expected"),
    [("image/png", "image/png"), ("image/jpeg", "image/jpeg"), ("image/jpg", "image/jpeg"), ("image/gif", "image/gif"),
     ("image/webp", "image/webp")],
)  # fmt: skip
def test_data_urls_become_base64_blocks(media_type, expected):
    _, block = prompt_of(image(f"data:{media_type};base64,{PNG}"))
    assert block == {"type": "image", "source": {"type": "base64", "media_type": expected, "data": PNG}}


def test_http_urls_become_url_blocks_and_are_not_fetched_here():
    _, block = prompt_of(image("https://example.com/cat.png?size=large"))
    assert block == {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png?size=large"}}


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("data:image/bmp;base64," + PNG, "invalid_image_format"),
        ("data:image/svg+xml;base64," + PNG, "invalid_image_format"),
        ("data:image/png;base64,not*base64!", "invalid_image"),
        ("data:image/png," + PNG, "invalid_image_url"),
        ("ftp://example.com/a.png", "invalid_image_url"),
        ("cat.png", "invalid_image_url"),
        ("data:image/png;base64," + "A" * (MAX_IMAGE_BYTES // 3 * 4 + 8), "image_too_large"),
    ],
    ids=["bmp", "svg", "bad-base64", "not-base64", "ftp", "relative", "too-large"],
)
def test_images_claude_cannot_take_are_clear_400s(url, code):
    with pytest.raises(OpenAIError) as caught:
        prompt_of(image(url))
    assert (caught.value.status, caught.value.error.code) == (400, code)
    assert caught.value.error.param == "messages[0].content[1]"


def test_images_in_earlier_turns_stay_in_the_history():
    history = [
        {"role": "user", "content": [image("https://example.com/1.png")]},
        {"role": "assistant", "content": "a cat"},
    ]
    messages = [*history, {"role": "user", "content": "and now?"}]
    request = parse_chat_request(json.dumps({"model": "sonnet", "messages": messages}).encode())
    job = chat_job(request, ModelMap.from_entries([]), "resume")
    assert job.invocation.history[0].content == [
        {"type": "image", "source": {"type": "url", "url": "https://example.com/1.png"}}
    ]


def test_flattened_history_names_its_images_and_sends_them_after_the_transcript():
    history = [{"role": "user", "content": [{"type": "text", "text": "see"}, image("https://e.com/1.png")]},
               {"role": "assistant", "content": "a cat"}]  # fmt: skip
    preface, earlier, *prompt = prompt_of(image("https://e.com/2.png"), history_mode="flatten", history=history)
    assert "User: see\n[image 1]" in preface["text"] and "Assistant: a cat" in preface["text"]
    assert earlier["source"]["url"] == "https://e.com/1.png"
    assert prompt[-1]["source"]["url"] == "https://e.com/2.png"


def test_system_messages_cannot_hold_images():
    messages = [{"role": "system", "content": [image("https://e.com/1.png")]}, {"role": "user", "content": "hi"}]
    request = parse_chat_request(json.dumps({"model": "sonnet", "messages": messages}).encode())
    with pytest.raises(OpenAIError) as caught:
        chat_job(request, ModelMap.from_entries([]), "resume")
    assert caught.value.error.param == "messages[0].content"
