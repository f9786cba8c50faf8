"""A route as the data plane sees it after compilation."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from agentgateway.policy.chain import EMPTY_CHAIN, PolicyChain
from agentgateway.upstream.balance import WeightedChoice

if TYPE_CHECKING:
    from agentgateway.policy.request_mirror import RequestMirror
    from agentgateway.policy.retry import RetryPolicy
    from agentgateway.policy.timeout import TimeoutPolicy


class Backend(Protocol):
    """What a route forwards to: an HTTP upstream (``upstream.target.HttpTarget``, kind
    ``http``), a virtual MCP server (``mcp.config.McpService``, ``mcp``) or an LLM service
    (``llm.config.LlmService``, ``llm``). The worker hands each kind to its backend room."""

    @property
    def kind(self) -> str: ...

    @property
    def label(self) -> str: ...


class CompiledRoute:
    """Names used in logs and metrics, the backends to choose from, the policy chain and the
    policies of the upstream call (timeout, retry, mirror)."""

    __slots__ = (
        "name",
        "gateway",
        "listener",
        "backends",
        "chain",
        "timeout",
        "retry",
        "mirror",
        "health_checked",
        "mcp_backends",
        "llm_backends",
        "head_timeout",
        "unavailable",
        "no_backends",
    )

    def __init__(
        self,
        name: str,
        gateway: str,
        listener: str,
        backends: WeightedChoice[Backend],
        chain: PolicyChain = EMPTY_CHAIN,
        timeout: TimeoutPolicy | None = None,
        retry: RetryPolicy | None = None,
        mirror: RequestMirror | None = None,
        head_timeout: float | None = None,
        unavailable: bool = False,
    ) -> None:
        self.name = name
        self.gateway = gateway
        self.listener = listener
        self.backends = backends
        self.chain = chain
        self.timeout = timeout
        self.retry = retry
        self.mirror = mirror
        # Time an HTTP backend has to start answering once the request is sent to it, when no
        # timeout policy bounds the call (``config.backend.responseHeaderTimeout``).
        self.head_timeout = head_timeout
        # The route names backends, but none has an endpoint (a service without workloads for
        # the port): answered 503 (agentgateway's "no healthy endpoints").
        self.unavailable = unavailable
        # Checked per request (a flag, not the choice's ``__len__``).
        self.no_backends = not backends.items
        # Some backend has a health policy: picks skip evicted backends.
        self.health_checked = any(getattr(t, "health", None) is not None for t in backends.items)
        # Some backend is a virtual MCP server: the worker picks before forwarding.
        self.mcp_backends = any(t.kind == "mcp" for t in backends.items)
        # Some backend is an LLM service (``llm:``, ``ai`` backends): served by the LLM exchange.
        self.llm_backends = any(t.kind == "llm" for t in backends.items)
