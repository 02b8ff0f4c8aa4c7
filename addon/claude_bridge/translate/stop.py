"""OpenAI `stop` sequences, which the CLI has no flag for: the bridge cuts the text itself."""

from __future__ import annotations

from collections.abc import Sequence


class StopScanner:
    """Finds the first stop sequence across streamed pieces, holding back only a tail that could start one."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = [s for s in stops if s]
        self._pending = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """The part of `text` that is safe to send now; sets `stopped` once a stop sequence is seen."""
        if not self._stops:
            return text
        buffer = self._pending + text
        cut = min((i for i in (buffer.find(s) for s in self._stops) if i >= 0), default=-1)
        if cut >= 0:
            self._pending = ""
            self.stopped = True
            return buffer[:cut]
        keep = max((self._overlap(buffer, s) for s in self._stops), default=0)
        self._pending = buffer[len(buffer) - keep :] if keep else ""
        return buffer[: len(buffer) - keep]

    def flush(self) -> str:
        """What was held back, once the text has ended without a stop sequence."""
        pending, self._pending = self._pending, ""
        return pending

    @staticmethod
    def _overlap(buffer: str, stop: str) -> int:
        """Length of the longest end of `buffer` that is a proper prefix of `stop`."""
        for size in range(min(len(stop) - 1, len(buffer)), 0, -1):
            if buffer.endswith(stop[:size]):
                return size
        return 0
