"""``frontendPolicies.tcp.keepalives``: compiled from agentgateway's form, and set on the listening
socket so that the connections it accepts carry it (real sockets on 127.0.0.1)."""

from __future__ import annotations

import socket

import pytest

from agentgateway.config.compile import compile_limits
from agentgateway.config.errors import ConfigError
from agentgateway.config.loader import load_text
from agentgateway.server.listeners import set_keepalive

_BIND = "binds: [{port: 18080, listeners: [{routes: [{backends: [{host: '127.0.0.1:1'}]}]}]}]\n"


def _limits(tcp: str) -> tuple[int, int, int] | None:
    return compile_limits(load_text(f"frontendPolicies: {{tcp: {tcp}}}\n" + _BIND)).keepalive


def test_agentgateway_defaults_and_values() -> None:
    assert _limits("{keepalives: {}}") == (180, 180, 9)
    assert _limits("{keepalives: {time: 30s, interval: 5s, retries: 3}}") == (30, 5, 3)
    assert _limits("{keepalives: {enabled: false}}") is None
    assert compile_limits(load_text(_BIND)).keepalive is None


@pytest.mark.parametrize(
    "tcp,message",
    [
        ("{keepalives: {retries: 0}}", "frontendPolicies.tcp.keepalives.retries: must be 1-127"),
        ("{keepalives: {time: 0s}}", "frontendPolicies.tcp.keepalives.time: must be positive"),
        ("{keepalives: {interval: soon}}", "frontendPolicies.tcp.keepalives.interval"),
    ],
)
def test_bad_values_name_their_path(tcp: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _limits(tcp)
    assert str(info.value).startswith(message)


def test_accepted_connections_inherit_the_listeners_keepalive() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        set_keepalive(listener, (30, 5, 3))
        with socket.create_connection(listener.getsockname()) as _client:
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 5
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
        # a reload that drops the policy turns it off for the next connections
        set_keepalive(listener, None)
        with socket.create_connection(listener.getsockname()) as _client:
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
