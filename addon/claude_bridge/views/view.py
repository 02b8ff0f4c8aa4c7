"""What the bridge's content views share: they step aside for anything they cannot read, and never raise.

mitmproxy asks every view for its priority, then has the winner render: each view renders once to answer both (the
last rendering is kept), and answers -1 where rendering failed, so mitmproxy's JSON or raw view shows the body.
"""

from __future__ import annotations

import json
import logging
from abc import abstractmethod
from dataclasses import dataclass

from mitmproxy import http
from mitmproxy.contentviews import Contentview, Metadata

logger = logging.getLogger(__name__)

PRIORITY = 2
"""Above mitmproxy's JSON view (1): a bridged flow reads better as a conversation than as its JSON."""


@dataclass(frozen=True)
class _Rendering:
    message: object
    data: bytes
    text: str | None
    problem: str = ""


class BridgeView(Contentview):
    """A view of one API's bodies: `render` returns None for a message not of its API and raises on a malformed one."""

    def __init__(self) -> None:
        self._last: _Rendering | None = None

    @abstractmethod
    def render(self, data: bytes, message: http.Message, flow: http.HTTPFlow) -> str | None: ...

    def render_priority(self, data: bytes, metadata: Metadata) -> float:
        return PRIORITY if self._rendering(data, metadata).text is not None else -1

    def prettify(self, data: bytes, metadata: Metadata) -> str:
        """Chosen by hand for a body it cannot read, the view says why and shows the body as it is."""
        rendering = self._rendering(data, metadata)
        if rendering.text is not None:
            return rendering.text
        return f"{self.name} cannot read this body: {rendering.problem}\n\n{_as_text(data)}"

    def _rendering(self, data: bytes, metadata: Metadata) -> _Rendering:
        message, flow = metadata.http_message, metadata.flow
        last = self._last
        if last is not None and last.message is message and last.data == data:
            return last
        if not isinstance(flow, http.HTTPFlow) or message is None:
            rendering = _Rendering(message, data, None, "it is not part of an HTTP flow")
        else:
            rendering = self._attempt(data, message, flow)
        self._last = rendering
        return rendering

    def _attempt(self, data: bytes, message: http.Message, flow: http.HTTPFlow) -> _Rendering:
        try:
            text = self.render(data, message, flow)
        except Exception as e:  # a malformed body of any kind: mitmproxy's own views show it instead
            logger.debug("%s view cannot read %s: %s", self.name, flow.request.path, e)
            return _Rendering(message, data, None, _first_line(e))
        return _Rendering(message, data, text, "" if text is not None else "it is not one of this API's messages")


def _first_line(error: Exception) -> str:
    """Why, in one line (a validation error names the field)."""
    return " ".join(str(error).split())[:300] or type(error).__name__


def _as_text(data: bytes) -> str:
    try:
        return json.dumps(json.loads(data), indent=2, ensure_ascii=False)
    except ValueError:
        return data.decode(errors="replace")


def content_type(message: http.Message) -> str | None:
    """`type/subtype` of a message, without parameters."""
    parsed = http.parse_content_type(message.headers.get("content-type", ""))
    return f"{parsed[0]}/{parsed[1]}".lower() if parsed else None
