"""Answers the gateway writes itself (a policy's refusal, a direct response)."""

from __future__ import annotations

from collections.abc import Iterable

_TEXT_PLAIN = (b"content-type", b"text/plain; charset=utf-8")


class LocalReply:
    """An answer the gateway writes itself. Policies that always answer the same (a direct
    response) build it once at config load; ``reason`` goes to the access log."""

    __slots__ = ("status", "headers", "body", "reason")

    def __init__(self, status: int, headers: Iterable[tuple[bytes, bytes]], body: bytes, reason: str) -> None:
        self.status = status
        self.headers = tuple(headers)
        self.body = body
        self.reason = reason

    @classmethod
    def text(cls, status: int, message: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> LocalReply:
        return cls(status, (_TEXT_PLAIN, *headers), message.encode() + b"\n", message)


DEFER = LocalReply(0, (), b"", "deferred")
"""Returned by ``on_request`` of a policy that must wait for I/O this time: the chain goes on in a
task from that policy, starting with its ``on_request_async``."""
