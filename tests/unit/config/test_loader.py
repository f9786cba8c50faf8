from __future__ import annotations

import pytest

from agentgateway.config.compile import compile_config
from agentgateway.config.durations import parse_duration
from agentgateway.config.envexpand import expand_env
from agentgateway.config.errors import ConfigError
from agentgateway.config.loader import decode_config, default_config_text, load_text


def _error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        compile_config(load_text(text))
    return str(info.value)


def test_unknown_key_is_rejected_with_its_path():
    assert _error("binds: [{port: 80, listeners: [{routes: [{backends: [{hots: x}]}]}]}]") == (
        "binds[0].listeners[0].routes[0].backends[0].hots: unknown field"
    )


def test_known_but_unsupported_key_says_so_with_its_path():
    text = "binds: [{port: 80, listeners: [{routes: [{}, {}, {policies: {extProc: {host: x}}}]}]}]"
    assert _error(text) == "binds[0].listeners[0].routes[2].policies.extProc: not supported"


@pytest.mark.parametrize(
    "text,expected",
    [
        ("binds: [{port: eighty}]", "binds[0].port: Expected `int | null`, got `str`"),
        ("binds: [{port: 70000, listeners: [{}]}]", "binds[0].port: must be 1-65535"),
        ("binds: [{port: 80}]", "binds[0].listeners: a bind needs at least one listener"),
        (
            "binds: [{port: 80, listeners: [{}]}, {port: 80, listeners: [{}]}]",
            "binds[1].port: port 80 is bound twice",
        ),
        (
            "binds: [{port: 80, listeners: [{protocol: HTTPS}]}]",
            "binds[0].listeners[0].tls: an HTTPS listener needs tls.cert and tls.key",
        ),
        (
            "binds: [{port: 80, listeners: [{protocol: HBONE}]}]",
            "binds[0].listeners[0].protocol: HBONE listeners are not supported yet",
        ),
        (
            "binds: [{port: 80, listeners: [{protocol: TCP}]}]",
            "binds[0].listeners[0].tcpRoutes: protocol TCP requires tcpRoutes",
        ),
        (
            "binds: [{port: 80, listeners: [{protocol: TLS, tcpRoutes: []}, {hostname: a.test, routes: []}]}]",
            "binds[0].listeners: HTTP and TLS listeners on one port are not supported yet (one protocol per port)",
        ),
        (
            "binds: [{port: 80, listeners: [{routes: [{matches: [{path: {regex: '(['}}]}]}]}]",
            "binds[0].listeners[0].routes[0].matches[0].path.regex: invalid regex",
        ),
        (
            "binds: [{port: 80, listeners: [{routes: [{matches: [{path: {exact: a, pathPrefix: /b}}]}]}]}]",
            "binds[0].listeners[0].routes[0].matches[0].path: exactly one of exact, pathPrefix or regex must be set",
        ),
        (
            "binds: [{port: 80, listeners: [{routes: [{backends: [{host: 'http://x:80'}]}]}]}]",
            "binds[0].listeners[0].routes[0].backends[0].host: 'http://x:80' is not host:port",
        ),
        (
            "binds: [{port: 80, listeners: [{routes: [{backends: [{backend: nope}]}]}]}]",
            "binds[0].listeners[0].routes[0].backends[0].backend: no backend named 'nope' in backends[]",
        ),
        (
            "config: {backend: {connectTimeout: soon}}",
            "config.backend.connectTimeout: invalid duration 'soon'",
        ),
        ("config: {hbone: {}}", "config.hbone: not supported"),
        ("config: {workerThreads: many}", "config.workerThreads: 'many' is not a number or a percentage"),
        ("config: {workerThreads: 150%}", "config.workerThreads: a percentage must be above 0 and at most 100"),
        ("config: {workerThreads: 0}", "config.workerThreads: must be at least 1"),
        (
            "binds: [{port: 80, mode: internal, listeners: [{}]}]",
            "binds[0].mode: internal binds (routing without a socket) are not supported",
        ),
        (
            "routes: [{policies: {backendAuth: copilot}}]",
            "routes[0].policies.backendAuth: backendAuth ('copilot') is not supported",
        ),
        (
            "routes: [{policies: {localRateLimit: {conditional: []}}}]",
            "routes[0].policies.localRateLimit.conditional: the conditional form of the policy is not supported",
        ),
        (
            "binds: [{port: 80, listeners: [{routes: [{matches: [{path: invalid}]}]}]}]",
            "binds[0].listeners[0].routes[0].matches[0].path: 'invalid' (a match that never holds) is not supported",
        ),
        (
            "gateways: {default: {port: 81}}\nroutes: [{backends: [{service: {name: default/nope, port: 80}}]}]",
            "routes[0].backends[0].service.name: no service 'default/nope' in services (known: none)",
        ),
        ("mcp: {targets: []}", "mcp.targets: an MCP backend needs at least one target"),
        ("llm: {models: []}", "llm.models: the llm shortcut needs at least one model"),
        ("ui: {}", "ui: not supported"),
        (
            "binds: [{port: 80, listeners: [{protocol: HTTPS, tls: {cert: /nonexistent.pem, key: /k.pem}}]}]",
            "binds[0].listeners[0].tls.cert: file '/nonexistent.pem' not found",
        ),
    ],
)
def test_semantic_errors_name_the_path_and_reason(text, expected):
    assert _error(text).startswith(expected)


def test_planes_can_be_turned_off_quoted_or_not():
    static = compile_config(load_text("config: {adminAddr: off, statsAddr: 'off', readinessAddr: 127.0.0.1:9}")).static
    assert static.admin_addr is None and static.stats_addr is None
    assert static.readiness_addr == ("127.0.0.1", 9)
    assert _error("config: {adminAddr: on}") == "config.adminAddr: expected ip:port or off"


def test_yaml_syntax_error():
    assert "invalid YAML" in _error("binds: [")


def test_env_expansion():
    env = {"PORT": "8080", "UP": "127.0.0.1:9000"}
    text = (
        "# $NOT_SET in a comment is fine\nbinds: [{port: $PORT, listeners: [{routes: [{backends: [{host: ${UP}}]}]}]}]"
    )
    expanded = expand_env(text, env)
    assert "port: 8080" in expanded and "host: 127.0.0.1:9000" in expanded
    assert expand_env("a: ${MISSING:-fallback}", env) == "a: fallback"
    assert expand_env("regex: ^/api$", env) == "regex: ^/api$"  # `$` before a non-name is literal
    assert expand_env("price: $$PORT", env) == "price: $PORT"
    # JSON Schema keys in inline documents are not variables; `$NAME:port` still is one.
    assert (
        expand_env('s: {$ref: "#/a", "$schema": x}\nh: $UP:1', env)
        == 's: {$ref: "#/a", "$schema": x}\nh: 127.0.0.1:9000:1'
    )
    with pytest.raises(ConfigError, match=r"line 2: environment variable \$MISSING is not set"):
        expand_env("a: 1\nb: $MISSING", env)


def test_durations():
    assert parse_duration("500ms") == 0.5
    assert parse_duration("1m30s") == 90
    assert parse_duration("2h") == 7200
    with pytest.raises(ValueError):
        parse_duration("10")


def test_json_is_accepted_and_empty_file_is_an_empty_config():
    cfg = decode_config('{"binds": [{"port": 80, "listeners": [{}]}]}')
    assert cfg.binds[0].port == 80
    assert decode_config("").binds == []


def test_default_config_is_valid_and_has_a_demo_route():
    runtime = compile_config(load_text(default_config_text()))
    assert 8080 in runtime.binds
    assert runtime.static.admin_addr == ("127.0.0.1", 15000)
