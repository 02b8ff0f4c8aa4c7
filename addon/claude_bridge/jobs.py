"""A bridged request as a job for the backend: its body parsed and translated, and how its answer is made.

The job is parked unrun; the backend runs its stream (server-sent events) or its answer (one JSON object) once the
diverted flow reaches it, and the run fills in the report the log line and the mitmweb comment are made from.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mitmproxy import exceptions, http
from pydantic import BaseModel

from . import backend
from .claude.runner import ClaudeRunner
from .openai import sse
from .openai.chat import ChatCompletionCreateParams
from .openai.completions import CompletionCreateParams
from .openai.responses import Response, ResponseCreateParams
from .report import TurnReport
from .translate import legacy, responses
from .translate.chat import completion, completion_chunks
from .translate.model_map import ModelMap
from .translate.request import ChatJob, HistoryMode, chat_job, parse_chat_request, parse_request
from .translate.responses import ResponseStore


@dataclass(frozen=True)
class Bridged:
    """A job to park, with the model the client asked for and the report its run fills in."""

    job: backend.Job
    model: str
    report: TurnReport
    stream: bool
    tools: bool
    """Whether the client offered tools (the CLI must then serve tool calls)."""


@dataclass
class Jobs:
    models: ModelMap
    runner: ClaudeRunner
    kept: ResponseStore
    """Responses API answers, for previous_response_id, item references and GET /v1/responses/{id}."""
    history: HistoryMode = "resume"
    reasoning_content: bool = False

    def configure(self, options: Any, updated: set[str]) -> None:
        """From the bridge's options: a bad model map is an OptionsError."""
        if "bridge_model_map" in updated:
            try:
                self.models = ModelMap.from_entries(options.bridge_model_map)
            except ValueError as e:
                raise exceptions.OptionsError(str(e)) from e
        self.history = options.bridge_history
        self.reasoning_content = options.bridge_reasoning_content
        self.kept.capacity = options.bridge_responses_kept

    def chat(self, request: http.Request, body: bytes) -> Bridged:
        job = self._chat_job(request, parse_chat_request(body))
        return _bridged(
            job,
            lambda report: completion_chunks(job, self.runner, report),
            lambda report: completion(job, self.runner, report),
            sse.CHAT_COMPLETIONS,
        )

    def responses(self, request: http.Request, body: bytes) -> Bridged:
        params = parse_request(body, ResponseCreateParams)
        kept = self.kept
        earlier = kept.conversation(params.previous_response_id) if params.previous_response_id else []
        chat, conversation = responses.chat_request(params, earlier, kept.item)
        job = self._chat_job(request, chat, "input")

        def store(response: Response) -> None:
            if params.store is not False:
                kept.put(response, conversation + responses.output_messages(response))

        return _bridged(
            job,
            lambda report: responses.response_events(job, params, self.runner, report, store),
            lambda report: responses.response_object(job, params, self.runner, report, store),
            sse.RESPONSES,
        )

    def completions(self, request: http.Request, body: bytes) -> Bridged:
        chat = legacy.chat_request(parse_request(body, CompletionCreateParams))
        job = self._chat_job(request, chat, "prompt")
        return _bridged(
            job,
            lambda report: legacy.completion_stream(job, self.runner, report),
            lambda report: legacy.text_completion(job, self.runner, report),
            sse.CHAT_COMPLETIONS,
        )

    def _chat_job(
        self, request: http.Request, chat: ChatCompletionCreateParams, messages_param: str = "messages"
    ) -> ChatJob:
        job = chat_job(chat, self.models, self.history, self.reasoning_content, messages_param)
        # A live session continues only for the key that began it (hashed: it is never kept or shown).
        key = request.headers.get("authorization", "").encode("utf-8", "surrogateescape")
        return dataclasses.replace(job, caller=hashlib.sha256(key).hexdigest())


def _bridged(
    job: ChatJob,
    stream: Callable[[TurnReport], AsyncGenerator[BaseModel]],
    answer: Callable[[TurnReport], Awaitable[BaseModel]],
    framing: sse.Format,
) -> Bridged:
    report = TurnReport()
    parked: backend.Job = (
        backend.StreamJob(lambda: stream(report), framing) if job.stream else backend.JsonJob(lambda: answer(report))
    )
    return Bridged(parked, job.requested_model, report, job.stream, bool(job.invocation.tools))
