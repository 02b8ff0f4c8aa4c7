"""The loopback streaming trick: a bridged flow is answered by the backend, token by token.

mitmproxy sends a response an addon sets in one piece, so a flow to be answered as it is produced is pointed at
the bridge's own loopback server (backend.py) under the id of a parked job, and shown again under the URL the
client asked for once its response starts. `Diversions` keeps the parked jobs and the diverted flows together: one
registry, so a flow that ends early never leaves a job behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from mitmproxy import http

from . import backend
from .openai.errors import OpenAIError
from .report import RECORD_KEY, Outcome, TurnReport

FLUSH_GRACE = 2.0


class Origin(NamedTuple):
    scheme: str
    host: str
    port: int
    path: str
    host_header: str | None


@dataclass
class BridgedFlow:
    """A flow sent round through the backend: where the client really sent it, and what the run reported.

    A request refused from its headers alone has no model and no report: the backend only sends the refusal.
    """

    flow: http.HTTPFlow
    model: str | None
    report: TurnReport | None
    origin: Origin
    body: bytearray = field(default_factory=bytearray)

    def restore(self) -> None:
        """Show the flow under the URL the client asked for, not the backend's."""
        request = self.flow.request
        request.scheme, request.host, request.port, request.path, request.host_header = self.origin

    def tee(self, data: bytes) -> bytes:
        """Keeps a copy of the streamed body, and labels the flow once it ends (before `response` addons save it)."""
        if data:
            self.body += data
        elif self.flow.response is not None and self.report is not None:
            self.flow.response.content = bytes(self.body)
            self.label()
            self.flow.marked = ":bridge_at_night:"
        return data

    def broken(self, why: str | None) -> None:
        """The flow ended in an error: keep what reached the client before the break, and say what happened.
        A refusal keeps its own comment."""
        if self.report is None:
            return
        if self.flow.response is not None:
            self.flow.response.content = bytes(self.body)
        if self.report.outcome is Outcome.RUNNING and why:
            self.report.end(Outcome.CUT_SHORT, why)
        self.label()

    def label(self) -> None:
        """The run's summary as the flow's comment, and its record for the content views (saved with the flow)."""
        if self.report is not None:
            record = self.report.record()
            self.flow.comment = record.summary()
            self.flow.metadata[RECORD_KEY] = record.model_dump(mode="json")


class Diversions:
    def __init__(self) -> None:
        self.backend = backend.Backend()
        self._flows: dict[str, BridgedFlow] = {}

    def __contains__(self, flow: http.HTTPFlow) -> bool:
        return flow.id in self._flows

    def divert(self, flow: http.HTTPFlow, job: backend.Job, model: str | None, report: TurnReport | None) -> None:
        """Park `job` and point the request at the backend; `on_response_headers` undoes it once the answer starts."""
        path = self.backend.park(job)
        request = flow.request
        origin = Origin(request.scheme, request.host, request.port, request.path, request.host_header)
        request.scheme, request.host, request.port, request.path = "http", "127.0.0.1", self.backend.port, path
        self._flows[flow.id] = BridgedFlow(flow, model, report, origin)

    def refuse_before_the_body(self, flow: http.HTTPFlow, refusal: OpenAIError) -> None:
        """An answer set in a hook would wait for the whole body (after a "100 Continue" asking for it); the backend
        sends it at once instead, while whatever body the client still sends is streamed away unread."""
        flow.request.headers.pop("expect", None)
        flow.request.stream = _discard_body
        self.divert(flow, backend.Refusal(refusal), None, None)

    def on_response_headers(self, flow: http.HTTPFlow) -> BridgedFlow | None:
        """The diverted flow whose answer starts, back under its own URL."""
        bridged = self._flows.get(flow.id)
        if bridged is None or flow.response is None:
            return None
        bridged.restore()
        return bridged

    def on_end(self, flow: http.HTTPFlow) -> BridgedFlow | None:
        """The diverted flow that ended (answered or broken), forgotten with its job if the backend never took it."""
        bridged = self._flows.pop(flow.id, None)
        if bridged is not None and flow.request.path.startswith(backend.JOB_PATH_PREFIX):
            # It ended before its response streamed (another addon may have answered it first).
            self.backend.unpark(flow.request.path)
            bridged.restore()
        return bridged

    async def drain(self) -> None:
        """Runs end with an error their clients see; mitmproxy gets a moment to pass those last bytes on."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + FLUSH_GRACE
        while self._flows and loop.time() < deadline:
            await asyncio.sleep(0.05)


def _discard_body(data: bytes) -> Iterable[bytes]:
    """The request stream of a refused flow: nothing goes on to the backend, nothing is kept."""
    return ()
