"""OpenAI's error envelope, and the exception that carries one to the client."""

from __future__ import annotations

from pydantic import BaseModel


class ErrorObject(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorObject


class OpenAIError(Exception):
    """A failure the client must see as an OpenAI error, with the HTTP status to send it under."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = ErrorObject(message=message, type=type, param=param, code=code)
        self.headers = headers or {}

    def response(self) -> ErrorResponse:
        return ErrorResponse(error=self.error)
