"""What the HTTP backend needs from the worker process it runs in (implemented by
``server.worker.Worker``): the event loop and the pool of upstream connections."""

from __future__ import annotations

import asyncio
from typing import Protocol

from agentgateway.upstream.pool import UpstreamPool


class ProxyHost(Protocol):
    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    @property
    def pool(self) -> UpstreamPool: ...
