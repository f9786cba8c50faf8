"""The policy chain of a route: which policies run, in which order, in which phase (DESIGN §5).

Every policy kind is one module of this package and implements only the phases it needs:

* ``on_request(ctx) -> LocalReply | None``: runs when the request head is known, before the
  backend is called. ``None`` continues; a ``LocalReply`` stops the chain and is the answer.
  Policies that must wait for I/O (a remote rate-limit service) implement
  ``async on_request_async(ctx)`` instead and set ``is_async = True``.
* A synchronous policy that only sometimes waits (a JWT policy fetching signing keys it has not
  seen yet) returns ``DEFER`` from ``on_request``; the chain then awaits its
  ``on_request_async(ctx)`` instead, so the common path stays a plain call.
* ``on_response(ctx, status, headers) -> None``: edits the response headers (a list of
  lower-cased ``(name, value)`` pairs) before they are sent, for proxied responses and for the
  route's own replies.
* ``process_response(ctx, conn, status, headers) -> ResponseProcessor | None``: for proxied
  responses only, after the ``on_response`` phase: a policy that must see (or change) the
  response body returns a processor that takes the head and every body chunk from there on.

A policy that reads the request body sets ``needs_body = True``: the chain then waits for the
whole body (bounded by ``frontendPolicies.http.maxBufferSize``) before running it, and the policy
finds it in ``ctx.request_body`` (forwarded from there, with its length).

The order is agentgateway's (``apply_request_policies``) and lives only here, in ``ORDER``. The
compiled route keeps one tuple per phase holding only the policies that implement it, so a route
without policies costs nothing and a route with only synchronous policies runs them in a plain
loop: no coroutine or task is created unless an asynchronous policy is reached.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from agentgateway.core.reply import DEFER, LocalReply

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from agentgateway.core.context import RequestCtx
    from agentgateway.core.exchange import ResponseProcessor, ResponseWriter

Headers = list[tuple[bytes, bytes]]

# Request-phase order of the policy kinds (by their config key). The security kinds (cors ...
# csrf) have their slots already; the traffic kinds are implemented by this package.
ORDER: tuple[str, ...] = (
    "timeout",
    "cors",
    "oidc",
    "jwtAuth",
    # agentgateway applies it in the MCP backend; here it runs with the other authentication
    # policies so that ``authorization`` sees the claims it validated.
    "mcpAuthentication",
    "basicAuth",
    "apiKey",
    "extAuthz",
    "a2a",  # reads the request body: the A2A method and ids, for the policies after it
    "authorization",
    "retry",  # its precondition
    "localRateLimit",
    "remoteRateLimit",
    "buffer",
    "extProc",
    "transformations",
    "csrf",
    "responseHeaderModifier",  # selected here, applied to the response
    "requestHeaderModifier",
    "hostRewrite",
    "urlRewrite",
    "requestRedirect",
    "delay",
    "directResponse",
    # Not a policy of the file: a route whose backend signs the request body (backendAuth aws)
    # reads the whole body last, once nothing else can answer.
    "backendAuth",
)
_RANK = {kind: i for i, kind in enumerate(ORDER)}


class Policy(Protocol):
    kind: str


class RequestPolicy(Policy, Protocol):
    def on_request(self, ctx: RequestCtx) -> LocalReply | None: ...


class AsyncRequestPolicy(Policy, Protocol):
    is_async: bool

    async def on_request_async(self, ctx: RequestCtx) -> LocalReply | None: ...


class ResponsePolicy(Policy, Protocol):
    def on_response(self, ctx: RequestCtx, status: int, headers: Headers) -> None: ...


class ProcessingPolicy(Policy, Protocol):
    def process_response(
        self, ctx: RequestCtx, conn: ResponseWriter, status: int, headers: Headers
    ) -> ResponseProcessor | None: ...


class PolicyChain:
    """The per-phase tuples of one route. ``first_async`` is the index in ``request`` of the
    first policy that waits (an asynchronous one, or one that needs the whole request body), or
    -1 when the request phase never waits."""

    __slots__ = ("request", "response", "processors", "first_async")

    def __init__(self, policies: Iterable[Policy]) -> None:
        ordered: list[Any] = sorted(policies, key=lambda p: _RANK[p.kind])
        self.request: tuple[RequestPolicy | AsyncRequestPolicy, ...] = tuple(
            p for p in ordered if hasattr(p, "on_request") or getattr(p, "is_async", False)
        )
        self.response: tuple[ResponsePolicy, ...] = tuple(p for p in ordered if hasattr(p, "on_response"))
        self.processors: tuple[ProcessingPolicy, ...] = tuple(p for p in ordered if hasattr(p, "process_response"))
        self.first_async = next((i for i, p in enumerate(self.request) if _waits(p)), -1)

    def __bool__(self) -> bool:
        return bool(self.request or self.response or self.processors)

    def kinds(self) -> list[str]:
        seen: list[str] = []
        for p in (*self.request, *self.response, *self.processors):
            if p.kind not in seen:
                seen.append(p.kind)
        return sorted(seen, key=lambda k: _RANK[k])


def _waits(policy: object) -> bool:
    return bool(getattr(policy, "is_async", False) or getattr(policy, "needs_body", False))


EMPTY_CHAIN = PolicyChain(())


def run_sync(policies: tuple[RequestPolicy | AsyncRequestPolicy, ...], ctx: RequestCtx) -> LocalReply | None:
    """The request phase of a chain without asynchronous policies (``DEFER`` when one of them
    must wait after all: finish with ``run_from(..., resume=True)``)."""
    for policy in policies:
        reply = policy.on_request(ctx)  # type: ignore[union-attr]
        if reply is not None:
            return reply
    return None


async def run_from(
    chain: PolicyChain,
    index: int,
    ctx: RequestCtx,
    read_body: Callable[[], Awaitable[LocalReply | None]] | None = None,
    resume: bool = False,
) -> LocalReply | None:
    """The request phase from ``index`` on, awaiting the asynchronous policies. ``read_body``
    buffers the whole request body into ``ctx.request_body`` (or answers why it cannot); it is
    awaited once, before the first policy that needs the body. ``resume``: the policy at
    ``index`` returned ``DEFER``; its asynchronous half runs first."""
    policies = chain.request
    for i in range(index, len(policies)):
        policy = policies[i]
        if read_body is not None and getattr(policy, "needs_body", False):
            reply = await read_body()
            if reply is not None:
                return reply
            read_body = None
        if getattr(policy, "is_async", False) or (resume and i == index):
            reply = await policy.on_request_async(ctx)  # type: ignore[union-attr]
        else:
            reply = policy.on_request(ctx)  # type: ignore[union-attr]
            if reply is DEFER:
                reply = await policy.on_request_async(ctx)  # type: ignore[union-attr]
        if reply is not None:
            return reply
    return None


def apply_response(chain: PolicyChain, ctx: RequestCtx, status: int, headers: Headers) -> None:
    """Response-phase policies, then the headers policies asked to add (rate-limit state)."""
    for policy in chain.response:
        policy.on_response(ctx, status, headers)
    extra = ctx.response_headers
    if extra:
        headers.extend(extra)


def respond(conn: ResponseWriter, ctx: RequestCtx, reply: LocalReply, chain: PolicyChain) -> None:
    """Write ``reply`` as the answer to ``ctx``, through the route's response phase."""
    ctx.reason = reply.reason
    body = reply.body
    headers: Iterable[tuple[bytes, bytes]] = reply.headers
    if chain.response or ctx.response_headers:
        edited = list(reply.headers)
        apply_response(chain, ctx, reply.status, edited)
        headers = edited
        if ctx.response_body is not None:
            body = ctx.response_body
    conn.send_head(reply.status, headers, len(body), True)
    conn.send_body(body)
    conn.end_response()
