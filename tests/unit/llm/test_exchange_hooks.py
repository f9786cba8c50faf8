"""The LLM exchange with the policy hooks of llm/accounting.py: a caller's model allow-list and a
token budget's refusal, answered in the client API's own format; a reservation is settled."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from agentgateway.core.context import RequestCtx
from agentgateway.llm.accounting import CallerIdentity, LlmCall, LlmHooks, Refusal
from agentgateway.llm.config import EMPTY_POLICY, LlmService, ModelRoute, ModelTarget
from agentgateway.llm.exchange import LlmExchange
from agentgateway.llm.providers import Provider
from agentgateway.llm.usage import Usage
from agentgateway.upstream.target import HttpTarget


class Conn:
    """What the exchange writes, instead of a socket."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.ended = False

    def send_continue(self) -> None:
        pass

    def send_head(self, status: int, headers: list[tuple[bytes, bytes]], length: int | None, has_body: bool) -> None:
        self.status, self.headers = status, headers

    def send_body(self, chunk: bytes) -> None:
        self.body += chunk

    def flush(self) -> None:
        pass

    def end_response(self) -> None:
        self.ended = True


class Budget:
    def __init__(self, refuse: bool) -> None:
        self.refuse = refuse
        self.calls: list[LlmCall] = []
        self.settled: list[Usage] = []

    def reserve(self, call: LlmCall) -> object | Refusal:
        self.calls.append(call)
        if self.refuse:
            return Refusal(429, "token rate limit exceeded", ((b"retry-after", b"7"),))
        return "r1"

    def settle(self, reservation: object, usage: Usage) -> None:
        self.settled.append(usage)


def service(hooks: LlmHooks) -> LlmService:
    target = HttpTarget("127.0.0.1", 9, None, "p", 1.0)  # nothing listens: a call fails to connect
    provider = Provider("p", "openAI", target, "/v1", None, ())
    route = ModelRoute("m", (((ModelTarget(provider, None), 1),),), None, "openai")
    return LlmService("llm", {"m": route}, (), None, EMPTY_POLICY, hooks)


def serve(svc: LlmService, path: bytes, body: dict[str, Any], client: Any = None) -> Conn:
    conn = Conn()
    ctx = RequestCtx(
        b"POST",
        path,
        path,
        b"",
        b"h",
        [],
        "1.1",
        True,
        None,
        False,
        False,
        "127.0.0.1",
        1,
        b"http",
        time.perf_counter(),
        "g",
    )
    ctx.route = "r"
    exchange = LlmExchange(client, conn, ctx, svc, 1 << 20)  # type: ignore[arg-type]
    exchange.request_body(orjson.dumps(body))
    asyncio.run(exchange._serve())
    assert conn.ended
    return conn


def test_budget_refusal_is_a_429_in_the_client_format() -> None:
    budget = Budget(refuse=True)
    svc = service(LlmHooks(budgets=(budget,)))
    chat = serve(svc, b"/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status == 429 and (b"retry-after", b"7") in chat.headers
    assert orjson.loads(chat.body)["error"]["type"] == "rate_limit_exceeded"
    msgs = serve(svc, b"/v1/messages", {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    assert msgs.status == 429 and orjson.loads(msgs.body)["error"]["type"] == "rate_limit_error"
    assert budget.calls[0].request_model == "m" and budget.calls[0].estimate == 1  # tokenize off: 1


def test_reservation_is_settled_even_when_the_call_fails() -> None:
    from agentgateway.upstream.client import HttpClientError

    class FailingClient:
        async def request(self, *args: Any, **kwargs: Any) -> Any:
            raise HttpClientError(503, "connection refused")

    budget = Budget(refuse=False)
    svc = service(LlmHooks(budgets=(budget,), tokenize=True))
    conn = serve(
        svc,
        b"/v1/chat/completions",
        {"model": "m", "messages": [{"role": "user", "content": "hello world"}]},
        FailingClient(),
    )
    assert conn.status == 503
    assert budget.calls[0].estimate == 2  # the tokenizer's count of "hello world"
    assert len(budget.settled) == 1 and not budget.settled[0].known


def test_caller_allow_list() -> None:
    caller = CallerIdentity("key-a", {"team": "a"}, ("other-*",))
    svc = service(LlmHooks(identity=lambda ctx: caller))
    conn = serve(svc, b"/v1/chat/completions", {"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    assert conn.status == 403 and "may not call model 'm'" in orjson.loads(conn.body)["error"]["message"]
