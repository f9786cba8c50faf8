"""The supervisor: starts N workers, restarts any that dies, reloads the config, serves the
admin/stats/readiness planes and drains everything on SIGTERM.

Workers are separate interpreters (``python -P -m agentgateway.server.worker``) talking to the
supervisor over a socketpair. The supervisor validates every config before any worker sees it,
so a broken edit never reaches the data plane: it is logged, counted and shown on the admin page.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from agentgateway import __version__
from agentgateway.admin.door import AdminDoor, Door, ReadOnlyDoor
from agentgateway.admin.history import SAMPLE_PERIOD, TrafficHistory
from agentgateway.admin.http import Handler, serve_admin
from agentgateway.admin.planes import admin_handler, readiness_handler, stats_handler
from agentgateway.config.compile import compile_config
from agentgateway.config.dump import config_dump
from agentgateway.config.envexpand import expand_env, secret_variable_values
from agentgateway.config.errors import ConfigError
from agentgateway.config.ir import RuntimeConfig
from agentgateway.config.loader import decode_config, default_config_text, read_config_file
from agentgateway.config.redact import scrub, secret_values
from agentgateway.config.referenced import ReferencedFiles, Signature, signature
from agentgateway.config.schema import LocalConfig
from agentgateway.mcp.config import EPHEMERAL_KEY_ENV
from agentgateway.observe.counters import CounterTotals
from agentgateway.observe.metrics import RequestTotals, Snapshot
from agentgateway.policy import buckets
from agentgateway.server import control
from agentgateway.server.listeners import check_port_free
from agentgateway.upstream.relay import RUNTIME_DIR_ENV

log = logging.getLogger("agentgateway.supervisor")

_WATCH_PERIOD = 0.2
# A changed file is read once it has not changed for this long (agentgateway debounces its watch
# by 250 ms): writers work in steps (an editor, `cat > config.yaml`, a secret rotation), and the
# first steps of a config file may be a valid config that lacks what follows (a route's policies).
_SETTLE = 0.25
_SETTLE_POLL = 0.05
_READY_TIMEOUT = 60.0
_SCRAPE_TIMEOUT = 2.0


class ConfigSource:
    """Where the config comes from: a watched file, inline text, or the embedded default."""

    def __init__(self, path: Path | None = None, inline: str | None = None) -> None:
        self.path = path
        self.inline = inline

    @property
    def base_dir(self) -> Path | None:
        return self.path.resolve().parent if self.path is not None else None

    def describe(self) -> str:
        if self.path is not None:
            return str(self.path)
        return "inline (-c)" if self.inline is not None else "embedded default"

    def read(self) -> str:
        if self.path is not None:
            return read_config_file(self.path)
        return self.inline if self.inline is not None else default_config_text()

    def signature(self) -> Signature:
        return signature(self.path) if self.path is not None else None


def load(
    source: ConfigSource, raw: str | None = None, files: ReferencedFiles | None = None
) -> tuple[str, RuntimeConfig]:
    """Expanded text and compiled IR of ``source``; ``files`` collects the files the config refers
    to. Raises ConfigError, its message stripped of the secrets of the config it is about."""
    written = source.read() if raw is None else raw
    env_secrets = secret_variable_values(written)
    text = expand_env(written)
    cfg = decode_config(text)
    try:
        with (files or ReferencedFiles()).collecting():
            runtime = compile_config(cfg, source.base_dir)
    except ConfigError as exc:
        raise ConfigError(exc.path, scrub(exc.reason, secret_values(cfg) | env_secrets)) from None
    runtime.env_secrets = env_secrets
    return text, runtime


class ConfigState:
    """What a compile read: the config text and the files it refers to, with their signatures
    (what the watch compares) and digests (what decides whether anything changed at all)."""

    __slots__ = ("raw_digest", "files", "main_signature")

    def __init__(self, raw: str, files: ReferencedFiles, main_signature: Signature) -> None:
        self.raw_digest = hashlib.sha256(raw.encode()).hexdigest()
        self.files = files
        self.main_signature = main_signature

    def unchanged(self, raw: str, main_signature: Signature) -> ConfigState | None:
        """If compiling ``raw`` now would read exactly what this state read: the same state with
        the signatures of now (so the watch stops seeing a touched file as changed); else None."""
        if hashlib.sha256(raw.encode()).hexdigest() != self.raw_digest:
            return None
        files = self.files.resigned()  # signatures first: a change after them is seen next time
        if files.current_digests() != self.files.digests():
            return None
        same = ConfigState("", files, main_signature)
        same.raw_digest = self.raw_digest
        return same

    def watched(self, source: ConfigSource) -> dict[Path, Signature]:
        out = self.files.signatures()
        if source.path is not None:
            out[source.path.absolute()] = self.main_signature
        return out


class WorkerProcess:
    """One worker and its control channel."""

    def __init__(self, supervisor: Supervisor, index: int) -> None:
        self.supervisor = supervisor
        self.index = index
        self.proc: asyncio.subprocess.Process | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.ready = False
        self.started_at = 0.0
        self.failed_message: str | None = None
        self.last_snapshot: Snapshot = {}
        self.last_counters: list[list[object]] = []
        self.waiters: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.ready_event = asyncio.Event()

    async def start(self, text: str, generation: int) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        shared = self.supervisor.ratelimit_fd
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                # -P: the working directory is not put on sys.path, so a folder named agentgateway
                # where the gateway was started cannot stand in for the package. (-I would also drop
                # PYTHON* variables and user site-packages, which some installs rely on.)
                "-P",
                "-m",
                "agentgateway.server.worker",
                "--control-fd",
                str(child.fileno()),
                "--index",
                str(self.index),
                "--ratelimit-fd",
                str(shared),
                pass_fds=(child.fileno(), shared),
                stdin=asyncio.subprocess.DEVNULL,
            )
        finally:
            child.close()
        self.started_at = time.monotonic()
        self.ready = False
        self.ready_event.clear()
        self.failed_message = None
        self.last_snapshot = {}
        self.last_counters = []
        reader, self.writer = await asyncio.open_unix_connection(sock=parent)
        self.send({"op": "config", "text": text, "base_dir": self._base_dir(), "generation": generation})
        asyncio.get_running_loop().create_task(self._read(reader))

    def _base_dir(self) -> str | None:
        base = self.supervisor.source.base_dir
        return str(base) if base else None

    def send(self, message: dict[str, Any]) -> None:
        if self.writer is not None and not self.writer.is_closing():
            self.writer.write(control.encode(message))

    async def request(self, message: dict[str, Any], key: str, timeout: float) -> dict[str, Any] | None:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiters[key] = future
        self.send(message)
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return None
        finally:
            self.waiters.pop(key, None)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while True:
            message = await control.read_message(reader)
            if message is None:
                break
            op = message.get("op")
            if op == "ready":
                self.ready = True
                self.ready_event.set()
            elif op == "error":
                self.failed_message = str(message.get("message"))
                self.ready_event.set()
            elif op == "metrics":
                self.last_snapshot = message.get("metrics", {})
                self.last_counters = message.get("counters", [])
                key = f"metrics:{message.get('id')}"
                if key in self.waiters and not self.waiters[key].done():
                    self.waiters[key].set_result(message)
            elif op == "state":
                key = f"state:{message.get('id')}"
                if key in self.waiters and not self.waiters[key].done():
                    self.waiters[key].set_result(message)
            elif op == "mcp_revoke" or op == "mcp_touch":
                # A session ended in one worker: no other worker may continue it. Or sessions
                # were in use in one worker: the other workers' copies of them are not idle.
                for other in self.supervisor.workers:
                    if other is not self:
                        other.send(message)
            elif op == "config_result":
                key = f"config:{message.get('generation')}"
                if key in self.waiters and not self.waiters[key].done():
                    self.waiters[key].set_result(message)
        self.ready = False
        self.ready_event.set()
        if self.writer is not None:
            self.writer.close()
        assert self.proc is not None
        code = await self.proc.wait()
        await self.supervisor.worker_exited(self, code)


class Supervisor:
    def __init__(self, source: ConfigSource, text: str, runtime: RuntimeConfig, state: ConfigState) -> None:
        self.source = source
        self.text = text
        # What the last compile (successful or not) read: a reload with nothing changed is a no-op.
        self.state = state
        self._reload_lock = asyncio.Lock()
        self._sighup_task: asyncio.Task[None] | None = None
        self.runtime = runtime
        self.static = runtime.static
        self.generation = 1
        self.workers = [WorkerProcess(self, i) for i in range(self.static.workers)]
        # config.metrics (restart to change: the series of running workers have these labels)
        metric_settings = runtime.metric_settings
        self.totals = RequestTotals(metric_settings.label_names, metric_settings.remove)
        self.counter_totals = CounterTotals(metric_settings.remove)
        # The host's shared token buckets (local rate limits), inherited by every worker.
        self.ratelimit_fd = buckets.create_shared()
        self.stopping = False
        self.started = False
        self.stop_event = asyncio.Event()
        self.reloads_ok = 0
        self.reloads_failed = 0
        self.worker_restarts = 0
        self.last_error: str | None = None
        self.last_reload = time.time()
        self._servers: list[asyncio.Server] = []
        self._crash_times: list[float] = []
        self._request_seq = 0
        # The admin UI's traffic page: the last 15 minutes of the metrics, sampled here.
        self.history = TrafficHistory()

    # ------------------------------------------------------------------ GatewayView

    def is_ready(self) -> bool:
        return self.started and not self.stopping and all(w.ready for w in self.workers)

    def config_dump(self) -> dict[str, Any]:
        status = {
            "source": self.source.describe(),
            "generation": self.generation,
            "workers": sum(1 for w in self.workers if w.ready),
            "ready": self.is_ready(),
            "lastReload": self.last_reload,
            "lastError": self.last_error,
        }
        return config_dump(self.runtime, status, __version__)

    def request_shutdown(self) -> None:
        self.stop_event.set()

    async def metrics_text(self, openmetrics: bool = False) -> bytes:
        """The exposition: Prometheus text, or OpenMetrics (which carries the exemplars, the
        trace ids on the latency histogram) when the scraper asks for it."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families(await self._metric_families()))
        if openmetrics:
            return cast(bytes, openmetrics_latest(registry))  # type: ignore[no-untyped-call]
        return generate_latest(registry)

    async def _metric_families(self) -> list[Metric]:
        """Every family of ``/metrics``: the workers' counters summed, and the supervisor's own."""
        live = [w for w in self.workers if w.ready]
        ids = [self._next_request_id() for _ in live]
        replies = await asyncio.gather(
            *(
                w.request({"op": "metrics", "id": i}, f"metrics:{i}", _SCRAPE_TIMEOUT)
                for w, i in zip(live, ids, strict=True)
            )
        )
        snapshots = [r.get("metrics", {}) if r else w.last_snapshot for w, r in zip(live, replies, strict=True)]
        counters = [r.get("counters", []) if r else w.last_counters for w, r in zip(live, replies, strict=True)]
        # A worker that is gone but not yet retired (worker_exited) still counts with what it last
        # reported: otherwise its requests vanish from the totals for a moment and come back as
        # retired ones, and the counters (and the UI's rates) dip and jump.
        gone = [w for w in self.workers if not w.ready and w.last_snapshot]
        snapshots += [w.last_snapshot for w in gone]
        counters += [w.last_counters for w in gone]
        families = list(self.totals.families(snapshots)) + list(self.counter_totals.families(counters))
        return families + self._own_families()

    # ------------------------------------------------------------------ the admin UI's view

    def config_file(self) -> Path | None:
        return self.source.path

    def config_text(self) -> str:
        return self.source.read()

    def running_config(self) -> LocalConfig:
        return self.runtime.source

    def check_config(self, text: str) -> None:
        load(self.source, text)

    async def reload_config(self) -> dict[str, Any]:
        await self.reload()
        return {"generation": self.generation, "lastError": self.last_error}

    def traffic(self, window: float) -> dict[str, Any]:
        return self.history.series(window, time.time())

    async def worker_states(self) -> list[dict[str, Any]]:
        """Each serving worker's state report (``server/worker.py`` state_report)."""
        live = [w for w in self.workers if w.ready]
        ids = [self._next_request_id() for _ in live]
        replies = await asyncio.gather(
            *(
                w.request({"op": "state", "id": i}, f"state:{i}", _SCRAPE_TIMEOUT)
                for w, i in zip(live, ids, strict=True)
            )
        )
        return [
            r.get("state", {}) if r else {"index": w.index, "unanswered": True}
            for w, r in zip(live, replies, strict=True)
        ]

    async def _sample_traffic(self) -> None:
        """Every ``SAMPLE_PERIOD``: the metrics into the UI's history."""
        while True:
            await asyncio.sleep(SAMPLE_PERIOD)
            try:
                self.history.add(time.time(), await self._metric_families())
            except Exception:  # the UI's charts must never stop the supervisor
                log.exception("traffic sample failed")

    def _next_request_id(self) -> str:
        self._request_seq += 1
        return str(self._request_seq)

    def _own_families(self) -> list[Metric]:
        build = GaugeMetricFamily("agentgateway_build_info", "Build of this gateway", labels=["tag"])
        build.add_metric([__version__], 1)
        reloads = CounterMetricFamily("agentgateway_config_reloads", "Config reloads by result", labels=["result"])
        reloads.add_metric(["success"], self.reloads_ok)
        reloads.add_metric(["failure"], self.reloads_failed)
        synced = GaugeMetricFamily(
            "agentgateway_config_synchronized", "1 when the served config is the latest version of the file"
        )
        synced.add_metric([], 0 if self.last_error else 1)
        workers = GaugeMetricFamily("agentgateway_workers", "Worker processes serving")
        workers.add_metric([], sum(1 for w in self.workers if w.ready))
        restarts = CounterMetricFamily("agentgateway_worker_restarts", "Workers restarted after they exited")
        restarts.add_metric([], self.worker_restarts)
        return [build, reloads, synced, workers, restarts]

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_event.set)
        loop.add_signal_handler(signal.SIGHUP, self._sighup)
        try:
            await self._start_planes()
        except OSError as exc:
            log.error("cannot start the management planes: %s", exc)
            return 1
        for port in self.runtime.binds:
            problem = port_problem(port)
            if problem:
                log.error("%s", problem)
                await self._close_planes()
                return 1
        await asyncio.gather(*(w.start(self.text, self.generation) for w in self.workers))
        try:
            await asyncio.wait_for(asyncio.gather(*(w.ready_event.wait() for w in self.workers)), _READY_TIMEOUT)
        except TimeoutError:
            log.error("workers did not become ready within %ss", _READY_TIMEOUT)
        failed = [w.failed_message for w in self.workers if w.failed_message]
        if failed or not all(w.ready for w in self.workers):
            log.error("startup failed: %s", failed[0] if failed else "a worker exited during startup")
            self.stopping = True
            await self._stop_workers()
            await self._close_planes()
            return 1
        self.started = True
        self._log_serving()
        watcher = loop.create_task(self._watch())
        self.history.begin(time.time())
        sampler = loop.create_task(self._sample_traffic())
        await self.stop_event.wait()
        log.info("draining (deadline %gs)", self.static.termination_deadline)
        self.stopping = True
        watcher.cancel()
        sampler.cancel()
        await self._stop_workers()
        await self._close_planes()
        log.info("stopped")
        return 0

    async def _start_planes(self) -> None:
        static = self.static
        planes: list[tuple[tuple[str, int] | None, Handler, Door]] = [
            (static.stats_addr, stats_handler(self), ReadOnlyDoor()),
            (static.readiness_addr, readiness_handler(self), ReadOnlyDoor()),
        ]
        if static.admin_addr is not None:
            planes.insert(0, (static.admin_addr, admin_handler(self), AdminDoor(static.admin_addr[0])))
        for addr, handler, door in planes:
            if addr is not None:
                self._servers.append(await serve_admin(addr[0], addr[1], handler, door))

    async def _close_planes(self) -> None:
        for server in self._servers:
            server.close()
        self._servers.clear()

    def _log_serving(self) -> None:
        for port, bind in sorted(self.runtime.binds.items()):
            names = ", ".join(listener.name for listener in bind.listeners.values())
            protocol = "HTTPS" if bind.protocol == "HTTP" and bind.tls else bind.protocol
            log.info("serving %s on port %d (listeners: %s)", protocol, port, names)
        static = self.static
        if static.admin_addr:
            log.info("admin: http://%s:%d/ui", *static.admin_addr)
        if static.stats_addr:
            log.info("metrics: http://%s:%d/metrics", *static.stats_addr)
        if static.readiness_addr:
            log.info("readiness: http://%s:%d/healthz/ready", *static.readiness_addr)
        log.info("%d worker(s) ready; config: %s", len(self.workers), self.source.describe())

    async def _stop_workers(self) -> None:
        procs = [w.proc for w in self.workers if w.proc is not None and w.proc.returncode is None]
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        grace = self.static.min_termination_deadline + self.static.termination_deadline + 5.0
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), grace)
        except TimeoutError:
            for proc in procs:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            await asyncio.gather(*(p.wait() for p in procs))

    async def worker_exited(self, worker: WorkerProcess, code: int) -> None:
        self.totals.retire(worker.last_snapshot)
        self.counter_totals.retire(worker.last_counters)
        worker.last_snapshot = {}
        worker.last_counters = []
        if self.stopping or not self.started:
            return
        log.warning(
            "worker %d (pid %s) exited with %s; restarting",
            worker.index,
            worker.proc.pid if worker.proc else "?",
            code,
        )
        now = time.monotonic()
        self._crash_times = [t for t in self._crash_times if now - t < 10.0] + [now]
        if len(self._crash_times) > 5:
            await asyncio.sleep(1.0)  # crash loop: do not spin
        if self.stopping:
            return
        self.worker_restarts += 1
        await worker.start(self.text, self.generation)

    # ------------------------------------------------------------------ reload

    def _sighup(self) -> None:
        self._sighup_task = asyncio.get_running_loop().create_task(self.reload())

    async def _watch(self) -> None:
        """Every ``_WATCH_PERIOD``: has the config file, or a file it refers to, changed on disk?"""
        while True:
            await asyncio.sleep(_WATCH_PERIOD)
            if self.source.path is not None and self.source.signature() is None:
                continue  # the config file is being replaced (or was removed): wait for it
            watched = self.state.watched(self.source)
            if all(signature(path) == sig for path, sig in watched.items()):
                continue
            await _settled(list(watched))
            await self.reload()

    async def reload(self) -> None:
        """Compile the config again if it, or a file it refers to, changed since the last compile;
        serve it if it is valid, else keep the old one (logged, counted, shown). One at a time."""
        async with self._reload_lock:
            await self._reload()

    async def _reload(self) -> None:
        main_signature = self.source.signature()
        try:
            raw = self.source.read()
        except ConfigError as exc:
            self.state.main_signature = main_signature
            self._reload_failed(str(exc))
            return
        if self.source.signature() != main_signature:
            return  # written to while it was read: the watch reads it again once it settles
        if self.source.path is not None and not raw.strip():
            # Truncated for writing (`generate > config.yaml` truncates before the command runs):
            # compiled, it would close every listener. Read again when it changes.
            self.state.main_signature = main_signature
            log.warning("config file %s is empty: still serving the previous config", self.source.path)
            return
        same = self.state.unchanged(raw, main_signature)
        if same is not None:
            self.state = same  # touched but not changed, or a SIGHUP with nothing new: nothing to do
            return
        files = ReferencedFiles()
        try:
            text, runtime = load(self.source, raw, files)
            for port in runtime.binds.keys() - self.runtime.binds.keys():
                problem = port_problem(port)
                if problem:
                    raise ConfigError("binds", problem)
        except ConfigError as exc:
            self.state = ConfigState(raw, files, main_signature)
            self._reload_failed(str(exc))
            return
        self.state = ConfigState(raw, files, main_signature)
        changed = runtime.static.restart_only_changes(self.static)
        if changed:
            log.warning("config: %s changed; restart the gateway to apply", ", ".join(changed))
        self.generation += 1
        generation = self.generation
        results = await asyncio.gather(
            *(
                w.request(
                    {"op": "config", "text": text, "base_dir": w._base_dir(), "generation": generation},
                    f"config:{generation}",
                    10.0,
                )
                for w in self.workers
                if w.ready
            )
        )
        errors = [r.get("error") for r in results if r and r.get("error")]
        self.text = text
        self.runtime = runtime
        if errors:
            self._reload_failed(str(errors[0]))
            return
        self.reloads_ok += 1
        self.last_error = None
        self.last_reload = time.time()
        log.info("config reloaded (generation %d)", generation)

    def _reload_failed(self, message: str) -> None:
        """Logged, counted and kept for the status page, without the secrets of the config that
        serves (a message about a broken edit may quote one)."""
        message = scrub(message, secret_values(self.runtime.source) | self.runtime.env_secrets)
        self.reloads_failed += 1
        self.last_error = message
        log.error("config reload rejected, still serving the previous config: %s", message)


async def _settled(paths: list[Path]) -> None:
    """Returns once none of ``paths`` has changed (size, time, inode) for ``_SETTLE``."""
    seen = [signature(p) for p in paths]
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    while loop.time() - quiet_since < _SETTLE:
        await asyncio.sleep(_SETTLE_POLL)
        now = [signature(p) for p in paths]
        if now != seen:
            seen = now
            quiet_since = loop.time()


class _Families:
    """A collector over metric families computed before the scrape is rendered."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def port_problem(port: int) -> str | None:
    """Why the workers cannot own ``port``: bound by another process, or listened on by one
    (with SO_REUSEPORT, a second gateway on the same port would silently share its traffic)."""
    problem = check_port_free(port)
    if problem:
        return problem
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return f"cannot listen on port {port}: another process is already serving it"
    return None


def run_supervisor(source: ConfigSource) -> int:
    import uvloop

    from agentgateway.observe.log import setup_logging

    main_signature = source.signature()
    files = ReferencedFiles()
    try:
        raw = source.read()
        text, runtime = load(source, raw, files)
    except ConfigError as exc:
        print(f"error: {scrub(str(exc))}", file=sys.stderr)
        return 1
    setup_logging(runtime.static.log_format, runtime.static.log_level, "supervisor")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    # Shared by this run's workers (inherited through the environment): the key of MCP session
    # ids when none is configured, and the directory of the workers' relay sockets.
    os.environ.setdefault(EPHEMERAL_KEY_ENV, os.urandom(32).hex())
    runtime_dir = tempfile.mkdtemp(prefix="agentgateway-")
    os.environ[RUNTIME_DIR_ENV] = runtime_dir

    async def main() -> int:
        return await Supervisor(source, text, runtime, ConfigState(raw, files, main_signature)).run()

    try:
        return uvloop.run(main())
    finally:
        shutil.rmtree(runtime_dir, ignore_errors=True)
