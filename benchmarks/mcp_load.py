"""MCP requests from wrk: a Lua script that POSTs JSON-RPC with session headers and checks every answer.

wrk (one thread, C) stays the load generator, as in the ``http`` scenario, so the figures of both
scenarios come from the same clock. The script

- sends ``tools/call`` (or any request) with a fresh JSON-RPC id each time, rotating over sessions
  the harness opened beforehand (wrk cannot tie a header to a connection; MCP does not need it to:
  every POST of a session stands alone);
- counts answers below HTTP 400 that are not a 200 holding the expected text (a JSON-RPC error
  arrives with HTTP 200, so wrk's own error count, which covers 4xx and 5xx, would miss it) and
  prints that count after wrk's result line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from benchmarks.procs import BenchmarkError
from benchmarks.wrk import DONE_SCRIPT, WrkResult, parse_result, wrk_output

CHECK_MARKER = "MCP-CHECK"


@dataclass(frozen=True)
class McpRequest:
    """What wrk sends to one target."""

    path: str
    method: str
    params: Mapping[str, object]
    sessions: Sequence[str]  # may be empty: a target without sessions
    headers: Mapping[str, str]  # Accept, Content-Type, Authorization …
    expect: str  # every good answer contains this text


def _lua(text: str) -> str:
    """A Lua string literal (JSON's escapes are valid Lua escapes for this ASCII text)."""
    if not text.isascii():
        raise BenchmarkError(f"non-ASCII text in a wrk script: {text[:60]!r}")
    return orjson.dumps(text).decode()


def lua_script(request: McpRequest) -> str:
    body = orjson.dumps({"jsonrpc": "2.0", "id": 0, "method": request.method, "params": request.params}).decode()
    prefix, suffix = body.split('"id":0', 1)
    sessions = ", ".join(_lua(session) for session in request.sessions)
    headers = ", ".join(f"[{_lua(name)}] = {_lua(value)}" for name, value in request.headers.items())
    return f"""\
local path = {_lua(request.path)}
local body_prefix = {_lua(prefix + '"id":')}
local body_suffix = {_lua(suffix)}
local expect = {_lua(request.expect)}
local sessions = {{{sessions}}}
local headers = {{{headers}}}
local sent = 0
bad = 0
first_bad = ""

local threads = {{}}
setup = function(thread)
  table.insert(threads, thread)
end

request = function()
  sent = sent + 1
  if #sessions > 0 then
    headers["Mcp-Session-Id"] = sessions[(sent % #sessions) + 1]
  end
  return wrk.format("POST", path, headers, body_prefix .. sent .. body_suffix)
end

response = function(status, response_headers, body)
  -- wrk itself counts status >= 400 as errors; these are the answers it would call good.
  if status < 400 and (status ~= 200 or not string.find(body, expect, 1, true)) then
    bad = bad + 1
    if first_bad == "" then
      first_bad = string.sub(status .. " " .. body, 1, 200)
    end
  end
end

{DONE_SCRIPT}
local wrk_done = done
done = function(summary, latency, requests)
  wrk_done(summary, latency, requests)
  local total = 0
  local example = ""
  for _, thread in ipairs(threads) do
    total = total + thread:get("bad")
    if example == "" then example = thread:get("first_bad") end
  end
  io.write(string.format("{CHECK_MARKER} bad=%d first=%q\\n", total, example))
end
"""


def write_script(path: Path, request: McpRequest) -> Path:
    path.write_text(lua_script(request))
    return path


@dataclass(frozen=True)
class LoadResult:
    wrk: WrkResult  # its ``errors`` include the bad answers
    bad_answers: int
    first_bad: str  # the first bad answer (status and start of body), for the error message


def run_load(
    wrk: str,
    url: str,
    *,
    connections: int,
    seconds: float,
    cpu: int,
    script: Path,
    log_path: Path | None,
) -> LoadResult:
    output = wrk_output(wrk, url, connections=connections, seconds=seconds, cpu=cpu, script=script, log_path=log_path)
    result = parse_result(output)
    line = next((ln for ln in output.splitlines() if ln.startswith(CHECK_MARKER)), None)
    if line is None:
        raise BenchmarkError(f"wrk printed no {CHECK_MARKER} line:\n{output.strip()}")
    count_text, _, first = line.removeprefix(f"{CHECK_MARKER} bad=").partition(" first=")
    bad = int(count_text)
    return LoadResult(
        wrk=dataclasses.replace(result, errors=result.errors + bad),
        bad_answers=bad,
        first_bad=first.strip('"'),
    )
