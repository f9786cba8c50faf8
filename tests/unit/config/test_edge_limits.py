"""Config of the HTTP edge: request body timeouts, escaped slashes, trusted proxies, the default
response-head timeout, and route paths normalized like requests."""

from __future__ import annotations

import ipaddress

import pytest

from agentgateway.config.compile import compile_config, compile_limits, compile_static
from agentgateway.config.errors import ConfigError
from agentgateway.config.loader import load_text

ROUTE = (
    "binds: [{port: 80, listeners: [{routes: [{matches: [{path: {pathPrefix: PATH}}], backends: [{host: 'h:1'}]}]}]}]"
)


def test_defaults():
    limits = compile_limits(load_text("{}"))
    assert (limits.body_idle_timeout, limits.body_min_rate, limits.body_min_rate_grace) == (60.0, 500, 10.0)
    assert limits.decode_escaped_slashes is False and limits.trusted_proxies == ()
    assert compile_static(load_text("{}")).response_header_timeout == 300.0


def test_settings():
    text = (
        "frontendPolicies: {http: {requestBodyIdleTimeout: 5s, requestBodyMinRate: 0, requestBodyMinRateGrace: 1m,"
        " escapedSlashes: decode, trustedProxies: ['10.0.0.0/8', '::1', ' 192.168.1.7 ']}}"
    )
    limits = compile_limits(load_text(text))
    assert (limits.body_idle_timeout, limits.body_min_rate, limits.body_min_rate_grace) == (5.0, 0, 60.0)
    assert limits.decode_escaped_slashes is True
    assert limits.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1"),
        ipaddress.ip_network("192.168.1.7"),
    )
    assert compile_static(load_text("config: {backend: {responseHeaderTimeout: 2m}}")).response_header_timeout == 120.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "frontendPolicies: {http: {requestBodyIdleTimeout: 0s}}",
            "frontendPolicies.http.requestBodyIdleTimeout: must",
        ),
        ("frontendPolicies: {http: {requestBodyMinRate: -1}}", "frontendPolicies.http.requestBodyMinRate: must not"),
        ("frontendPolicies: {http: {requestBodyMinRateGrace: soon}}", "frontendPolicies.http.requestBodyMinRateGrace"),
        ("frontendPolicies: {http: {trustedProxies: ['10.0.0.0/33']}}", "frontendPolicies.http.trustedProxies[0]"),
        ("frontendPolicies: {http: {trustedProxies: [proxy.example]}}", "trustedProxies[0]: 'proxy.example' is not"),
        ("config: {backend: {responseHeaderTimeout: 0s}}", "config.backend.responseHeaderTimeout: must be positive"),
    ],
)
def test_invalid_settings_name_their_path(text, expected):
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace("]", r"\]")):
        compile_config(load_text(text))


def test_escaped_slashes_takes_reject_or_decode():
    with pytest.raises(ConfigError, match="escapedSlashes: Invalid enum value"):
        load_text("frontendPolicies: {http: {escapedSlashes: keep}}")


def _prefix(path: str) -> bytes:
    runtime = compile_config(load_text(ROUTE.replace("PATH", path)))
    listener = runtime.binds[80].listeners.select(b"x")
    assert listener is not None
    return listener.routes._by_pattern[b""][0].path


def test_route_paths_are_normalized_like_requests():
    assert _prefix("'/%61pi'") == b"/api"
    assert _prefix("'/a//b/../c/'") == b"/a/c/"
    assert _prefix("'/API'") == b"/API"
    with pytest.raises(ConfigError, match=r"pathPrefix: no request can match it: encoded slash"):
        _prefix("'/a%2Fb'")
    text = ROUTE.replace("PATH", "'/a%2Fb'") + "\nfrontendPolicies: {http: {escapedSlashes: decode}}"
    runtime = compile_config(load_text(text))
    listener = runtime.binds[80].listeners.select(b"x")
    assert listener is not None and listener.routes._by_pattern[b""][0].path == b"/a/b"


def test_default_response_head_timeout_applies_only_without_a_timeout_policy():
    text = (
        "config: {backend: {responseHeaderTimeout: 7s}}\n"
        "binds: [{port: 80, listeners: [{routes: ["
        "{name: plain, matches: [{path: {pathPrefix: /a}}], backends: [{host: 'h:1'}]},"
        "{name: timed, policies: {timeout: {backendRequestTimeout: 1s}}, backends: [{host: 'h:1'}]}]}]}]"
    )
    runtime = compile_config(load_text(text))
    listener = runtime.binds[80].listeners.select(b"x")
    assert listener is not None
    routes = {rule.route.name: rule.route for rule in listener.routes._by_pattern[b""]}
    assert routes["plain"].head_timeout == 7.0
    assert routes["timed"].head_timeout is None
