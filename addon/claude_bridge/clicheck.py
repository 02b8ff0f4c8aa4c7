"""What the bridge knows of the CLI it runs: its version, and what the compatibility probe found it can do.

A CLI version the bridge has not checked before is probed at start (probe.py: a few seconds against a loopback
stand-in of the API, nothing billed) and the verdict is kept in the confdir. What a broken capability costs: a
broken resume or live follow-up falls back (history flattened, no live sessions); broken tools or plain turns
refuse the requests that need them with a message that says which CLI versions work.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from . import probe
from .claude.invocation import ClaudeSettings
from .openai.errors import OpenAIError

logger = logging.getLogger(__name__)


class CliCheck:
    def __init__(self) -> None:
        self.version: str | None = None
        self.compatibility: probe.Compatibility | None = None

    async def read_version(self, claude_bin: str) -> None:
        self.version = await probe.cli_version(claude_bin)
        self.compatibility = None
        if self.version is None:
            logger.warning("Claude Code CLI not usable at %r: requests will fail with 503.", claude_bin)
        else:
            logger.info("Claude Code CLI %s at %s", self.version, claude_bin)

    async def check(self, settings: ClaudeSettings, confdir: Path) -> dict[str, Any]:
        """The remembered verdict on this version, else the probe's (then remembered); the option changes it asks."""
        if self.version is None:
            return {}
        compatibility = probe.load(confdir, self.version)
        if compatibility is None:
            logger.info("Checking Claude Code CLI %s, new to this bridge (a few seconds, nothing billed)", self.version)
            try:
                compatibility = await probe.probe(settings, self.version)
            except Exception:  # the probe's own fault, not the CLI's: the bridge goes on as it would without it
                logger.exception("The compatibility check of Claude Code CLI %s failed", self.version)
                return {}
            probe.remember(confdir, compatibility)  # the probe logged its verdict
        else:
            level = logging.WARNING if compatibility.broken else logging.INFO
            logger.log(level, "%s (checked %s)", compatibility.summary(), f"{compatibility.checked:%Y-%m-%d}")
        self.compatibility = compatibility
        fallbacks = compatibility.fallbacks()
        for name, value in fallbacks.items():
            logger.warning("Falling back to %s=%s for this CLI.", name, value)
        return fallbacks

    def refusal(self, tools: bool) -> OpenAIError | None:
        """The 503 for a request this CLI cannot serve (one offering tools needs the tools capability too)."""
        why = self.compatibility.refusal("tools" if tools else "request") if self.compatibility else None
        return OpenAIError(503, why, "server_error", code="claude_cli_incompatible") if why else None
