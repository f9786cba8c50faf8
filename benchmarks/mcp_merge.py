"""Time the merge of a ``tools/list`` fan-out: the gateway's native merge vs the same merge in Python.

    python -m benchmarks.mcp_merge [--targets 10] [--tools 50] [--batches 200] [--seconds 3]

The input is what the gateway holds after the fan-out: one raw result object per target (bytes, as
read from the upstream), here built from the benchmark upstream's own tool lists. Each merge prefixes
every tool name with its target (``<target>_<name>``, what the gateway does with more than one
target) and produces the merged result object as bytes. Three ways:

- ``native``: ``agentgateway._native.merge_list_results``, as the gateway calls it;
- ``orjson``: Python parsing each result with orjson, renaming, and serialising with orjson (the
  fastest plain-Python way);
- ``json``: the same with the standard library's ``json``.

Batches of merges are timed with ``perf_counter_ns``, the three ways interleaved batch by batch so
that a noisy moment hurts them alike; the figure is the median of batches, per merge. Prints one
JSON object. The harness runs it pinned to the proxy's CPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from agentgateway._native import merge_list_results
from benchmarks.mcp_upstream import fanout_tools

DELIMITER = "_"
Results = Sequence[tuple[str, bytes]]


def raw_results(targets: int, tools: int) -> list[tuple[str, bytes]]:
    return [(f"t{index}", orjson.dumps({"tools": fanout_tools(index, tools)})) for index in range(targets)]


def native_merge(results: Results) -> bytes:
    return merge_list_results("tools", results, prefix=True, delimiter=DELIMITER)


def orjson_merge(results: Results) -> bytes:
    merged: list[Any] = []
    for target, raw in results:
        for tool in orjson.loads(raw)["tools"]:
            tool["name"] = f"{target}{DELIMITER}{tool['name']}"
            merged.append(tool)
    return orjson.dumps({"tools": merged})


def json_merge(results: Results) -> bytes:
    merged: list[Any] = []
    for target, raw in results:
        for tool in json.loads(raw)["tools"]:
            tool["name"] = f"{target}{DELIMITER}{tool['name']}"
            merged.append(tool)
    return json.dumps({"tools": merged}, separators=(",", ":"), ensure_ascii=False).encode()


WAYS: dict[str, Callable[[Results], bytes]] = {"native": native_merge, "orjson": orjson_merge, "json": json_merge}


def check_equal(results: Results) -> None:
    """All three must produce the same object, or the comparison means nothing."""
    expected = orjson.loads(orjson_merge(results))
    for name, merge in WAYS.items():
        if orjson.loads(merge(results)) != expected:
            raise SystemExit(f"the {name} merge differs from the reference")


def measure(targets: int, tools: int, batches: int, seconds: float) -> dict[str, Any]:
    results = raw_results(targets, tools)
    check_equal(results)
    # Batch sizes that take about 2 ms each, so that timer resolution does not matter.
    sizes: dict[str, int] = {}
    for name, merge in WAYS.items():
        started = time.perf_counter()
        merge(results)
        once = max(time.perf_counter() - started, 1e-6)
        sizes[name] = max(1, int(0.002 / once))
    per_merge_us: dict[str, list[float]] = {name: [] for name in WAYS}
    deadline = time.monotonic() + seconds
    for _ in range(batches):
        for name, merge in WAYS.items():
            count = sizes[name]
            started_ns = time.perf_counter_ns()
            for _ in range(count):
                merge(results)
            per_merge_us[name].append((time.perf_counter_ns() - started_ns) / count / 1000)
        if time.monotonic() > deadline:
            break
    return {
        "targets": targets,
        "tools_per_target": tools,
        "input_bytes": sum(len(raw) for _, raw in results),
        "output_bytes": len(native_merge(results)),
        "batches": len(per_merge_us["native"]),
        "ways": {
            name: {
                "median_us": statistics.median(values),
                "min_us": min(values),
                "max_us": max(values),
                "merges_per_batch": sizes[name],
            }
            for name, values in per_merge_us.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mcp_merge", description=__doc__)
    parser.add_argument("--targets", type=int, default=10)
    parser.add_argument("--tools", type=int, default=50)
    parser.add_argument("--batches", type=int, default=200, help="at most this many batches per way (200)")
    parser.add_argument("--seconds", type=float, default=3.0, help="stop after about this long (3)")
    args = parser.parse_args()
    print(json.dumps(measure(args.targets, args.tools, args.batches, args.seconds)))


if __name__ == "__main__":
    main()
