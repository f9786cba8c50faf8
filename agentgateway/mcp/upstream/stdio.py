"""stdio MCP servers: a child process per session, one JSON-RPC message per line.

The process runs in its own process group so the whole tree can be stopped; its stderr goes to
the gateway's log; it is stopped (stdin closed, then SIGTERM, then SIGKILL) when the session ends
and always reaped. If it dies, the calls waiting on it get a JSON-RPC error and the next call
starts it again (and repeats the initialize handshake) transparently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal

import orjson

from agentgateway.mcp import protocol
from agentgateway.mcp.config import EPHEMERAL_KEY_ENV, McpTargetSpec
from agentgateway.mcp.protocol import McpError, Message
from agentgateway.mcp.upstream.base import PendingCall, RelatedSink, UpstreamSession
from agentgateway.upstream.relay import RUNTIME_DIR_ENV

log = logging.getLogger("agentgateway.mcp.stdio")

_LINE_LIMIT = 64 * 1024 * 1024  # one message per line; tool results may carry large content
_STOP_GRACE = 2.0
# The gateway's own secrets in its environment, never a server's business: the key that seals
# MCP session ids, input_required states and oidc cookies (the run's, or SESSION_KEY), and the
# directory of the workers' private relay sockets. A server that had them could forge any
# client's session. The config's ``env`` may still hand one over by name.
_GATEWAY_ONLY = frozenset((EPHEMERAL_KEY_ENV, "SESSION_KEY", RUNTIME_DIR_ENV))


class StdioSession(UpstreamSession):
    def __init__(self, spec: McpTargetSpec, on_session_message: RelatedSink) -> None:
        super().__init__(spec, on_session_message)
        self.proc: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._exited: asyncio.Event = asyncio.Event()
        self._write_lock = asyncio.Lock()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    async def _connect(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            return
        env = {} if self.spec.clear_env else {k: v for k, v in os.environ.items() if k not in _GATEWAY_ONLY}
        env.update(self.spec.env)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                self.spec.cmd,
                *self.spec.args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                start_new_session=True,  # its own process group: stopped as a whole
                limit=_LINE_LIMIT,
            )
        except OSError as exc:
            raise McpError(
                protocol.INTERNAL_ERROR,
                f"cannot start MCP server {self.name} ({self.spec.cmd}): {exc.strerror or exc}",
            ) from None
        self._exited = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._readers = [
            loop.create_task(self._read_stdout(self.proc)),
            loop.create_task(self._read_stderr(self.proc)),
        ]
        log.info("started MCP server %s (pid %d): %s", self.name, self.proc.pid, self.spec.describe())
        if self.closed:  # the session ended while the process was starting: nobody will stop it
            await self._stop_process()
            raise McpError(protocol.INTERNAL_ERROR, f"session with MCP target {self.name} is closed")

    async def _send(self, msg: Message, call: PendingCall | None) -> None:
        proc = self.proc
        if proc is None or proc.returncode is not None or self._exited.is_set():
            if self.init_params is None or msg.get("method") == "initialize":
                await self._connect()
            else:
                # It died since the last call: start it again and redo the handshake first.
                await self.reinitialize()
            proc = self.proc
        assert proc is not None and proc.stdin is not None
        line = orjson.dumps(msg) + b"\n"
        async with self._write_lock:
            try:
                proc.stdin.write(line)
                await proc.stdin.drain()
            except (ConnectionError, RuntimeError) as exc:
                raise McpError(protocol.INTERNAL_ERROR, f"MCP server {self.name} is not running: {exc}") from None

    async def _read_stdout(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        try:
            while True:
                try:
                    line = await proc.stdout.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    log.warning("MCP server %s wrote a line over %d bytes; dropped", self.name, _LINE_LIMIT)
                    continue
                if not line:
                    break
                line = line.strip()
                if not line:
                    continue
                try:
                    msg = orjson.loads(line)
                except orjson.JSONDecodeError:
                    log.warning("MCP server %s wrote a non-JSON line on stdout: %r", self.name, line[:200])
                    continue
                if isinstance(msg, dict):
                    await self._incoming(msg, None, line)
        finally:
            code = await proc.wait()
            self._exited.set()
            if not self.closed:
                log.warning("MCP server %s (pid %d) exited with %s", self.name, proc.pid, code)
                self._fail_pending(McpError(protocol.INTERNAL_ERROR, f"MCP server {self.name} exited (status {code})"))

    async def _read_stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while True:
            try:
                line = await proc.stderr.readline()
            except (ValueError, asyncio.LimitOverrunError):
                continue
            if not line:
                return
            log.info("mcp %s: %s", self.name, line.decode("utf-8", "replace").rstrip())

    async def _reset(self) -> None:
        await self._stop_process()

    async def _close(self) -> None:
        await self._stop_process()

    async def _stop_process(self) -> None:
        """Close stdin and wait; then SIGTERM the group; then SIGKILL it. Always reaped."""
        proc = self.proc
        self.proc = None
        if proc is None:
            return
        if proc.returncode is None:
            if proc.stdin is not None:
                with contextlib.suppress(OSError, RuntimeError):
                    proc.stdin.close()
            for sig in (None, signal.SIGTERM, signal.SIGKILL):
                if sig is not None:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(proc.pid, sig)
                try:
                    await asyncio.wait_for(proc.wait(), _STOP_GRACE)
                    break
                except TimeoutError:
                    continue
        else:
            # The leader exited; children it left in the group are stopped too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        for task in self._readers:
            task.cancel()
        self._readers = []
