"""Content views for mitmweb, mitmdump's flow detail and saved flows: bridged flows as conversations.

`ContentViews` is a child addon of the bridge: its `load` adds the views to mitmproxy's registry, where their
`render_priority` has them picked for OpenAI and Anthropic API bodies they can read (anything else keeps
mitmproxy's own views). The views show bodies only, never headers: no Authorization or x-api-key reaches them.
"""

from __future__ import annotations

from typing import Any

from mitmproxy import contentviews

from .anthropic import AnthropicView
from .openai import OpenAIView


class ContentViews:
    def __init__(self) -> None:
        self.views = [OpenAIView(), AnthropicView()]

    def load(self, loader: Any) -> None:
        # mitmproxy 12 has no call to take a view out again (contentviews.remove is a no-op kept for old scripts);
        # adding one of the same name replaces it, so a reloaded script leaves no duplicate.
        for view in self.views:
            contentviews.add(view)


__all__ = ["AnthropicView", "ContentViews", "OpenAIView"]
