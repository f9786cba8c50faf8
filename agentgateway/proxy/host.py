"""What the HTTP backend needs from the worker process it runs in (implemented by
``server.worker.Worker``): the event loop and the pools of upstream connections (HTTP/1.1 and HTTP/2)."""

from __future__ import annotations

import asyncio
from typing import Protocol

from agentgateway.upstream.http2 import Http2Pool
from agentgateway.upstream.pool import UpstreamPool


class ProxyHost(Protocol):
    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    @property
    def pool(self) -> UpstreamPool: ...

    @property
    def h2_pool(self) -> Http2Pool: ...
