"""A test rate limit service speaking Envoy's RLS protocol (gRPC), written with grpcio.

Run as ``python -m tests.support.rls --port P --limit N [--delay S] [--header k=v]``. Every distinct
descriptor (its entries, in order) gets ``N`` hits; past that the answer is OVER_LIMIT. Requests
are counted per descriptor and reported by the ``domain`` ``__stats`` (one descriptor entry
``key=<descriptor text>``: the answer's ``limit_remaining`` is the hit count). A request counts
``hits_addend`` hits (unset: one), as Envoy's service does. Prints ``ready``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.ratelimit.v3 import rls_pb2, rls_pb2_grpc


class Service(rls_pb2_grpc.RateLimitServiceServicer):
    def __init__(self, limit: int, delay: float, headers: list[tuple[str, str]]) -> None:
        self.limit = limit
        self.delay = delay
        self.headers = headers
        self.hits: dict[str, int] = {}
        self.domains: set[str] = set()

    async def ShouldRateLimit(self, request, context):  # noqa: N802 - the gRPC method name
        if request.domain == "__stats":
            key = request.descriptors[0].entries[0].value
            status = rls_pb2.RateLimitResponse.DescriptorStatus(limit_remaining=self.hits.get(key, 0))
            return rls_pb2.RateLimitResponse(overall_code=rls_pb2.RateLimitResponse.OK, statuses=[status])
        if self.delay:
            await asyncio.sleep(self.delay)
        self.domains.add(request.domain)
        over = False
        statuses = []
        for d in request.descriptors:
            key = request.domain + ":" + ",".join(f"{e.key}={e.value}" for e in d.entries)
            # As Envoy's service: hits_addend hits (unset: one).
            self.hits[key] = self.hits.get(key, 0) + (request.hits_addend or 1)
            remaining = self.limit - self.hits[key]
            if remaining < 0:
                over = True
            statuses.append(
                rls_pb2.RateLimitResponse.DescriptorStatus(
                    code=rls_pb2.RateLimitResponse.OVER_LIMIT if remaining < 0 else rls_pb2.RateLimitResponse.OK,
                    current_limit=rls_pb2.RateLimitResponse.RateLimit(
                        requests_per_unit=self.limit, unit=rls_pb2.RateLimitResponse.RateLimit.MINUTE
                    ),
                    limit_remaining=max(remaining, 0),
                )
            )
        code = rls_pb2.RateLimitResponse.OVER_LIMIT if over else rls_pb2.RateLimitResponse.OK
        response = rls_pb2.RateLimitResponse(overall_code=code, statuses=statuses)
        if not over:
            for k, v in self.headers:
                response.request_headers_to_add.append(base_pb2.HeaderValue(key=k, value=v))
            response.response_headers_to_add.append(base_pb2.HeaderValue(key="x-rls", value="checked"))
        return response


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--limit", type=int, default=3)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--header", action="append", default=[])
    args = parser.parse_args()
    headers = [tuple(h.split("=", 1)) for h in args.header]
    server = grpc.aio.server()
    rls_pb2_grpc.add_RateLimitServiceServicer_to_server(Service(args.limit, args.delay, headers), server)
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
