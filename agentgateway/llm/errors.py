"""Errors in each client API's own format, and provider errors read back into one shape.

An error is classed by kind (validation, auth, permission, not found, too large, rate limit,
overload, timeout, server); the class picks the status and the ``type`` each client API uses.
Mid-stream errors use each API's stream form (a ``data:`` chunk, or an ``error`` event).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from agentgateway.policy.header_modifier import HeaderEdit

# Client APIs (the wire format a client speaks). PASSTHROUGH and DETECT are agentgateway's route
# types for requests sent to the provider as they are (DETECT also reads their usage).
CHAT, MESSAGES, RESPONSES, EMBEDDINGS, MODELS, COUNT_TOKENS, RERANK, PASSTHROUGH, DETECT = (
    "chat",
    "messages",
    "responses",
    "embeddings",
    "models",
    "count_tokens",
    "rerank",
    "passthrough",
    "detect",
)

_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_OPENAI_TYPES = {
    400: ("invalid_request_error", None),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "not_found"),
    408: ("timeout_error", "timeout"),
    413: ("invalid_request_error", "request_too_large"),
    422: ("invalid_request_error", None),
    429: ("rate_limit_exceeded", "rate_limit_exceeded"),
    503: ("server_error", "overloaded"),
    504: ("timeout_error", "timeout"),
}
# Provider response headers worth keeping on a translated error (request ids, Retry-After).
KEPT_HEADERS = (b"retry-after", b"x-request-id", b"request-id", b"x-amzn-requestid", b"x-goog-request-id")


class LlmError(Exception):
    """An answer the gateway gives instead of (or in place of) a provider's response."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: tuple[tuple[bytes, bytes], ...] = (),
        edit: HeaderEdit | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
        # a guard's rejection.headers: edits of the answer's headers
        self.edit = edit

    def body(self, api: str) -> bytes:
        return orjson.dumps(error_object(api, self.status, self.message))


def error_status(value: Any, default: int = 502) -> int:
    """A status an upstream names in a body (Gemini's stream error ``code``, a guard webhook's
    ``status``) as the answer's status: an error status (400-599), else ``default``. Anything
    else would be the status line a client reads: a 1xx that leaves it waiting for another
    answer (101 switches protocols), a success, or no HTTP status at all."""
    if isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599:
        return value
    return default


def client_status(api: str, status: int) -> int:
    """529 is Anthropic's own; other clients see 503."""
    if status == 529 and api != MESSAGES:
        return 503
    return status


def error_object(api: str, status: int, message: str) -> dict[str, Any]:
    if api in (MESSAGES, COUNT_TOKENS):
        kind = _ANTHROPIC_TYPES.get(status) or ("api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    kind, code = _OPENAI_TYPES.get(status) or (
        ("server_error", None) if status >= 500 else ("invalid_request_error", None)
    )
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def stream_error(api: str, status: int, message: str, sequence: int = 0) -> bytes:
    """An error after the stream started (the status line is already out)."""
    if api == MESSAGES:
        return b"event: error\ndata: " + orjson.dumps(error_object(api, status, message)) + b"\n\n"
    if api == RESPONSES:
        kind, code = _OPENAI_TYPES.get(status) or ("server_error", None)
        event = {"type": "error", "code": code or kind, "message": message, "param": None, "sequence_number": sequence}
        return b"event: error\ndata: " + orjson.dumps(event) + b"\n\n"
    return b"data: " + orjson.dumps(error_object(api, status, message)) + b"\n\n"


def provider_error_message(body: bytes) -> str:
    """The human message in any provider's error body (OpenAI, Anthropic, Gemini, Bedrock)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace").strip()
        return text[:500] or "provider error"
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]  # Gemini's streamed-array form
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
        if isinstance(err, str):
            return err
        for key in ("message", "Message"):
            if isinstance(data.get(key), str):
                return str(data[key])
    return body.decode("utf-8", "replace")[:500]
