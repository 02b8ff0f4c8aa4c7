"""Keys kept out of what is written down: mitmproxy's log lines, and the bridged flows mitmweb shows and `-w` saves.

mitmproxy logs the raw head of a request cut short mid-headers, credentials and all, at any size; and a bridged
flow would keep the app's `Authorization` (in interception modes its real OpenAI key) although the bridge never
sends it anywhere.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from mitmproxy import http

CREDENTIAL_HEADERS = ("authorization", "proxy-authorization", "x-api-key", "api-key")
REDACTED = "<redacted by claude-bridge>"
MAX_LOG_LINE = 2000
# A header line in the text or the repr() of raw bytes: its value ends at a line break, escaped or not.
_CREDENTIAL_LINE = re.compile(
    rf"(?i)(?:^|(?<=\\n)|(?<=[\s'\"]))({'|'.join(CREDENTIAL_HEADERS)})(\s*:\s*)(.*?)(?=\\r|\\n|\r|\n|['\"]?$)",
    re.MULTILINE,
)
# mitmproxy.proxy.server logs on behalf of every connection's layers (cut request heads among them).
CONNECTION_LOGGER = "mitmproxy.proxy.server"


def redact_text(text: str) -> str:
    redacted = _CREDENTIAL_LINE.sub(lambda m: f"{m[1]}{m[2]}{REDACTED}", text)
    if len(redacted) > MAX_LOG_LINE:
        redacted = f"{redacted[:MAX_LOG_LINE]}... ({len(redacted) - MAX_LOG_LINE} more characters)"
    return redacted


class LogFilter(logging.Filter):
    """Rewrites a record's message with credentials redacted and its length capped."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def install() -> LogFilter:
    log_filter = LogFilter()
    logging.getLogger(CONNECTION_LOGGER).addFilter(log_filter)
    return log_filter


def uninstall(log_filter: LogFilter) -> None:
    logging.getLogger(CONNECTION_LOGGER).removeFilter(log_filter)


def credentials(headers: http.Headers) -> None:
    """Replace the credentials in a bridged request's headers, which go nowhere, for what mitmweb shows and saves."""
    for name in CREDENTIAL_HEADERS:
        if name in headers:
            headers[name] = REDACTED


def keep_private(flow_file: str) -> None:
    """mitmproxy creates `-w`/save_stream_file flow files readable by all (0644); they hold prompts and answers."""
    path = Path(flow_file.removeprefix("+")).expanduser()
    if path.exists():
        os.chmod(path, 0o600)
