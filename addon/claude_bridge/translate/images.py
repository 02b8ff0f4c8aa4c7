"""OpenAI `image_url` parts as Anthropic image blocks: base64 from `data:` URLs, or the http(s) URL itself."""

from __future__ import annotations

import binascii
import re

from ..claude.invocation import ContentBlockParam
from ..openai.chat import ChatCompletionContentPartImage
from ..openai.errors import OpenAIError

MEDIA_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
# Anthropic's limit for one base64 image sent through the API.
MAX_IMAGE_BYTES = 5 * 1024 * 1024

_DATA_URL = re.compile(r"data:(?P<media_type>[\w/+.-]+)(?:;[\w=-]+)*;base64,(?P<data>.*)", re.DOTALL)


def image_block(part: ChatCompletionContentPartImage, param: str) -> ContentBlockParam:
    url = part.image_url.url.strip()
    if url.startswith(("http://", "https://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    match = _DATA_URL.fullmatch(url)
    if not url.startswith("data:") or match is None:
        raise OpenAIError(
            400,
            "Images must be http(s) URLs or base64 `data:` URLs (data:image/png;base64,...).",
            code="invalid_image_url",
            param=param,
        )
    media_type = match["media_type"].lower().replace("image/jpg", "image/jpeg")
    if media_type not in MEDIA_TYPES:
        raise OpenAIError(
            400,
            f"Image type {media_type!r} is not supported; Claude reads {', '.join(MEDIA_TYPES)}.",
            code="invalid_image_format",
            param=param,
        )
    data = "".join(match["data"].split())
    size = len(data) * 3 // 4 - data[-2:].count("=")
    if size > MAX_IMAGE_BYTES:
        raise OpenAIError(
            400,
            f"The image is {size / 1024 / 1024:.1f} MB; Claude accepts images up to "
            f"{MAX_IMAGE_BYTES // 1024 // 1024} MB. Scale it down or send a URL.",
            code="image_too_large",
            param=param,
        )
    try:
        binascii.a2b_base64(data[:4096], strict_mode=True)  # a cheap sample: catches the common mistakes
    except binascii.Error as e:
        raise OpenAIError(400, f"The image's base64 data is invalid: {e}.", code="invalid_image", param=param) from e
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
