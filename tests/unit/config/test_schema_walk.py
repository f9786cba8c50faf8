"""Every key of agentgateway's config schema (and every enum value and alternative of one) is
implemented or refused by name: the walk of tests/support/schema_walk.py loads a minimal config
for each and accepts only those two outcomes. The README's key table and tally are the walk's.

The schema is agentgateway's live file when it is on this machine, else the interface snapshot
committed in tests/data (``python -m tests.support.reference_schema --update`` refreshes it)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support import reference_schema
from tests.support.schema_walk import IMPLEMENTED, NO_EFFECT, REFUSED, TALLY, WalkResult, readme_block, walk

README = Path(__file__).resolve().parents[3] / "README.md"
BEGIN, END = "<!-- schema-keys:begin -->", "<!-- schema-keys:end -->"


@pytest.fixture(scope="module")
def result(pytestconfig: pytest.Config) -> WalkResult:
    outcome = walk()
    tally = outcome.tally()
    pytestconfig.stash[TALLY] = (
        f"agentgateway schema walk ({outcome.source}): {sum(tally.values())} keys, enum values and "
        f"alternatives: {tally[IMPLEMENTED]} implemented, {tally[REFUSED]} refused by name, "
        f"{tally['problem']} problems"
    )
    print(pytestconfig.stash[TALLY])
    return outcome


def test_every_key_is_implemented_or_refused_by_name(result: WalkResult) -> None:
    problems = [f"{c.unit} ({c.path}): {c.problem}" for c in result.problems]
    assert problems == [], "\n".join(problems)
    # The walk reached every part of the file (a broken walk would judge only a handful of keys).
    assert len(result.cases) > 600
    for section in ("config", "frontendPolicies", "binds", "gateways", "routes", "backends", "llm", "mcp"):
        assert any(c.path.startswith(section) for c in result.by_outcome(IMPLEMENTED)), section


def test_what_agentgateway_accepts_is_never_called_unknown(result: WalkResult) -> None:
    """The outcomes the walk allows are exactly two; a refusal always names the key's path."""
    for case in result.cases:
        assert case.outcome in (IMPLEMENTED, REFUSED)
    refused = {c.unit for c in result.by_outcome(REFUSED)}
    # A few that must stay refused by name (not unknown) until they are implemented.
    for unit in ("LocalConfig.policies", "FilterOrPolicy.extProc", "LocalConfig.routeGroups", "AIProvider<copilot>"):
        assert unit in refused, unit
    # And what this change implemented.
    implemented = {c.unit for c in result.by_outcome(IMPLEMENTED)}
    for unit in (
        "LocalConfig.services",
        "LocalConfig.workloads",
        "LocalRouteBackend.service",
        "LocalListener.policies",
        "RawConfig.workerThreads",
        "TLS.handshakeTimeout",
        "LocalTLSServerConfig.minTlsVersion",
        "LocalSimpleMcpConfig.gateways",
        "LocalLLMConfig.gateways",
        "LocalLLMConfig.tls",
        "FrontendTCP.keepalives",
        "LocalConfig.tcpRoutes",
        "LocalLLMConfig.providers",
        "LocalModelAIProvider<reference>",
        "LocalModelAIProvider<custom>",
        "AIProvider<custom>",
        "PromptCachingConfig.minTokens",
        "LocalGateway.extAuthz",
        "LocalGatewayPolicy.extAuthz",
        "LocalGatewayPolicy.cors",
        "LocalGatewayListener.transformations",
        "LocalLLMModels.requestHeaders",
        "LocalLLMProviderDefaults.responseHeaders",
        "Webhook.headers",
        "Webhook.forwardHeaderMatches",
        "Webhook.failureMode",
        "FrontendHTTP.maxConnectionDuration",
        "TLS.minVersion",
        "BedrockProvider.guardrailIdentifier",
        "RequestRejection.body",
        "PromptGuard.streaming",
    ):
        assert unit in implemented, unit


def test_keys_without_effect_are_the_documented_ones(result: WalkResult) -> None:
    assert set(NO_EFFECT) <= {c.unit for c in result.by_outcome(IMPLEMENTED)}
    readme = README.read_text()
    for unit in NO_EFFECT:
        assert f"`{unit.split('.')[-1]}`" in readme


def test_the_readme_key_table_is_the_walks(result: WalkResult) -> None:
    """The README lists every key as implemented or not supported, with the tally: both must be
    what the walk finds (regenerate with ``python -m tests.support.reference_schema --readme``)."""
    text = README.read_text()
    assert BEGIN in text and END in text
    block = text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n")
    expected = readme_block(result).strip("\n")
    assert block == expected, "README key table is stale: run python -m tests.support.reference_schema --readme"


def test_what_the_readme_lists_as_supported_loads(result: WalkResult) -> None:
    """Read back from the README table: every key listed as implemented was accepted by the walk."""
    text = README.read_text().split(BEGIN, 1)[1].split(END, 1)[0]
    implemented = {c.unit for c in result.by_outcome(IMPLEMENTED)}
    listed = 0
    for row in text.splitlines():
        cells = [c.strip() for c in row.split("|")]
        if len(cells) < 4 or not cells[1].startswith("`"):
            continue
        owner = cells[1].strip("`")
        for key in re.findall(r"`([^`]+)`", cells[2]):
            unit = f"{owner}{key}" if key[0] in "<=" else f"{owner}.{key}"
            assert unit in implemented, unit
            listed += 1
    assert listed > 400


def test_the_snapshot_matches_the_live_schema() -> None:
    live = reference_schema.live_interface()
    if live is None:
        pytest.skip(f"agentgateway's schema is not at {reference_schema.LIVE}; the snapshot is what the walk uses")
    # compared as text: the order of keys is part of it (the walk visits them in that order)
    expected = reference_schema.render(live)
    assert reference_schema.SNAPSHOT.read_text() == expected, "run python -m tests.support.reference_schema --update"


def test_the_snapshot_keeps_the_interface_and_no_prose() -> None:
    snap = reference_schema.snapshot()
    text = reference_schema.render(snap)
    assert '"description"' not in text and '"default"' not in text and '"title"' not in text
    assert set(snap["properties"]) >= {"config", "binds", "gateways", "routes", "llm", "mcp", "services"}
