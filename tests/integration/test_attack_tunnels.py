"""Attacks where a connection stops being HTTP request/response (audit 12): WebSocket and other
upgrades (a backend that does not switch, or switches to something the client did not ask for),
plain and extended CONNECT, tunnels across reloads, TCP and TLS-passthrough listeners (ClientHellos
cut into tiny records, odd server names), PROXY protocol headers on listeners that do not read
them. Raw sockets throughout: client libraries would normalize what is tested."""

from __future__ import annotations

import contextlib
import socket
import time
from pathlib import Path

from tests.support.client_hello import hello_body, other_extension, records, sni_extension
from tests.support.gateway import free_port
from tests.support.tcp_echo import TcpEchoServer


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100


def test_client_hello_dripped_in_tiny_records_costs_linear_time(gateway):
    """TLS lets a ClientHello be cut into records of one byte. Sent one record per packet, each
    read used to parse the whole buffer again: 8000 reads of an 8 KiB hello cost the worker 1.7 s
    of CPU (most of the 2.6 s the client took to send it, from a single connection; a few such
    clients take a worker). Now each byte is read once."""
    echo = TcpEchoServer()
    try:
        port = free_port()
        gw = gateway(
            {
                "binds": [
                    {
                        "port": port,
                        "listeners": [{"protocol": "TLS", "tcpRoutes": [{"backends": [{"host": echo.address}]}]}],
                    }
                ]
            }
        )
        (worker,) = gw.worker_pids()
        body = hello_body([sni_extension((0, b"a.example")), other_extension(21, bytes(8000))])
        data = records(body, cuts=list(range(1, len(body) + 4)))  # one byte per record
        before = _cpu_seconds(worker)
        started = time.monotonic()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            for i in range(0, len(data), 6):
                s.sendall(data[i : i + 6])
                time.sleep(0.0002)  # one record per read
            sending = time.monotonic() - started
            # The hello was whole and valid: relayed to the backend, which echoes it back.
            got = b""
            with contextlib.suppress(TimeoutError):
                while len(got) < len(data):
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    got += chunk
            assert got == data
        spent = _cpu_seconds(worker) - before
        # (0.15 s measured; 1.7 s before, for 2.6 s of sending)
        assert spent < 0.7, (spent, sending)
    finally:
        echo.stop()
