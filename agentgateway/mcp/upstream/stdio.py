"""stdio MCP servers: a child process per session, one JSON-RPC message per line.

The process runs in its own process group so the whole tree can be stopped; its stderr goes to
the gateway's log; it is stopped (stdin closed, then SIGTERM, then SIGKILL) when the session ends
and always reaped. If it dies, the calls waiting on it get a JSON-RPC error and the next call
starts it again (and repeats the initialize handshake) transparently. A process that closes its
stdout can answer nothing more: it is treated as dead (its calls fail, it is stopped) even while
it lives on. Its stderr reaches the log cut to ``_STDERR_LINE`` bytes a line and at most
``_STDERR_RATE`` lines a second; what is dropped is counted in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import subprocess
from typing import IO

import orjson

from agentgateway.mcp import protocol
from agentgateway.mcp.config import EPHEMERAL_KEY_ENV, McpTargetSpec
from agentgateway.mcp.protocol import McpError, Message
from agentgateway.mcp.upstream.base import PendingCall, RelatedSink, UpstreamSession
from agentgateway.upstream.relay import RUNTIME_DIR_ENV

log = logging.getLogger("agentgateway.mcp.stdio")

_LINE_LIMIT = 64 * 1024 * 1024  # one message per line; tool results may carry large content
_STOP_GRACE = 2.0
# Once stdout ends, how long the process has to exit by itself (for its exit status in the error)
# before the calls waiting on it fail anyway and it is stopped.
_EOF_GRACE = 0.2
# stderr goes to the gateway's log: a server must not be able to flood it (or the memory that a
# 64 MiB line would take). Longer lines are cut; lines over the rate in a second are dropped.
_STDERR_LINE = 2048
_STDERR_RATE = 50
_STDERR_READ = 1024 * 1024
_EXIT_POLL = 0.2  # where there is no pidfd to watch: how often a server's exit is looked for
# The gateway's own secrets in its environment, never a server's business: the key that seals
# MCP session ids, input_required states and oidc cookies (the run's, or SESSION_KEY), and the
# directory of the workers' private relay sockets. A server that had them could forge any
# client's session. The config's ``env`` may still hand one over by name.
_GATEWAY_ONLY = frozenset((EPHEMERAL_KEY_ENV, "SESSION_KEY", RUNTIME_DIR_ENV))


class _Child:
    """A server process and its pipes as streams. Spawned by ``subprocess`` (``close_fds``), not
    the loop: uvloop's spawn leaves the child a copy of its own stdio descriptors, so a child
    closing its stdout never showed as an end of it. Reaped through a pidfd the loop watches."""

    __slots__ = ("popen", "pid", "stdin", "stdout", "stderr", "_exit", "_pidfd", "_transports", "_unowned")

    def __init__(self, popen: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.stdout = asyncio.StreamReader(limit=_LINE_LIMIT, loop=loop)
        self.stderr = asyncio.StreamReader(limit=_LINE_LIMIT, loop=loop)
        self.stdin: asyncio.StreamWriter | None = None
        self._exit: asyncio.Future[int] = loop.create_future()
        self._transports: list[asyncio.BaseTransport] = []
        self._unowned: list[IO[bytes]] = [p for p in (popen.stdin, popen.stdout, popen.stderr) if p is not None]
        try:
            self._pidfd = os.pidfd_open(popen.pid)
        except (AttributeError, OSError):  # (no pidfd: not Linux, or before 5.3) polled instead
            self._pidfd = -1
            loop.call_later(_EXIT_POLL, self._poll, loop)
        else:
            loop.add_reader(self._pidfd, self._exited, loop)

    @classmethod
    async def start(cls, argv: list[str], env: dict[str, str]) -> _Child:
        loop = asyncio.get_running_loop()
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            bufsize=0,
            close_fds=True,
            start_new_session=True,  # its own process group: stopped as a whole
        )
        child = cls(popen, loop)
        assert popen.stdin is not None and popen.stdout is not None and popen.stderr is not None
        try:
            for reader, pipe in ((child.stdout, popen.stdout), (child.stderr, popen.stderr)):
                read, _ = await loop.connect_read_pipe(functools.partial(asyncio.StreamReaderProtocol, reader), pipe)
                child._transports.append(read)
                child._unowned.remove(pipe)
            transport, protocol = await loop.connect_write_pipe(
                lambda: asyncio.StreamReaderProtocol(asyncio.StreamReader(loop=loop), loop=loop), popen.stdin
            )
        except BaseException:
            popen.kill()
            child.close_pipes()
            raise
        child._transports.append(transport)
        child._unowned.remove(popen.stdin)
        child.stdin = asyncio.StreamWriter(transport, protocol, None, loop)
        return child

    @property
    def returncode(self) -> int | None:
        return self._exit.result() if self._exit.done() else None

    def _exited(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        code = self.popen.wait()  # (the pidfd is readable: it has exited, this does not block)
        if not self._exit.done():
            self._exit.set_result(code)

    def _poll(self, loop: asyncio.AbstractEventLoop) -> None:
        code = self.popen.poll()
        if code is None:
            loop.call_later(_EXIT_POLL, self._poll, loop)
        elif not self._exit.done():
            self._exit.set_result(code)

    async def wait(self) -> int:
        return await asyncio.shield(self._exit)

    def close_pipes(self) -> None:
        """Our ends of its pipes (a descendant may hold the other ends open after it is gone)."""
        for transport in self._transports:
            transport.close()
        self._transports = []
        for pipe in self._unowned:  # (a transport closes its own pipe, later: not closed here)
            with contextlib.suppress(OSError):
                pipe.close()
        self._unowned = []


class StdioSession(UpstreamSession):
    def __init__(self, spec: McpTargetSpec, on_session_message: RelatedSink) -> None:
        super().__init__(spec, on_session_message)
        self.proc: _Child | None = None
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
            self.proc = await _Child.start([self.spec.cmd, *self.spec.args], env)
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

    async def _read_stdout(self, proc: _Child) -> None:
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
                    try:
                        await self._incoming(msg, None, line)
                    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
                        # A message of a shape the gateway did not expect costs that message, not
                        # the server (this loop ending reads as a closed stdout and stops it).
                        log.warning(
                            "MCP server %s sent a message the gateway cannot read (%s: %s); dropped",
                            self.name,
                            type(exc).__name__,
                            str(exc)[:200],
                        )
        finally:
            try:
                code: int | None = await asyncio.wait_for(proc.wait(), _EOF_GRACE)
            except TimeoutError:
                code = None  # alive without a stdout: nothing it does can reach a caller now
            self._exited.set()
            if not self.closed:
                if code is None:
                    log.warning("MCP server %s (pid %d) closed its stdout; stopping it", self.name, proc.pid)
                    what = "closed its stdout"
                else:
                    log.warning("MCP server %s (pid %d) exited with %s", self.name, proc.pid, code)
                    what = f"exited (status {code})"
                self._fail_pending(McpError(protocol.INTERNAL_ERROR, f"MCP server {self.name} {what}"))
            if code is None:
                await _terminate(proc)

    async def _read_stderr(self, proc: _Child) -> None:
        """Each line to the log, cut and rate-bounded. Read in chunks, not lines: a line without
        an end costs no more memory than its logged part, and lines over the rate are only
        counted (a flood costs a scan for newlines, not an object per line)."""
        assert proc.stderr is not None
        loop = asyncio.get_running_loop()
        line = b""  # the start of the current line (at most _STDERR_LINE bytes)
        cut = 0  # bytes of the current line beyond ``line``
        window, logged, dropped = loop.time(), 0, 0

        def report() -> None:
            if dropped:
                log.warning("mcp %s: %d stderr lines dropped (over %d a second)", self.name, dropped, _STDERR_RATE)

        while True:
            chunk = await proc.stderr.read(_STDERR_READ)
            if not chunk:
                if line or cut:
                    log.info("mcp %s: %s%s", self.name, line.decode("utf-8", "replace").rstrip(), _more(cut))
                report()
                return
            pos = 0
            while True:
                end = chunk.find(b"\n", pos)
                if end < 0:  # the line goes on in the next chunk
                    take = min(len(chunk) - pos, _STDERR_LINE - len(line))
                    line += chunk[pos : pos + take]
                    cut += len(chunk) - pos - take
                    break
                now = loop.time()
                if now - window >= 1.0:
                    report()
                    window, logged, dropped = now, 0, 0
                if logged >= _STDERR_RATE:
                    # Over the rate: the lines ending in this chunk are counted, not looked at.
                    dropped += chunk.count(b"\n", end)
                    pos = chunk.rfind(b"\n") + 1
                    line, cut = b"", 0
                    continue
                logged += 1
                take = min(end - pos, _STDERR_LINE - len(line))
                text = line + chunk[pos : pos + take]
                cut += end - pos - take
                log.info("mcp %s: %s%s", self.name, text.decode("utf-8", "replace").rstrip(), _more(cut))
                line, cut, pos = b"", 0, end + 1

    async def _reset(self) -> None:
        await self._stop_process()

    async def _close(self) -> None:
        await self._stop_process()

    async def _stop_process(self) -> None:
        """Stop the process (``_terminate``) and its readers."""
        proc = self.proc
        self.proc = None
        if proc is None:
            return
        await _terminate(proc)
        for task in self._readers:
            task.cancel()
        self._readers = []


def _more(cut: int) -> str:
    return f" [{cut} more bytes dropped]" if cut else ""


async def _terminate(proc: _Child) -> None:
    """Close stdin and wait; then SIGTERM the group; then SIGKILL it. Always reaped."""
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
    proc.close_pipes()
