"""``config.mcp``: the session quotas per client identity (additions) and ``dnsRebindingProtection``
left unset."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from agentgateway.config.compile import compile_config, compile_mcp_settings
from agentgateway.config.errors import ConfigError
from agentgateway.config.loader import load_text
from agentgateway.config.schema import McpBackend
from agentgateway.mcp.config import compile_mcp_backend
from agentgateway.mcp.runtime import SESSION_QUOTA, SessionQuotaError, client_key


def test_quota_defaults_and_values():
    defaults = compile_mcp_settings(load_text("{}"))
    assert (defaults.max_per_identity, defaults.max_stdio_per_identity, defaults.max_stdio) == (1024, 16, 64)
    text = "config: {mcp: {maxSessionsPerIdentity: 5, maxStdioSessionsPerIdentity: 2}}"
    settings = compile_mcp_settings(load_text(text))
    assert (settings.max_per_identity, settings.max_stdio_per_identity) == (5, 2)
    assert defaults.max_upstream_connections == 256
    assert compile_mcp_settings(load_text("config: {mcp: {maxUpstreamConnections: 8}}")).max_upstream_connections == 8


@pytest.mark.parametrize(
    "text,expected",
    [
        ("config: {mcp: {maxSessionsPerIdentity: 0}}", "config.mcp.maxSessionsPerIdentity: must be at least 1"),
        ("config: {mcp: {maxStdioSessionsPerIdentity: -1}}", "config.mcp.maxStdioSessionsPerIdentity: must be"),
        ("config: {mcp: {maxSessionsPerIdentity: lots}}", "config.mcp.maxSessionsPerIdentity"),
        ("config: {mcp: {maxUpstreamConnections: 0}}", "config.mcp.maxUpstreamConnections: must be at least 1"),
        ("config: {mcp: {maxUpstreamConnections: many}}", "config.mcp.maxUpstreamConnections"),
        ("config: {mcp: {maxSessionsPerUser: 3}}", "config.mcp"),  # unknown keys are still errors
    ],
)
def test_bad_quotas_name_their_key(text, expected):
    with pytest.raises(ConfigError) as info:
        compile_config(load_text(text))
    assert expected in str(info.value), str(info.value)


def test_dns_rebinding_protection_unset_true_or_false():
    def no_http(*_: object) -> Any:
        raise AssertionError("no HTTP target here")

    for given, expected in (
        ({}, None),
        ({"dnsRebindingProtection": True}, True),
        ({"dnsRebindingProtection": False}, False),
    ):
        cfg = msgspec.convert({"targets": [{"name": "a", "stdio": {"cmd": "true"}}], **given}, McpBackend)
        service = compile_mcp_backend(cfg, "mcp", "mcp", no_http)
        assert service.dns_rebinding is expected


def test_client_keys_and_errors():
    assert client_key("apiKey:abc", "10.0.0.1") == "identity:apiKey:abc"
    assert client_key("", "10.0.0.1") == "address:10.0.0.1" != client_key("", "10.0.0.2")
    assert client_key("10.0.0.1", "") != client_key("", "10.0.0.1")  # an identity is never an address
    error = SessionQuotaError("maxSessionsPerIdentity", 3)
    assert (error.code, error.status) == (SESSION_QUOTA, 429)
    assert "already has 3 MCP sessions in this worker (config.mcp.maxSessionsPerIdentity)" in error.message
    assert SessionQuotaError("maxStdioSessions", 64).status == 503
