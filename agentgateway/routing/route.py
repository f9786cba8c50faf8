"""A route as the data plane sees it after compilation."""

from __future__ import annotations

from agentgateway.llm.config import LlmService
from agentgateway.mcp.config import McpService
from agentgateway.policy.direct_response import DirectResponse
from agentgateway.upstream.balance import WeightedChoice
from agentgateway.upstream.target import HttpTarget

# What a route forwards to: an HTTP upstream, a virtual MCP server, or an LLM service (checked
# by ``kind``).
Backend = HttpTarget | McpService | LlmService


class CompiledRoute:
    """Names used in logs and metrics, the backends to choose from, and the route's policies."""

    __slots__ = ("name", "gateway", "listener", "backends", "direct_response")

    def __init__(
        self,
        name: str,
        gateway: str,
        listener: str,
        backends: WeightedChoice[Backend],
        direct_response: DirectResponse | None = None,
    ) -> None:
        self.name = name
        self.gateway = gateway
        self.listener = listener
        self.backends = backends
        self.direct_response = direct_response
