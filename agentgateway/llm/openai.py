"""OpenAI Chat Completions streams: decoding into canonical chunks, encoding for Chat clients,
and the passthrough relay (OpenAI-compatible provider, Chat client) that forwards events as they
are and only reads the usage chunk."""

from __future__ import annotations

import orjson

from agentgateway._native import SseDecoder
from agentgateway.llm.chat import Json, now
from agentgateway.llm.errors import LlmError
from agentgateway.llm.usage import Usage

_DONE = b"[DONE]"
DONE_EVENT = b"data: [DONE]\n\n"


def _error_of(msg: Json) -> LlmError:
    err = msg.get("error")
    message = err.get("message") if isinstance(err, dict) else str(err)
    code = err.get("code") if isinstance(err, dict) else None
    status = 429 if code in ("rate_limit_exceeded", "insufficient_quota") else 500
    return LlmError(status, message or "provider stream error")


class ChatStreamDecoder:
    """``data: {chunk}`` events → chunk dicts. Usage-only chunks update ``usage`` and are not
    passed on (the encoder writes its own)."""

    __slots__ = ("_sse", "usage", "model", "error", "done", "finished")

    def __init__(self) -> None:
        self._sse = SseDecoder()
        self.usage = Usage()
        self.model = ""
        self.error: LlmError | None = None
        self.done = False
        self.finished = False  # a choice gave its finish reason

    def feed(self, data: bytes) -> list[Json]:
        out: list[Json] = []
        for event in self._sse.feed(data):
            raw = event.data
            if raw == _DONE:
                self.done = True
                continue
            try:
                msg = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if "error" in msg and "choices" not in msg:
                self.error = _error_of(msg)
                break
            usage = msg.pop("usage", None)
            if usage:
                self.usage = Usage.from_openai(usage)
            if not self.model:
                self.model = msg.get("model", "")
            choices = msg.get("choices")
            if choices:
                if isinstance(choices, list) and any(isinstance(c, dict) and c.get("finish_reason") for c in choices):
                    self.finished = True
                out.append(msg)
        return out

    def finish(self) -> list[Json]:
        return []

    @property
    def complete(self) -> bool:
        """The stream said it ended (``[DONE]``, or a finish reason from compatible providers
        that send no ``[DONE]``): else it was cut."""
        return self.done or self.finished


class ChatStreamEncoder:
    """Chunk dicts → ``data:`` events; the usage chunk (if the client asked) and ``[DONE]`` last."""

    __slots__ = ("include_usage", "_id", "_model", "_created")

    def __init__(self, include_usage: bool, model: str) -> None:
        self.include_usage = include_usage
        self._id = ""
        self._model = model
        self._created = now()

    def feed(self, data: Json) -> bytes:
        if not self._id:
            self._id = data.get("id", "")
            self._model = data.get("model") or self._model
            self._created = data.get("created") or self._created
        if self.include_usage:
            data["usage"] = None
        return b"data: " + orjson.dumps(data) + b"\n\n"

    def finish(self, usage: Usage) -> bytes:
        if not self.include_usage:
            return DONE_EVENT
        last = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [],
            "usage": usage.to_openai(),
        }
        return b"data: " + orjson.dumps(last) + b"\n\n" + DONE_EVENT


class ChatPassthrough:
    """Relays an OpenAI-compatible stream to a Chat client event by event without decoding the
    chunks; only events carrying usage are parsed. When the gateway asked for usage on the
    client's behalf, the usage-only chunk is dropped."""

    __slots__ = ("_sse", "usage", "model", "error", "done", "_keep_usage", "first")

    def __init__(self, client_wants_usage: bool) -> None:
        self._sse = SseDecoder()
        self.usage = Usage()
        self.model = ""
        self.error: LlmError | None = None
        self.done = False
        self._keep_usage = client_wants_usage
        self.first = True  # no content event relayed yet (time to first token)

    def feed(self, data: bytes) -> bytes:
        out: list[bytes] = []
        for event in self._sse.feed(data):
            raw = event.data
            if raw == _DONE:
                self.done = True
                out.append(DONE_EVENT)
                continue
            if b'"usage":{' in raw or b'"usage": {' in raw or b'"error"' in raw:
                try:
                    msg = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    msg = {}
                if "error" in msg and "choices" not in msg:
                    self.error = _error_of(msg)
                    break
                usage = msg.get("usage")
                if usage:
                    self.usage = Usage.from_openai(usage)
                    self.model = msg.get("model", self.model)
                    if not msg.get("choices") and not self._keep_usage:
                        continue
            self.first = False
            out.append(b"data: " + raw + b"\n\n")
        return b"".join(out)
