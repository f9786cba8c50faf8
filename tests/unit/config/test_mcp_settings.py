"""Config of MCP endpoints: ``dnsRebindingProtection`` and the bounds on stdio sessions."""

from __future__ import annotations

import pytest

from agentgateway.config.compile import compile_config, compile_mcp_settings
from agentgateway.config.errors import ConfigError
from agentgateway.config.loader import load_text

TARGETS = "[{name: a, stdio: {cmd: 'true'}}]"


@pytest.mark.parametrize(
    "text",
    [
        f"mcp: {{port: 3000, dnsRebindingProtection: true, targets: {TARGETS}}}",
        f"binds: [{{port: 80, listeners: [{{routes: [{{backends: [{{mcp: {{dnsRebindingProtection: true, targets: {TARGETS}}}}}]}}]}}]}}]",
        f"backends: [{{name: m, mcp: {{dnsRebindingProtection: false, targets: {TARGETS}}}}}]",
    ],
    ids=["shortcut", "route-backend", "named-backend"],
)
def test_dns_rebinding_protection_is_accepted(text):
    compile_config(load_text(text))


def test_stdio_session_bounds():
    defaults = compile_mcp_settings(load_text("{}"))
    assert (defaults.ttl, defaults.stdio_ttl, defaults.max_stdio) == (1800.0, 300.0, 64)
    text = "config: {mcp: {sessionTtl: 1h, stdioSessionTtl: 90s, maxStdioSessions: 8}}"
    settings = compile_mcp_settings(load_text(text))
    assert (settings.ttl, settings.stdio_ttl, settings.max_stdio) == (3600.0, 90.0, 8)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("config: {mcp: {maxStdioSessions: 0}}", "config.mcp.maxStdioSessions: must be at least 1"),
        ("config: {mcp: {stdioSessionTtl: soon}}", "config.mcp.stdioSessionTtl:"),
        ("mcp: {dnsRebindingProtection: maybe, targets: []}", "mcp.dnsRebindingProtection"),
    ],
)
def test_bad_values_name_their_key(text, expected):
    with pytest.raises(ConfigError) as info:
        compile_config(load_text(text))
    assert str(info.value).startswith(expected), str(info.value)
