"""The exchange for routes whose backend is an LLM service: one request of a client API, served
by one provider (or the next one of a virtual model when a provider fails).

The body is buffered (it is a JSON document the gateway must read), then served in a task:
route the model, shape and guard the request, translate it to the provider's format, call the
provider with the gateway's own credentials, and answer in the client's format. Streams are
translated chunk by chunk as they arrive; when client and provider speak the same API the events
are relayed untouched and only the usage is read.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import zlib
from typing import TYPE_CHECKING, Any

import orjson

from agentgateway._native import json_duplicate_member
from agentgateway.core.jsonkeys import ambiguous_key, folded_names
from agentgateway.llm import anthropic, bedrock, gemini, openai, responses
from agentgateway.llm.accounting import LlmCall, TokenBudget, admit_all, reserve_all, settle_all
from agentgateway.llm.caching import mark_converse, mark_messages
from agentgateway.llm.chat import CHAT_REASONING, Json, new_id, now
from agentgateway.llm.config import LlmPolicy, LlmService, ModelOptions, ModelRoute, ModelShaping, ModelTarget
from agentgateway.llm.embeddings import embed_request, embed_response
from agentgateway.llm.errors import (
    CHAT,
    COUNT_TOKENS,
    DETECT,
    EMBEDDINGS,
    KEPT_HEADERS,
    MESSAGES,
    MODELS,
    PASSTHROUGH,
    RERANK,
    RESPONSES,
    LlmError,
    client_status,
    error_status,
    provider_error_message,
    stream_error,
)
from agentgateway.llm.guards import ChunkGuard, GuardSet
from agentgateway.llm.providers import (
    F_ANTHROPIC,
    F_BEDROCK,
    F_GEMINI,
    F_OPENAI,
    OP_CHAT,
    OP_COUNT_TOKENS,
    OP_EMBEDDINGS,
    OP_RERANK,
    OP_RESPONSES,
    OP_STREAM,
    Provider,
)
from agentgateway.llm.shaping import (
    apply_prompts,
    collect_texts,
    invalid_container,
    walk_request_texts,
    walk_response_texts,
)
from agentgateway.llm.tokens import COUNTER, invalid_limit, output_limit, rough_count
from agentgateway.llm.transforms import BodyTransform
from agentgateway.llm.usage import Usage
from agentgateway.observe.tracing import end_call, end_provider_call, start_call, start_provider_call
from agentgateway.policy.chain import apply_response
from agentgateway.upstream.client import ClientResponse, HttpClient, HttpClientError

if TYPE_CHECKING:
    from agentgateway.core.context import RequestCtx
    from agentgateway.core.exchange import ResponseWriter
    from agentgateway.routing.route import CompiledRoute

log = logging.getLogger("agentgateway.llm")
# the response guards of a stream when promptGuard.streaming is Disabled
NO_GUARDS = GuardSet(())

_JSON = (b"content-type", b"application/json")
# What reading a provider's answer of the wrong shape raises (``SseError``, ``EventStreamError``
# and ``orjson.JSONDecodeError`` are ValueErrors): a malformed answer, not a gateway failure.
_MALFORMED = (ValueError, TypeError, AttributeError, KeyError, IndexError)
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
# Client request headers passed on to an Anthropic provider (the rest stay at the gateway).
_ANTHROPIC_FORWARD = (b"anthropic-version", b"anthropic-beta")

# Client API by path suffix; the longest suffixes first.
LLM_PATHS: tuple[tuple[bytes, str], ...] = (
    (b"/messages/count_tokens", COUNT_TOKENS),
    (b"/chat/completions", CHAT),
    (b"/messages", MESSAGES),
    (b"/responses", RESPONSES),
    (b"/embeddings", EMBEDDINGS),
    (b"/rerank", RERANK),
    (b"/models", MODELS),
)
_OPERATION_NAME = {
    CHAT: "chat",
    MESSAGES: "chat",
    RESPONSES: "chat",
    EMBEDDINGS: "embeddings",
    COUNT_TOKENS: "chat",
    MODELS: "chat",
    RERANK: "rerank",
    PASSTHROUGH: "chat",
    DETECT: "chat",
}


def client_api(path: bytes) -> str | None:
    for suffix, api in LLM_PATHS:
        if path.endswith(suffix):
            return api
    return None


class LlmFacts:
    """What the access log, the metrics and the trace attributes say about one LLM call."""

    __slots__ = (
        "operation",
        "provider",
        "request_model",
        "response_model",
        "usage",
        "stream",
        "ttft",
        "error_type",
        "attempts",
        "api",
        "request_body",
        "response_body",
    )

    def __init__(self, operation: str, request_model: str, stream: bool) -> None:
        self.operation = operation
        self.provider = ""
        self.request_model = request_model
        self.response_model = ""
        self.usage = Usage()
        self.stream = stream
        self.ttft = 0.0  # seconds from the request head to the first token relayed; 0 if none
        self.error_type = ""
        self.attempts = 0
        # The client's request and the (non-streamed) answer, kept by reference: read only by
        # log and trace expressions that ask for llm.prompt / llm.completion (``final_cel``).
        self.api = ""
        self.request_body: Json | None = None
        self.response_body: Json | None = None

    def final_cel(self) -> dict[str, object]:
        """``cel()`` once the call is over, with ``prompt`` (the request's messages, or input)
        and ``completion`` (the answer's texts; streamed answers are not kept)."""
        out = self.cel()
        body = self.request_body
        if body is not None:
            prompt = body.get("messages", body.get("input"))
            if prompt is not None:
                out["prompt"] = prompt
        if self.response_body is not None:
            out["completion"] = _response_texts(self.api, self.response_body)
        return out

    def cel(self) -> dict[str, object]:
        """The CEL variable ``llm`` (agentgateway's names)."""
        out: dict[str, object] = {"requestModel": self.request_model, "streaming": self.stream}
        if self.provider:
            out["provider"] = self.provider
        if self.response_model:
            out["responseModel"] = self.response_model
        usage = self.usage
        if usage.known:
            out["inputTokens"] = usage.input_tokens
            out["outputTokens"] = usage.output_tokens
            out["totalTokens"] = usage.total_tokens
        return out

    def span_fields(self, fields: dict[str, object], status: int) -> None:
        """The server span's GenAI fields: which call it was. Usage and finish reasons are the
        provider call span's (GenAI views would count tokens twice)."""
        fields["gen_ai.operation.name"] = self.operation
        fields["gen_ai.provider.name"] = self.provider
        fields["gen_ai.request.model"] = self.request_model
        fields["gen_ai.response.model"] = self.response_model
        if self.stream:
            fields["gen_ai.request.stream"] = True
            if self.ttft:
                fields["gen_ai.response.time_to_first_chunk"] = round(self.ttft, 6)
        if self.attempts > 1:
            fields["agw.ai.attempts"] = self.attempts

    def log_fields(self, fields: dict[str, object], status: int) -> None:
        """The access-log fields (the OTel GenAI names)."""
        fields["gen_ai.operation.name"] = self.operation
        fields["gen_ai.provider.name"] = self.provider
        fields["gen_ai.request.model"] = self.request_model
        fields["gen_ai.response.model"] = self.response_model
        usage = self.usage
        if usage.known:
            fields["gen_ai.usage.input_tokens"] = usage.input_tokens
            fields["gen_ai.usage.output_tokens"] = usage.output_tokens
            if usage.cache_read:
                fields["gen_ai.usage.cache_read.input_tokens"] = usage.cache_read
            if usage.cache_creation:
                fields["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_creation
            if usage.reasoning:
                fields["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning
        if self.response_body is not None:
            reasons = _finish_reasons(self.api, self.response_body)
            if reasons:
                fields["gen_ai.response.finish_reasons"] = reasons
        if self.stream:
            fields["gen_ai.request.stream"] = True
            if self.ttft:
                fields["gen_ai.response.time_to_first_chunk"] = round(self.ttft, 6)
        if self.attempts > 1:
            fields["agw.ai.attempts"] = self.attempts


class _Plan:
    """How one provider call is translated, decided before it is made."""

    __slots__ = (
        "provider",
        "model",
        "api",
        "fmt",
        "passthrough",
        "stream",
        "include_usage",
        "client_body",
        "raw",
        "detect",
        "shaping",
    )

    def __init__(
        self,
        provider: Provider,
        model: str,
        api: str,
        passthrough: bool,
        stream: bool,
        include_usage: bool,
        client_body: Json,
        fmt: str | None = None,
    ) -> None:
        self.provider = provider
        self.model = model
        self.api = api
        # the wire format of the call (a custom provider's depends on the client API)
        self.fmt = fmt or provider.format
        self.passthrough = passthrough
        self.stream = stream
        self.include_usage = include_usage
        self.client_body = client_body
        # the request and its answer go as they are (route types passthrough/detect, model
        # passthrough); detect: their usage is read
        self.raw = False
        self.detect = False
        self.shaping: ModelShaping | None = None


# Top-level request keys the gateway reads (routing, allowedModels, guards, budgets, shaping) in
# every API it parses. Another spelling of one (``Model``, ``MESSAGES``, ``ſtream``) or two keys
# spelled alike are refused: a provider matching names case-insensitively (Go's encoding/json)
# would read a value no policy read (core/jsonkeys.py).
# fmt: off
_READ_NAMES = folded_names((
    "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
    "max_output_tokens", "input", "instructions", "system", "prompt", "tools", "tool_choice",
    "metadata", "user", "n", "temperature", "top_p", "stop", "stop_sequences", "response_format",
    "reasoning", "parallel_tool_calls", "dimensions", "text", "contents", "systemInstruction",
    "generationConfig", "toolConfig", "inferenceConfig", "query", "documents",
))
# fmt: on


class LlmExchange:
    __slots__ = (
        "route",
        "conn",
        "ctx",
        "service",
        "client",
        "_body",
        "_size",
        "_limit",
        "_too_large",
        "_task",
        "_writable",
        "_api",
        "_facts",
        "_options",
        "_taken",
        "_reserved",
        "_answered",
        "_started",
    )

    def __init__(
        self,
        client: HttpClient,
        conn: ResponseWriter,
        ctx: RequestCtx,
        service: LlmService,
        limit: int,
        route: CompiledRoute | None = None,
    ) -> None:
        self.route = route
        self.conn = conn
        self.ctx = ctx
        self.service = service
        self.client = client
        self._body: list[bytes] = []
        self._size = 0
        self._limit = limit
        self._too_large = False
        self._task: asyncio.Task[None] | None = None
        self._writable = asyncio.Event()
        self._writable.set()
        self._api = CHAT
        self._facts: LlmFacts | None = None
        # the options of the model being called (its responseHeaders edit the answer)
        self._options: ModelOptions | None = None
        self._taken: list[tuple[TokenBudget, object]] = []
        self._reserved = 0  # the tokens the call reserved on its budgets
        self._answered = False  # a provider accepted the call (a status below 400)
        self._started = False  # response head sent

    def start(self) -> None:
        if self.ctx.expect_continue:
            self.conn.send_continue()

    # ------------------------------------------------------------------ Exchange

    def request_body(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._limit:
            self._too_large = True
            self._body.clear()
            return
        self._body.append(chunk)

    def request_end(self) -> None:
        # (asyncio.get_running_loop() would cost a getpid system call on 3.11)
        self._task = self.client.pool.loop.create_task(self._serve())

    def client_write_paused(self) -> None:
        self._writable.clear()

    def client_write_resumed(self) -> None:
        self._writable.set()

    def client_lost(self) -> None:
        if self._task is not None:
            self._task.cancel()

    def client_data_done(self) -> None:
        pass

    # ------------------------------------------------------------------ serving

    async def _serve(self) -> None:
        usage: Usage | None = None
        try:
            usage = await self._handle()
        except asyncio.CancelledError:
            raise
        except LlmError as exc:
            self._fail(exc)
        except Exception as exc:  # a bug must cost one request, not the worker
            log.exception("LLM request failed")
            self._fail(LlmError(500, f"internal error: {exc}"))
        finally:
            if self._facts is not None:
                # what the provider charged, for the expressions evaluated from here (rate-limit keys)
                self.ctx.learn("llm", self._facts.cel())
            if self._taken:
                if self._answered and (usage is None or not usage.known):
                    # The provider took the call (and charges for it) but its usage was not
                    # read: a client that left before the stream's last event, a provider that
                    # reports none, an answer the gateway cannot read. The call keeps what it
                    # reserved; given back, it would have run free of the budget.
                    usage = Usage(self._reserved, 0, known=True)
                settle_all(self._taken, usage or Usage())
                self._taken = []

    def _fail(self, exc: LlmError) -> None:
        facts = self._facts
        if facts is not None and not facts.error_type:
            facts.error_type = str(exc.status)
        # A provider's message may quote the credential the gateway sent it.
        redactor = self.service.redactor
        message = redactor.text(exc.message)
        headers = redactor.headers(exc.headers) if exc.headers else ()
        self.ctx.reason = message
        if self._started:
            self.conn.send_body(stream_error(self._api, exc.status, message))
            self.conn.end_response()
            return
        body = LlmError(exc.status, message).body(self._api)
        out = [_JSON, *headers]
        if exc.edit is not None:  # a guard's rejection.headers
            out = exc.edit.apply(out)
        self._answer(client_status(self._api, exc.status), out, body)

    async def _handle(self) -> Usage | None:
        ctx = self.ctx
        service = self.service
        policy = service.policy
        api = policy.route_for_path(ctx.path) if policy.routes is not None else client_api(ctx.path)
        if api is None:
            raise LlmError(
                404,
                f"no LLM API at {ctx.path.decode('latin-1')}; try /v1/chat/completions, /v1/messages or /v1/responses",
            )
        self._api = api
        if api == MODELS:
            if ctx.method not in (b"GET", b"HEAD"):
                raise LlmError(405, "use GET for /v1/models")
            self._models()
            return None
        raw_api = api in (PASSTHROUGH, DETECT)
        if ctx.method != b"POST" and not raw_api:
            raise LlmError(405, f"use POST for {ctx.path.decode('latin-1')}")
        if self._too_large:
            raise LlmError(413, f"request body larger than {self._limit} bytes")
        # A request transformation (or a policy that read the body) left it in ctx.request_body.
        raw = ctx.request_body if ctx.request_body is not None else b"".join(self._body)
        self._body = []
        parsed: Any = None
        if raw:
            try:
                parsed = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                if not raw_api or _json_to_others(raw):
                    # A passthrough body goes as it came: one that a lenient reader takes for JSON
                    # would have the provider read a model (and more) the gateway did not.
                    raise LlmError(400, f"request body is not valid JSON: {exc}") from None
        elif not raw_api:
            raise LlmError(400, "request body must be a JSON object")
        if not raw_api and not isinstance(parsed, dict):
            raise LlmError(400, "request body must be a JSON object")
        body: Json = parsed if isinstance(parsed, dict) else {}
        ambiguous = ambiguous_key(body, _READ_NAMES) if body else None
        if ambiguous is not None:
            # A Go provider (encoding/json: Ollama, ...) would read it as the key the gateway read.
            raise LlmError(400, f"the request body's key {ambiguous!r} is another spelling of a key the gateway reads")
        requested = body.get("model")
        if not isinstance(requested, str) or not requested:
            if not raw_api or service.default is None:
                raise LlmError(400, "model is required")
            requested = ""
        model = policy.resolve_alias(requested) if requested else requested
        streaming = body.get("stream")
        if streaming is not None and not isinstance(streaming, bool):
            # ``1`` or ``"true"`` is true to a lenient provider (pydantic): it would stream an
            # answer the gateway reads as one JSON document (and whose usage it cannot count).
            raise LlmError(400, "stream must be true or false")
        invalid = invalid_limit(api, body)
        if invalid is not None:
            raise LlmError(400, f"{invalid} must be a non-negative integer")
        malformed = invalid_container(api, body)
        if malformed is not None:
            raise LlmError(400, malformed)
        stream = api in (CHAT, MESSAGES, RESPONSES, PASSTHROUGH, DETECT) and streaming is True
        facts = self._facts = LlmFacts(_OPERATION_NAME[api], requested, stream)
        facts.api = api
        facts.request_body = body
        ctx.llm = facts
        ctx.learn("llm", facts.cel())
        hooks = service.hooks
        caller = hooks.identity(ctx)
        if caller is not None and not (caller.may_call(requested) or caller.may_call(model)):
            raise LlmError(403, f"this key may not call model {requested!r}")
        route = service.route_for(model)
        if route is None:
            raise LlmError(404, f"model {requested!r} not found")
        attempts = route.attempts()
        first = attempts[0]
        raw_model = first.options is not None and first.options.passthrough is not None
        if isinstance(parsed, dict) and (raw_api or any(t.options and t.options.passthrough for t in attempts)):
            # The body may go to the provider as it came, while the gateway decided on what it read
            # (the model for allowedModels and routing, stream, the budget's estimate): a key twice,
            # which providers read differently (the first, the last, or an error), is refused.
            try:
                repeated = json_duplicate_member(raw)
            except ValueError as exc:  # nested past the search's limit: a repeat could hide there
                raise LlmError(400, f"request body: {exc}") from None
            if repeated is not None:
                raise LlmError(400, f"the request body has the key {repeated!r} more than once")
        if not raw_api and not raw_model:
            _shape(policy.defaults, policy.overrides, policy.transform, body, ctx, facts)
            apply_prompts(policy, api, body)
            if api == EMBEDDINGS and _token_input(body) and _guards_requests(policy):
                # Token ids are text no pattern can read (webhooks and vendor guards are sent texts
                # only): with a request guard configured they are refused, not passed unguarded.
                raise LlmError(400, "embeddings input as token ids cannot be read by this route's prompt guards")
            if policy.request_guards:
                walk_request_texts(api, body, policy.request_guards.apply)
            if policy.webhooks:
                await self._webhooks(api, body, response=False)
            for guard in policy.vendor_request:
                replaced = await guard.check(self.client, collect_texts(api, body), self.ctx)
                if replaced is not None:
                    walk_request_texts(api, body, _Replacer(replaced))
            if api == COUNT_TOKENS and not first.provider.counts_tokens(first.model or model):
                n = sum(COUNTER.count(t) for t in collect_texts(api, body))
                self._json(200, orjson.dumps({"input_tokens": n}), ())
                return None
        if hooks.budgets:
            # What the call may cost is reserved before it is made: the prompt's tokens (the
            # tokenizer's count with tokenize, else one per 4 bytes) and the answer's limit (the
            # request's own, else the policy's defaultOutputTokens); settled from the usage.
            texts = collect_texts(api, body)
            if raw_api and not texts:
                estimate = max(len(raw) // 4, 1)
            elif hooks.tokenize or first.provider.tokenize:
                estimate = sum(COUNTER.count(t) for t in texts) or 1
            else:
                estimate = rough_count(texts)
            output = output_limit(api, body)
            reserve = self._reserved = estimate + (policy.default_output_tokens if output is None else output)
            call = LlmCall(ctx.route, caller, requested, first.provider.genai_name, estimate, ctx, reserve)
            self._taken, refusal = reserve_all(hooks.budgets, call)
            if refusal is None and hooks.admissions:  # services holding shared limits
                refusal = await admit_all(hooks.admissions, self._taken, call)
            if refusal is not None:
                raise LlmError(refusal.status, refusal.message, refusal.headers)
        return await self._call_with_failover(route, attempts, api, body, model, stream, raw)

    async def _call_with_failover(
        self,
        route: ModelRoute,
        attempts: list[ModelTarget],
        api: str,
        body: Json,
        model: str,
        stream: bool,
        raw: bytes,
    ) -> Usage | None:
        facts = self._facts
        assert facts is not None
        last_error: LlmError | None = None
        for i, target in enumerate(attempts):
            final = i == len(attempts) - 1
            facts.attempts = i + 1
            provider = target.provider
            facts.provider = provider.genai_name
            self.ctx.backend = provider.name
            options = self._options = target.options
            if options is not None and options.authorization is not None:
                # the model's own authorization (llm.models[].authorization)
                decision = options.authorization.evaluate(self.ctx, self.ctx.cel_vars)
                if not decision.allowed:
                    self.ctx.error = decision.reason
                    raise LlmError(403, "authorization failed")
            try:
                plan, path, payload = self._build(target, api, body, model, stream, raw)
            except _MALFORMED as exc:
                # The translation read a value of another type than the client API defines
                # (``messages: [1]``, ``n: "2"``): the client's error, not a traceback per request.
                log.debug("LLM request cannot be translated: %s: %s", type(exc).__name__, exc)
                raise LlmError(400, f"the request body does not have the shape of the {api} API") from None
            except LlmError as exc:
                if final:
                    raise
                last_error = exc
                continue
            headers = provider.headers(path, payload, self._forwarded_headers(plan), plan.fmt)
            if options is not None and options.request_headers is not None:
                headers = options.request_headers.apply(headers)
            method = b"POST"
            if plan.raw:
                method = self.ctx.method
                content_type = self.ctx.header(b"content-type")
                if content_type is not None:
                    headers = [(k, content_type if k == b"content-type" else v) for k, v in headers]
            span = start_provider_call(self.ctx, facts, provider.name, target.model or model)
            if self.ctx.trace is not None:
                headers = [*headers, (b"traceparent", self.ctx.trace.traceparent(span))]
            try:
                resp = await self.client.request(
                    provider.target, method, path.encode(), headers, payload, self._timeout(route)
                )
            except HttpClientError as exc:
                last_error = LlmError(exc.status, f"provider {provider.name}: {exc.message}")
                if span is not None:
                    end_provider_call(span, facts, 0, exc.message)
                if final:
                    raise last_error from None
                log.info("LLM failover: %s; trying the next target", last_error.message)
                continue
            status = resp.status
            if (status == 429 or status >= 500) and not final:
                raw_error = await _read_quietly(resp)
                if span is not None:
                    end_provider_call(span, facts, status, str(status))
                log.info(
                    "LLM failover: provider %s answered %d (%s); trying the next target",
                    provider.name,
                    status,
                    self.service.redactor.text(provider_error_message(raw_error))[:200],
                )
                continue
            try:
                if status >= 400:
                    await self._provider_error(resp, plan)
                    return None
                self._answered = True
                if plan.raw:
                    return await self._relay_raw(resp, plan)
                if stream:
                    return await self._relay_stream(resp, plan)
                return await self._complete(resp, plan)
            except _MALFORMED as exc:
                # The provider's answer is not what its API defines (JSON of another shape where
                # the translation reads objects, an event beyond the size bound): its fault, told
                # as such, and no traceback a provider could flood the log with.
                resp.close()
                log.info("provider %s sent a malformed answer: %s: %s", provider.name, type(exc).__name__, exc)
                raise LlmError(502, f"provider {provider.name} sent a malformed answer") from None
            except BaseException:
                # The client left (cancelled) or the answer failed: an unfinished upstream response
                # must not hold its connection (closing a finished one does nothing).
                resp.close()
                raise
            finally:
                if span is not None:
                    end_provider_call(span, facts, status, facts.error_type)
        raise last_error or LlmError(502, "no provider could be called")

    def _timeout(self, route: ModelRoute) -> float | None:
        """How long one provider has to answer (its response head): the virtual model's
        ``failover.timeout``, the route's ``backendRequestTimeout``, and what is left of its
        ``requestTimeout``, whichever is shortest."""
        limits = [route.timeout] if route.timeout is not None else []
        policy = self.route.timeout if self.route is not None else None
        if policy is not None:
            if policy.backend is not None:
                limits.append(policy.backend)
            if policy.request is not None:
                left = policy.request - (time.perf_counter() - self.ctx.start)
                if left <= 0:
                    raise LlmError(504, f"request timeout: no response within {policy.request:g}s")
                limits.append(left)
        return min(limits) if limits else None

    def _forwarded_headers(self, plan: _Plan) -> tuple[tuple[bytes, bytes], ...]:
        if plan.fmt != F_ANTHROPIC or plan.api not in (MESSAGES, COUNT_TOKENS, PASSTHROUGH, DETECT):
            return ()
        return tuple((k, v) for k, v in self.ctx.headers if k in _ANTHROPIC_FORWARD)

    # ------------------------------------------------------------------ request translation

    def _client_target(self, provider: Provider, raw_route: bool) -> str:
        """The client's path (and query) as the provider gets it: unchanged, or under the path
        prefix (which replaces the /v1 base where the provider has one, as agentgateway does
        for passthrough routes)."""
        ctx = self.ctx
        path = ctx.path.decode("latin-1")
        prefix = provider.prefix
        if raw_route and prefix is not None:
            if provider.kind in ("openAI", "anthropic") and (path == "/v1" or path.startswith("/v1/")):
                path = path[3:]
            path = prefix + path
        if ctx.query:
            path += "?" + ctx.query.decode("latin-1")
        return path

    def _path(self, plan: _Plan, op: str) -> str:
        provider = plan.provider
        if plan.passthrough and provider.client_path:
            # hostOverride without a path prefix: the provider gets the client's path (agentgateway)
            return self._client_target(provider, False)
        return provider.path(op, plan.model, plan.fmt)

    def _build(
        self, target: ModelTarget, api: str, body: Json, model: str, stream: bool, raw: bytes
    ) -> tuple[_Plan, str, bytes]:
        provider = target.provider
        upstream_model = target.model or model
        options = target.options
        if api in (PASSTHROUGH, DETECT) or (options is not None and options.passthrough is not None):
            return self._raw_plan(target, api, body, upstream_model, stream, raw)
        shaping = options.shaping if options is not None else None
        if shaping is not None:  # the model's own defaults, overrides and transformation
            body = dict(body)
            _shape(shaping.defaults, shaping.overrides, shaping.transform, body, self.ctx, self._facts)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage")) if api == CHAT else False
        policy = self.service.policy
        if api == RERANK:
            if not provider.serves_rerank():
                raise LlmError(400, f"provider {provider.name} has no rerank API")
            plan = _Plan(provider, upstream_model, api, True, False, False, body)
            return plan, self._path(plan, OP_RERANK), self._payload({**body, "model": upstream_model}, plan, shaping)
        if api == EMBEDDINGS:
            efmt = provider.embeddings_format()
            if efmt is None:
                raise LlmError(400, f"provider {provider.name} has no embeddings API")
            plan = _Plan(provider, upstream_model, api, efmt == F_OPENAI, False, False, body, efmt)
            path = self._path(plan, OP_EMBEDDINGS)
            if efmt == F_OPENAI:
                return plan, path, self._payload({**body, "model": upstream_model}, plan, shaping)
            return plan, path, self._payload(embed_request(provider.kind, upstream_model, body), plan, shaping)
        fmt = provider.chat_format(api in (MESSAGES, COUNT_TOKENS), upstream_model)
        if api == COUNT_TOKENS:
            if fmt != F_ANTHROPIC:
                raise LlmError(400, "count_tokens goes to Anthropic-compatible providers only")
            plan = _Plan(provider, upstream_model, api, True, False, False, body, F_ANTHROPIC)
            return plan, self._path(plan, OP_COUNT_TOKENS), self._payload({**body, "model": upstream_model}, plan, None)
        if fmt is None:
            raise LlmError(400, f"provider {provider.name} serves no chat API")
        if api == CHAT and fmt == F_OPENAI:
            req = {**body, "model": upstream_model}
            if stream:
                req["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
            plan = _Plan(provider, upstream_model, api, True, stream, include_usage, body, fmt)
            return plan, self._path(plan, OP_STREAM if stream else OP_CHAT), self._payload(req, plan, shaping)
        if api == MESSAGES and fmt == F_ANTHROPIC:
            plan = _Plan(provider, upstream_model, api, True, stream, False, body, fmt)
            req = {**body, "model": upstream_model}
            return plan, self._path(plan, OP_CHAT), self._payload(req, plan, shaping)
        # A guarded Responses stream is served through Chat Completions: the guard reads canonical
        # chunks (the Responses events repeat each text whole in their done events).
        guarded = (bool(policy.response_guards) or bool(policy.vendor_response)) and policy.stream_guards
        if api == RESPONSES and provider.serves_responses(upstream_model) and not (stream and guarded):
            plan = _Plan(provider, upstream_model, api, True, stream, False, body, F_OPENAI)
            req = {**body, "model": upstream_model}
            return plan, self._path(plan, OP_RESPONSES), self._payload(req, plan, shaping)
        # Translated: client API → canonical Chat → provider format.
        if api == MESSAGES:
            canonical = anthropic.messages_request_to_chat(body)
        elif api == RESPONSES:
            canonical = responses.responses_request_to_chat(body)
        else:
            canonical = dict(body)
        canonical["model"] = upstream_model
        plan = _Plan(provider, upstream_model, api, False, stream, include_usage, body, fmt)
        op = OP_STREAM if stream else OP_CHAT
        if fmt == F_OPENAI:
            if stream:
                canonical["stream_options"] = {**(canonical.get("stream_options") or {}), "include_usage": True}
            payload: Json = canonical
        elif fmt == F_ANTHROPIC:
            payload = anthropic.chat_request_to_messages(canonical)
        elif fmt == F_GEMINI:
            payload = gemini.chat_request_to_gemini(canonical)
        else:
            payload = bedrock.chat_request_to_converse(canonical)
            if provider.guardrail is not None:
                payload["guardrailConfig"] = dict(provider.guardrail)
        return plan, provider.path(op, upstream_model, fmt), self._payload(payload, plan, shaping)

    def _raw_plan(
        self, target: ModelTarget, api: str, body: Json, model: str, stream: bool, raw: bytes
    ) -> tuple[_Plan, str, bytes]:
        """The request as the client sent it (route types passthrough/detect, or a model's
        ``passthrough``): on the client's path, or the provider's own path for its own API."""
        provider = target.provider
        options = target.options
        plan = _Plan(provider, model, api, True, stream, False, body)
        plan.raw = True
        plan.detect = api == DETECT or (options is not None and options.passthrough == "detect")
        if api in (PASSTHROUGH, DETECT):
            return plan, self._client_target(provider, True), raw
        fmt = provider.chat_format(api == MESSAGES, model)
        plan.fmt = fmt or provider.format
        if api == CHAT and fmt == F_OPENAI:
            path = self._path(plan, OP_STREAM if stream else OP_CHAT)
        elif api in (MESSAGES, COUNT_TOKENS) and fmt == F_ANTHROPIC:
            path = self._path(plan, OP_COUNT_TOKENS if api == COUNT_TOKENS else OP_CHAT)
        elif api == RESPONSES and provider.serves_responses(model):
            path = self._path(plan, OP_RESPONSES)
        elif api == EMBEDDINGS and provider.embeddings_format() == F_OPENAI:
            path = self._path(plan, OP_EMBEDDINGS)
        elif api == RERANK and provider.serves_rerank():
            path = self._path(plan, OP_RERANK)
        else:
            path = self._client_target(provider, True)
        return plan, path, raw

    def _payload(self, payload: Json, plan: _Plan, shaping: ModelShaping | None) -> bytes:
        """The provider's request with cache markers (promptCaching) and finalTransformations."""
        policy = self.service.policy
        caching = shaping.prompt_caching if shaping is not None and shaping.prompt_caching else policy.prompt_caching
        if caching is not None and plan.api not in (EMBEDDINGS, RERANK, COUNT_TOKENS):
            if plan.fmt == F_ANTHROPIC:
                mark_messages(payload, caching)
            elif plan.fmt == F_BEDROCK:
                mark_converse(payload, caching, plan.model)
        final = policy.final_transform
        model_final = shaping.final_transform if shaping is not None else None
        if final is not None or model_final is not None:
            facts = self._facts
            llm = facts.cel() if facts is not None else None
            if final is not None:
                final.apply(payload, self.ctx, llm)
            if model_final is not None:
                model_final.apply(payload, self.ctx, llm)
        return orjson.dumps(payload)

    # ------------------------------------------------------------------ responses

    def _json(self, status: int, body: bytes, headers: tuple[tuple[bytes, bytes], ...]) -> None:
        self._answer(status, [_JSON, *headers], body)

    def _response_phase(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """The model's ``responseHeaders``, then the route's response-phase policies (header
        modifiers, CORS, rate-limit headers)."""
        options = self._options
        if options is not None and options.response_headers is not None:
            headers[:] = options.response_headers.apply(headers)
        route = self.route
        if route is not None and (route.chain.response or self.ctx.response_headers):
            if self._facts is not None:
                self.ctx.learn("llm", self._facts.cel())
            apply_response(route.chain, self.ctx, status, headers)

    def _answer(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self._response_phase(status, headers)
        if self.ctx.response_body is not None:  # a response transformation replaced it
            body = self.ctx.response_body
        self.conn.send_head(status, headers, len(body), True)
        self.conn.send_body(body)
        self.conn.end_response()

    async def _provider_error(self, resp: ClientResponse, plan: _Plan) -> None:
        """A provider's error, in the client's format, without the credentials the gateway sent
        (a 401 may quote the key)."""
        redactor = self.service.redactor
        raw = redactor.body(await resp.read())
        kept = redactor.headers((k, v) for k, v in resp.headers if k in KEPT_HEADERS)
        facts = self._facts
        if facts is not None:
            facts.error_type = str(resp.status)
        if plan.passthrough and resp.content_type == b"application/json":
            # Same API on both sides: the provider's own error body is already in the client's format.
            self.ctx.reason = provider_error_message(raw)[:200]
            self._json(resp.status, raw, kept)
            return
        raise LlmError(resp.status, provider_error_message(raw), kept)

    async def _vendor_response(self, api: str, out: Json) -> None:
        """The vendor response guards over a whole answer (in the client's format)."""
        for guard in self.service.policy.vendor_response:
            replaced = await guard.check(self.client, _response_texts(api, out), self.ctx)
            if replaced is not None:
                walk_response_texts(api, out, _Replacer(replaced))

    async def _complete(self, resp: ClientResponse, plan: _Plan) -> Usage:
        raw = await resp.read()
        kept = tuple((k, v) for k, v in resp.headers if k in KEPT_HEADERS)
        facts = self._facts
        assert facts is not None
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise LlmError(502, f"provider {plan.provider.name} answered with invalid JSON") from None
        policy = self.service.policy
        guards = policy.response_guards
        api = plan.api
        if plan.passthrough:
            if api in (COUNT_TOKENS, RERANK):
                usage = Usage.from_openai(data["usage"]) if isinstance(data.get("usage"), dict) else Usage()
                facts.usage = usage
                self._json(200, raw, kept)
                return usage
            if api == MESSAGES:
                usage = Usage.from_anthropic(data.get("usage") or {})
            else:
                usage = Usage.from_openai(data.get("usage") or {})
            facts.response_model = data.get("model", "") if isinstance(data, dict) else ""
            facts.response_body = data
            if guards:
                walk_response_texts(api, data, guards.apply)
                raw = orjson.dumps(data)
            if policy.webhooks:
                await self._webhooks(api, data, response=True)
                raw = orjson.dumps(data)
            if policy.vendor_response:
                await self._vendor_response(api, data)
                raw = orjson.dumps(data)
        else:
            fmt = plan.fmt
            if api == EMBEDDINGS:
                out = embed_response(plan.provider.kind, plan.model, data, plan.client_body)
                usage = Usage(out["usage"]["prompt_tokens"], 0, known=True)
                facts.response_model = plan.model
                facts.usage = usage
                self._json(200, orjson.dumps(out), kept)
                return usage
            if fmt == F_OPENAI:
                chat_resp, usage = data, Usage.from_openai(data.get("usage") or {})
            elif fmt == F_ANTHROPIC:
                chat_resp, usage = anthropic.messages_response_to_chat(data)
            elif fmt == F_GEMINI:
                chat_resp, usage = gemini.gemini_response_to_chat(data)
            else:
                chat_resp, usage = bedrock.converse_response_to_chat(data, plan.model)
            if not chat_resp.get("model"):
                chat_resp["model"] = plan.model
            facts.response_model = chat_resp["model"]
            if api == MESSAGES:
                out = anthropic.chat_response_to_messages(chat_resp, usage)
            elif api == RESPONSES:
                out = responses.chat_response_to_responses(plan.client_body, chat_resp, usage)
            else:
                out = chat_resp
            if guards:
                walk_response_texts(api, out, guards.apply)
            if policy.webhooks:
                await self._webhooks(api, out, response=True)
            if policy.vendor_response:
                await self._vendor_response(api, out)
            raw = orjson.dumps(out)
            facts.response_body = out
        facts.usage = usage
        self._json(200, raw, kept)
        return usage

    async def _relay_raw(self, resp: ClientResponse, plan: _Plan) -> Usage:
        """A passthrough answer, relayed as it arrives; ``detect`` reads its usage (a JSON body,
        or the usage events of a stream)."""
        conn = self.conn
        facts = self._facts
        assert facts is not None
        # A coding the provider used although asked for none goes with the bytes it describes.
        head = [(k, v) for k, v in resp.headers if k in _RAW_KEPT or k in KEPT_HEADERS]
        self._response_phase(resp.status, head)
        conn.send_head(resp.status, head, None, True)
        self._started = True
        writable = self._writable
        seen = bytearray() if plan.detect else None
        try:
            async for data in resp.chunks():
                if not facts.ttft:
                    facts.ttft = time.perf_counter() - self.ctx.start
                conn.send_body(data)
                if not resp.buffered:
                    conn.flush()
                if seen is not None and len(seen) < _DETECT_LIMIT:
                    seen += data
                if not writable.is_set():
                    await writable.wait()
        except HttpClientError as exc:
            raise LlmError(502, f"provider stream ended early: {exc.message}") from None
        usage = Usage()
        if seen is not None:
            body = _decoded(bytes(seen), resp.header(b"content-encoding"))
            usage = _detected_usage(body, resp.content_type) if body is not None else usage
        facts.usage = usage  # before the end: the access log is written with it
        conn.end_response()
        return usage

    async def _relay_stream(self, resp: ClientResponse, plan: _Plan) -> Usage:
        conn = self.conn
        facts = self._facts
        assert facts is not None
        kept = [(k, v) for k, v in resp.headers if k in KEPT_HEADERS]
        policy = self.service.policy
        stream_guards = policy.stream_guards
        guards = policy.response_guards if stream_guards else NO_GUARDS
        vendors = policy.vendor_response if stream_guards else ()
        # Vendor response guards judge the whole answer: a stream is held until it is judged.
        held: list[bytes] | None = [] if vendors else None
        head = [*_SSE, *kept]
        if held is None:
            self._response_phase(200, head)
            conn.send_head(200, head, None, True)
            self._started = True
            conn.flush()
        start = self.ctx.start
        writable = self._writable
        if plan.passthrough and not guards and held is None:
            relay: openai.ChatPassthrough | anthropic.MessagesPassthrough | responses.ResponsesPassthrough
            if plan.api == CHAT:
                relay = openai.ChatPassthrough(plan.include_usage)
            elif plan.api == MESSAGES:
                relay = anthropic.MessagesPassthrough()
            else:
                relay = responses.ResponsesPassthrough(self.service.redactor)
            try:
                async for data in resp.chunks():
                    out = relay.feed(data)
                    if out:
                        if not facts.ttft:
                            facts.ttft = time.perf_counter() - start
                        conn.send_body(out)
                        if not resp.buffered:  # what arrived together leaves together
                            conn.flush()
                    if relay.error is not None:
                        raise relay.error
                    if not writable.is_set():
                        await writable.wait()
            except HttpClientError as exc:
                facts.usage = relay.usage
                raise LlmError(502, f"provider stream ended early: {exc.message}") from None
            except LlmError:
                facts.usage = relay.usage
                resp.close()
                raise
            facts.usage = relay.usage
            facts.response_model = relay.model or plan.model
            conn.end_response()
            return relay.usage
        # Translated (or guarded): provider events → canonical chunks → client events.
        fmt = plan.fmt
        decoder: Any
        if fmt == F_OPENAI:
            decoder = openai.ChatStreamDecoder()
        elif fmt == F_ANTHROPIC:
            decoder = anthropic.MessagesStreamDecoder()
        elif fmt == F_GEMINI:
            decoder = gemini.GeminiStreamDecoder()
        else:
            decoder = bedrock.ConverseStreamDecoder(plan.model)
        encoder: Any
        if plan.api == MESSAGES:
            encoder = anthropic.MessagesStreamEncoder(plan.model)
        elif plan.api == RESPONSES:
            encoder = responses.ResponsesStreamEncoder(plan.client_body, plan.model)
        else:
            encoder = openai.ChatStreamEncoder(plan.include_usage, plan.model)
        guard = ChunkGuard(guards) if guards else None
        chunks_seen: list[Json] | None = [] if held is not None else None
        try:
            async for data in resp.chunks():
                chunks = decoder.feed(data)
                if chunks:
                    if chunks_seen is not None:
                        chunks_seen.extend(self._guarded(chunks, guard))
                    else:
                        out = self._encode(chunks, encoder, guard)
                        if out:
                            if not facts.ttft:
                                facts.ttft = time.perf_counter() - start
                            conn.send_body(out)
                            if not resp.buffered:
                                conn.flush()
                if decoder.error is not None:
                    raise decoder.error
                if not writable.is_set():
                    await writable.wait()
            tail = decoder.finish()
            if not decoder.complete:
                # A provider (or a connection) that stops before the stream's last event: the
                # client gets an error event, not an ending that reads as a complete answer.
                raise LlmError(502, f"provider stream ended early: no final event from {plan.provider.name}")
        except HttpClientError as exc:
            facts.usage = decoder.usage
            raise LlmError(502, f"provider stream ended early: {exc.message}") from None
        except LlmError:
            facts.usage = decoder.usage
            resp.close()
            raise
        usage: Usage = decoder.usage
        facts.usage = usage
        facts.response_model = decoder.model or plan.model
        if chunks_seen is not None:
            chunks_seen.extend(self._guarded(tail, guard, final=True))
            for vendor in vendors:
                replaced = await vendor.check(self.client, _stream_texts(chunks_seen), self.ctx)
                if replaced is not None:
                    chunks_seen = _replace_stream_texts(chunks_seen, replaced)
            body = b"".join([encoder.feed(c) for c in chunks_seen]) + encoder.finish(usage)
            self._response_phase(200, head)
            conn.send_head(200, head, None, True)
            self._started = True
            facts.ttft = time.perf_counter() - start
            conn.send_body(body)
            conn.end_response()
            return usage
        out = self._encode(tail, encoder, guard, final=True)
        conn.send_body(out + encoder.finish(usage))
        conn.end_response()
        return usage

    @staticmethod
    def _guarded(chunks: list[Json], guard: ChunkGuard | None, final: bool = False) -> list[Json]:
        if guard is None:
            return chunks
        out = [g for g in (guard.feed(c) for c in chunks) if g is not None]
        if final:
            rest = guard.finish()
            if rest is not None:
                out.append(rest)
        return out

    @staticmethod
    def _encode(chunks: list[Json], encoder: Any, guard: ChunkGuard | None, final: bool = False) -> bytes:
        if guard is None:
            return b"".join([encoder.feed(c) for c in chunks])
        parts: list[bytes] = []
        for c in chunks:
            guarded = guard.feed(c)
            if guarded is not None:
                parts.append(encoder.feed(guarded))
        if final:
            rest = guard.finish()
            if rest is not None:
                parts.append(encoder.feed(rest))
        return b"".join(parts)

    # ------------------------------------------------------------------ models, webhooks

    def _models(self) -> None:
        service = self.service
        listed = service.listed
        if self.ctx.header(b"anthropic-version") is not None:
            data = [
                {"id": r.name, "type": "model", "display_name": r.name, "created_at": "1970-01-01T00:00:00Z"}
                for r in listed
            ]
            body: Json = {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        else:
            body = {
                "object": "list",
                "data": [{"id": r.name, "object": "model", "created": 0, "owned_by": r.owner} for r in listed],
            }
        self._json(200, orjson.dumps(body), ())

    async def _webhooks(self, api: str, body: Json, response: bool) -> None:
        """Webhook guards: the texts go to the webhook, which answers pass, mask (with the new
        texts) or reject (with a reason)."""
        texts = collect_texts(api, body) if not response else _response_texts(api, body)
        for hook in self.service.policy.webhooks:
            if hook.on_response != response:
                continue
            payload = orjson.dumps({"phase": "response" if response else "request", "texts": texts})
            phase = "response" if response else "request"
            span = start_call(self.ctx, f"guardrail webhook {phase}", {"agw.guardrail.phase": phase})
            method, path, headers = hook.request_head(self.ctx)
            if self.ctx.trace is not None:
                # (a forwarded client traceparent is replaced by the webhook call's own)
                headers = [(n, v) for n, v in headers if n != b"traceparent"]
                headers.append((b"traceparent", self.ctx.trace.traceparent(span)))
            try:
                resp = await self.client.request(hook.target, method, path, headers, payload, 10.0)
                raw = await resp.read(1024 * 1024)
                if resp.status != 200:
                    raise HttpClientError(502, f"the webhook answered {resp.status}")
                verdict = orjson.loads(raw)
                if not isinstance(verdict, dict):
                    raise HttpClientError(502, "the webhook answered no JSON object")
            except (HttpClientError, orjson.JSONDecodeError) as exc:
                if span is not None:
                    end_call(span, 0, str(exc))
                if hook.fail_open:
                    log.info("prompt guard webhook failed (failOpen, the request goes on): %s", exc)
                    continue
                raise LlmError(503, f"prompt guard webhook failed: {exc}") from None
            action = verdict.get("action")
            if span is not None:
                span.attributes["agw.guardrail.action"] = str(action)
                end_call(span, resp.status)
            if action == "reject":
                raise LlmError(
                    error_status(verdict.get("status"), 403),
                    str(verdict.get("reason") or "rejected by a prompt guard webhook"),
                )
            if action == "mask":
                replace = _Replacer(verdict.get("texts") or [])
                if response:
                    walk_response_texts(api, body, replace)
                else:
                    walk_request_texts(api, body, replace)
                texts = list(verdict.get("texts") or [])
            elif action != "pass":
                raise LlmError(503, "prompt guard webhook gave no action (pass, mask or reject)")


def _token_input(body: Json) -> bool:
    """An embeddings ``input`` with anything but text (token ids, or lists of them)."""
    value = body.get("input")
    if isinstance(value, str):
        return False
    return not isinstance(value, list) or not all(isinstance(v, str) for v in value)


def _guards_requests(policy: LlmPolicy) -> bool:
    return bool(policy.request_guards or policy.vendor_request or any(not h.on_response for h in policy.webhooks))


class _Replacer:
    """Hands out a webhook's masked texts in the order the texts were sent."""

    __slots__ = ("_texts",)

    def __init__(self, texts: list[Any]) -> None:
        self._texts = iter(texts)

    def __call__(self, old: str) -> str:
        new = next(self._texts, old)
        return new if isinstance(new, str) else old


def _finish_reasons(api: str, body: Json) -> list[str]:
    """Why the answer ended, in the client's API's words (``stop``, ``length``, ``tool_calls``;
    ``end_turn``; ``completed``), one per generation."""
    if api == MESSAGES:
        reason = body.get("stop_reason")
        return [reason] if isinstance(reason, str) else []
    if api == RESPONSES:
        status = body.get("status")
        return [status] if isinstance(status, str) else []
    choices = body.get("choices")
    if not isinstance(choices, list):
        return []
    return [c["finish_reason"] for c in choices if isinstance(c, dict) and isinstance(c.get("finish_reason"), str)]


def _response_texts(api: str, body: Json) -> list[str]:
    texts: list[str] = []

    def keep(text: str) -> str:
        texts.append(text)
        return text

    walk_response_texts(api, body, keep)
    return texts


async def _read_quietly(resp: ClientResponse) -> bytes:
    try:
        return await resp.read(64 * 1024)
    except HttpClientError:
        return b""


__all__ = ["LLM_PATHS", "LlmExchange", "LlmFacts", "client_api", "new_id", "now"]


def _shape(
    defaults: dict[str, Any],
    overrides: dict[str, Any],
    transform: BodyTransform | None,
    body: Json,
    ctx: Any,
    facts: LlmFacts | None,
) -> None:
    """``overrides``, then ``transformations``, then ``defaults`` (agentgateway's order)."""
    for key, value in overrides.items():
        body[key] = value
    if transform is not None:
        transform.apply(body, ctx, facts.cel() if facts is not None else None)
    for key, value in defaults.items():
        if key not in body:
            body[key] = value


# How much of a detected (passthrough) answer is kept to read its usage.
_DETECT_LIMIT = 4 * 1024 * 1024
# The provider's fields a passthrough answer keeps besides KEPT_HEADERS.
_RAW_KEPT = (b"content-type", b"content-encoding")


def _decoded(raw: bytes, coding: bytes | None) -> bytes | None:
    """A copy of a passthrough answer as its usage is read: decoded when the provider compressed
    it (gzip, deflate) although asked for no coding; None for a coding the gateway cannot read."""
    name = coding.strip().lower() if coding is not None else b""
    if name in (b"", b"identity"):
        return raw
    if name not in (b"gzip", b"x-gzip", b"deflate"):
        return None
    try:
        return zlib.decompressobj(zlib.MAX_WBITS | (16 if name != b"deflate" else 0)).decompress(raw, _DETECT_LIMIT)
    except zlib.error:
        return None


# What may come before a JSON document for a lenient reader: JSON's blanks, byte order marks
# (UTF-8, UTF-16 and UTF-32, the last two with their NULs) and the NULs of UTF-16/32 text.
_LENIENT_LEAD = re.compile(rb"(?:[ \t\r\n\x00]+|\xef\xbb\xbf|\xff\xfe|\xfe\xff)*")


def _json_to_others(raw: bytes) -> bool:
    """Whether a body the gateway's parser refused is a JSON document to a more lenient one:
    Python's ``json`` (FastAPI, vLLM: UTF-16/32, a BOM, ``NaN``, ``1e400``, lone surrogates),
    Go's ``encoding/json`` and Node (invalid UTF-8), Go's ``json.Decoder`` (the first of several
    documents). Taken as such when it starts like an object or an array after blanks, byte order
    marks and NULs; a multipart upload or a form does not."""
    end = _LENIENT_LEAD.match(raw)
    at = end.end() if end is not None else 0
    return raw[at : at + 1] in (b"{", b"[")


def _usage_of(data: Any) -> Usage | None:
    if not isinstance(data, dict):
        return None
    usage = data.get("usage")
    if not isinstance(usage, dict):
        message = data.get("message") or data.get("response")  # Anthropic / Responses stream events
        usage = message.get("usage") if isinstance(message, dict) else None
    if not isinstance(usage, dict):
        return None
    if "input_tokens" in usage or "output_tokens" in usage:
        return Usage.from_anthropic(usage) if "prompt_tokens" not in usage else Usage.from_openai(usage)
    return Usage.from_openai(usage)


def _detected_usage(raw: bytes, content_type: bytes) -> Usage:
    """The usage a passthrough answer reports (``detect``): a JSON body's ``usage``, or the last
    usage of an event stream (Anthropic's split input/output counts are added up)."""
    if content_type.startswith(b"text/event-stream"):
        found = Usage()
        for line in raw.split(b"\n"):
            if not line.startswith(b"data:"):
                continue
            try:
                usage = _usage_of(orjson.loads(line[5:]))
            except orjson.JSONDecodeError:
                continue
            if usage is not None and usage.known:
                found = Usage(
                    max(found.input_tokens, usage.input_tokens),
                    max(found.output_tokens, usage.output_tokens),
                    known=True,
                )
        return found
    try:
        return _usage_of(orjson.loads(raw)) or Usage()
    except orjson.JSONDecodeError:
        return Usage()


# The texts of a held stream's deltas a vendor guard judges, per choice: the answer, a
# refusal, and the reasoning OpenAI-compatible providers stream beside it.
_HELD_TEXTS = ("content", "refusal", *CHAT_REASONING)


def _stream_parts(chunks: list[Json]) -> list[tuple[object, dict[str, Any], str]]:
    """Each streamed piece of text of a held stream as (which text, the dict holding it, its
    key), in stream order: a choice's content, refusal and reasoning, and each tool call's
    arguments."""
    parts: list[tuple[object, dict[str, Any], str]] = []
    for chunk in chunks:
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            index = choice.get("index", 0)
            for key in _HELD_TEXTS:
                if isinstance(delta.get(key), str):
                    parts.append(((key, index), delta, key))
            for call in delta.get("tool_calls") or ():
                fn = call.get("function") or {}
                if isinstance(fn.get("arguments"), str):
                    parts.append((("arguments", index, call.get("index", 0)), fn, "arguments"))
    return parts


def _stream_texts(chunks: list[Json]) -> list[str]:
    """The texts of a held stream, as the whole answer has them: each text (a choice's content,
    refusal, reasoning, a tool call's arguments) joined, in the order each began."""
    texts: dict[object, list[str]] = {}
    for which, holder, key in _stream_parts(chunks):
        texts.setdefault(which, []).append(holder[key])
    return ["".join(v) for v in texts.values()]


def _replace_stream_texts(chunks: list[Json], texts: list[str]) -> list[Json]:
    """A held stream with its texts replaced (a guard's anonymized answer): each text is carried
    whole by the first delta that had part of it, the later parts are emptied."""
    parts = _stream_parts(chunks)
    order: dict[object, None] = dict.fromkeys(which for which, _, _ in parts)
    new = dict(zip(order, texts, strict=False))
    done: set[object] = set()
    for which, holder, key in parts:
        if which in new:
            holder[key] = "" if which in done else new[which]
            done.add(which)
    return chunks
