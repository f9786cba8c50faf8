"""Policy units: the chain's order and phases, expressions, rewrites, health bookkeeping."""

from __future__ import annotations

import pytest

from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import (
    Eviction,
    HeaderModifier,
    Health,
    PathMatch,
    PathRewrite,
    RouteMatch,
)
from agentgateway.config.schema import (
    UrlRewrite as UrlRewriteConfig,
)
from agentgateway.core.context import RequestCtx
from agentgateway.core.reply import LocalReply
from agentgateway.policy.chain import ORDER, PolicyChain, run_sync
from agentgateway.policy.expression import compile_value
from agentgateway.policy.header_modifier import RequestHeaderModifier, ResponseHeaderModifier
from agentgateway.policy.health import EndpointHealth, HealthPolicy
from agentgateway.policy.url_rewrite import UrlRewrite, split_authority


def ctx(path=b"/api/v1/x", headers=None, host=b"h.example:8080"):
    query = b"q=1"
    return RequestCtx(
        b"GET",
        path + b"?" + query,
        path,
        query,
        host,
        headers or [],
        "1.1",
        True,
        None,
        False,
        False,
        "10.0.0.1",
        4000,
        b"http",
        0.0,
        "bind/1",
    )


class _Probe:
    def __init__(self, kind, log, reply=None, response=False):
        self.kind = kind
        self._log = log
        self._reply = reply
        if response:
            self.on_response = lambda c, s, h: log.append(("response", kind))

    def on_request(self, c):
        self._log.append(("request", self.kind))
        return self._reply


def test_chain_runs_in_agentgateways_order_whatever_the_config_order():
    log = []
    kinds = [
        "directResponse",
        "urlRewrite",
        "localRateLimit",
        "timeout",
        "requestHeaderModifier",
        "transformations",
    ]
    chain = PolicyChain([_Probe(k, log) for k in kinds])
    assert run_sync(chain.request, ctx()) is None
    assert [k for _, k in log] == sorted(kinds, key=ORDER.index)
    assert chain.first_async == -1 and chain.response == ()


def test_a_reply_stops_the_chain():
    log = []
    reply = LocalReply.text(429, "no")
    chain = PolicyChain([_Probe("directResponse", log), _Probe("localRateLimit", log, reply)])
    assert run_sync(chain.request, ctx()) is reply
    assert log == [("request", "localRateLimit")]


def test_async_policies_are_located():
    class Remote:
        kind = "remoteRateLimit"
        is_async = True

        async def on_request_async(self, c):
            return None

    chain = PolicyChain([_Probe("urlRewrite", []), Remote(), _Probe("localRateLimit", [])])
    assert [p.kind for p in chain.request] == ["localRateLimit", "remoteRateLimit", "urlRewrite"]
    assert chain.first_async == 1


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('"lit"', b"lit"),
        ("'it''s'", None),
        (r'"a\"b"', b'a"b'),
        ('request.headers["X-User"]', b"alice"),
        ("request.headers['x-user']", b"alice"),
        ("request.path", b"/api/v1/x"),
        ("request.pathAndQuery", b"/api/v1/x?q=1"),
        ("request.method", b"GET"),
        ("source.address", b"10.0.0.1"),
        ("source.port", b"4000"),
        ('request.headers["missing"]', None),
        # Beyond the lookups: the native engine; a failed evaluation is an absent value.
        ('request.headers["x-user"] + "!"', b"alice!"),
        ("size(request.path)", b"9"),
        ("request.path.startsWith('/api')", b"true"),
        ("[1, 2]", b"[1,2]"),
        ("jwt.sub", None),
    ],
)
def test_expressions(text, value):
    if text == "'it''s'":
        with pytest.raises(ConfigError):
            compile_value(text, "x")
        return
    assert compile_value(text, "x").evaluate(ctx(headers=[(b"x-user", b"alice")])) == value


def test_header_modifier_add_set_remove():
    edit = RequestHeaderModifier(
        HeaderModifier(add={"a": "1", "b": "2"}, set={"b": "3", "host": "new.host"}, remove=["c", "a"]), "p"
    )
    c = ctx(headers=[(b"a", b"0"), (b"b", b"0"), (b"c", b"0"), (b"d", b"0")])
    edit.on_request(c)
    assert c.headers == [(b"d", b"0"), (b"b", b"3"), (b"host", b"new.host")]
    assert c.host == b"new.host"
    response = [(b"x", b"1")]
    ResponseHeaderModifier(HeaderModifier(set={"x": "2"}), "p").on_response(c, 200, response)
    assert response == [(b"x", b"2")]


def test_url_rewrite_prefix_edges():
    matches = [RouteMatch(path=PathMatch(path_prefix="/api/v1/"))]
    rewrite = UrlRewrite(UrlRewriteConfig(path=PathRewrite(prefix="/v2/")), "p", matches)
    for path, expected in ((b"/api/v1/x", b"/v2/x"), (b"/api/v1", b"/v2/")):
        c = ctx(path=path)
        c.match_prefix = b"/api/v1"
        rewrite.on_request(c)
        assert c.path == expected and c.target == expected + b"?q=1"


def test_split_authority():
    assert split_authority(b"h:80") == (b"h", 80)
    assert split_authority(b"h") == (b"h", None)
    assert split_authority(b"[::1]:8080") == (b"[::1]", 8080)


def test_health_eviction_gates_and_backoff():
    policy = HealthPolicy(Health(eviction=Eviction(duration="1s", consecutive_failures=2)), "h")
    state = EndpointHealth(policy)
    state.record(False, 0.0)
    assert state.available(0.0)
    state.record(False, 0.0)
    assert not state.available(0.5) and state.available(1.0)
    state.record(False, 2.0)
    state.record(False, 2.0)
    assert not state.available(3.5) and state.available(4.0)  # second eviction lasts twice as long
    state.record(True, 5.0)
    assert state.ejections == 0


def test_health_without_eviction_only_scores():
    state = EndpointHealth(HealthPolicy(Health(), "h"))
    for _ in range(10):
        state.record(False, 0.0)
    assert state.available(0.0) and state.score < 0.2


def test_conditions_are_refused_until_the_forward_consults_them():
    with pytest.raises(ConfigError, match="CEL conditions are not supported here yet"):
        HealthPolicy(Health(unhealthy_expression="response.code >= 500"), "h")
