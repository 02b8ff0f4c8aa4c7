"""The request body as the bridge reads it: decompressed within the size limit, so a small gzip bomb stays small."""

from __future__ import annotations

import zlib

from mitmproxy import http

from .openai.errors import OpenAIError

# Either zlib or gzip framing, told apart by the header (what "deflate" and "gzip" mean in practice).
_ZLIB_OR_GZIP = 32 + zlib.MAX_WBITS


def request_body(request: http.Request, limit: int) -> bytes:
    """The decoded body; OpenAI-style 4xx errors for an encoding it cannot take or a body past `limit` bytes."""
    raw = request.raw_content or b""
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise OpenAIError(
            415,
            f"claude-bridge cannot decode a request body with Content-Encoding {encoding!r}; send it uncompressed "
            "or with gzip.",
            code="unsupported_content_encoding",
        )
    decompressor = zlib.decompressobj(_ZLIB_OR_GZIP)
    try:
        body = decompressor.decompress(raw, limit + 1)
    except zlib.error as e:
        raise OpenAIError(
            400, f"The request body is not valid {encoding} data ({e}).", code="invalid_content_encoding"
        ) from None
    if len(body) > limit:
        raise too_large(limit)
    return body


def too_large(limit: int) -> OpenAIError:
    return OpenAIError(
        413,
        f"The request body is larger than claude-bridge accepts ({limit // (1024 * 1024)} MB; option "
        "bridge_max_body). Send images as URLs or smaller.",
        code="request_too_large",
    )
