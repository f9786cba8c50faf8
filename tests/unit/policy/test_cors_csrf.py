"""cors and csrf as units: origin parsing and matching, preflight answers, response marking."""

from __future__ import annotations

import pytest

from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import Cors as CorsConfig
from agentgateway.config.schema import Csrf as CsrfConfig
from agentgateway.core.context import RequestCtx
from agentgateway.policy.cors import Cors, parse_origin
from agentgateway.policy.csrf import Csrf


def ctx(method=b"GET", headers=None, host=b"gw.example:8080", scheme=b"http"):
    return RequestCtx(
        method,
        b"/x",
        b"/x",
        b"",
        host,
        headers or [],
        "1.1",
        True,
        None,
        False,
        False,
        "10.0.0.1",
        4000,
        scheme,
        0.0,
        "b",
    )


def test_parse_origin_defaults_ports_and_refuses_non_origins():
    assert parse_origin("http://Example.com") == ("http", "example.com", 80)
    assert parse_origin("https://example.com") == ("https", "example.com", 443)
    assert parse_origin("https://example.com:8443") == ("https", "example.com", 8443)
    for bad in ("ftp://x", "http://x/path", "http://x:0", "http://x:", "example.com", "http://", "http://e*x.com"):
        assert parse_origin(bad) is None, bad
    assert parse_origin("http://*.x.com", wildcard_host=True) == ("http", "*.x.com", 80)


def test_wildcard_origins_match_scheme_port_and_host_pattern():
    cors = Cors(CorsConfig(allow_origins=["https://*.example.com", "http://localhost:3000"]), "cors")
    assert cors.allowed(b"https://a.example.com")
    assert cors.allowed(b"https://a.b.example.com:443")
    assert not cors.allowed(b"http://a.example.com")  # scheme
    assert not cors.allowed(b"https://a.example.com:8443")  # port
    assert not cors.allowed(b"https://example.org")
    assert cors.allowed(b"http://localhost:3000")
    assert not cors.allowed(b"http://localhost:3001")
    assert not cors.allowed(b"null")
    assert not cors.allowed(b"\xff")


def test_bad_config_is_refused_with_its_path():
    with pytest.raises(ConfigError, match=r"cors.allowOrigins\[0\]"):
        Cors(CorsConfig(allow_origins=["example.com"]), "cors")
    with pytest.raises(ConfigError, match=r"cors.allowHeaders\[1\]"):
        Cors(CorsConfig(allow_headers=["x-ok", "bad header"]), "cors")
    with pytest.raises(ConfigError, match="cors.maxAge"):
        Cors(CorsConfig(max_age="soon"), "cors")


def test_preflight_answer():
    cors = Cors(
        CorsConfig(
            allow_origins=["https://app.example"],
            allow_methods=["GET", "POST"],
            allow_headers=["x-a", "content-type"],
            expose_headers=["x-b"],
            max_age="10m",
            allow_credentials=True,
        ),
        "cors",
    )
    pre = [(b"origin", b"https://app.example"), (b"access-control-request-method", b"POST")]
    reply = cors.on_request(ctx(b"OPTIONS", pre))
    assert reply is not None and reply.status == 200 and reply.body == b""
    assert dict(reply.headers) == {
        b"access-control-allow-origin": b"https://app.example",
        b"access-control-allow-methods": b"GET,POST",
        b"access-control-allow-headers": b"x-a,content-type",
        b"access-control-max-age": b"600",
        b"access-control-allow-credentials": b"true",
        b"access-control-expose-headers": b"x-b",
    }
    # Not allowed: a bare 200 for a preflight; any other OPTIONS goes through.
    other = [(b"origin", b"https://evil.example"), (b"access-control-request-method", b"POST")]
    reply = cors.on_request(ctx(b"OPTIONS", other))
    assert reply is not None and reply.status == 200 and reply.headers == ()
    assert cors.on_request(ctx(b"OPTIONS", [(b"origin", b"https://evil.example")])) is None
    # No origin: not CORS.
    assert cors.on_request(ctx(b"OPTIONS")) is None


def test_preflight_wildcards_echo_the_request():
    cors = Cors(CorsConfig(allow_origins=["*"], allow_methods=["*"], allow_headers=["*"]), "cors")
    pre = [
        (b"origin", b"http://any.example"),
        (b"access-control-request-method", b"PUT"),
        (b"access-control-request-headers", b"x-one ,x-two,"),
    ]
    reply = cors.on_request(ctx(b"OPTIONS", pre))
    assert reply is not None
    headers = dict(reply.headers)
    assert headers[b"access-control-allow-methods"] == b"PUT"
    assert headers[b"access-control-allow-headers"] == b"x-one, x-two"
    # Without the request headers: * (not allowed with credentials).
    reply = cors.on_request(ctx(b"OPTIONS", [(b"origin", b"http://any.example")]))
    assert reply is not None and dict(reply.headers)[b"access-control-allow-headers"] == b"*"
    creds = Cors(CorsConfig(allow_origins=["*"], allow_headers=["*"], allow_credentials=True), "cors")
    reply = creds.on_request(ctx(b"OPTIONS", [(b"origin", b"http://any.example")]))
    assert reply is not None and b"access-control-allow-headers" not in dict(reply.headers)


def test_actual_request_response_is_marked_and_backend_cors_replaced():
    cors = Cors(CorsConfig(allow_origins=["https://app.example"], expose_headers=["x-b"]), "cors")
    c = ctx(b"POST", [(b"origin", b"https://app.example")])
    assert cors.on_request(c) is None
    headers = [(b"access-control-allow-origin", b"*"), (b"x", b"1")]
    cors.on_response(c, 200, headers)
    assert headers == [
        (b"x", b"1"),
        (b"access-control-allow-origin", b"https://app.example"),
        (b"access-control-expose-headers", b"x-b"),
    ]
    other = ctx(b"POST", [(b"origin", b"https://evil.example")])
    headers = [(b"x", b"1")]
    cors.on_response(other, 200, headers)
    assert headers == [(b"x", b"1")]


@pytest.mark.parametrize(
    ("method", "headers", "allowed"),
    [
        (b"GET", [(b"origin", b"https://evil.example")], True),
        (b"HEAD", [(b"sec-fetch-site", b"cross-site")], True),
        (b"OPTIONS", [(b"sec-fetch-site", b"cross-site")], True),
        (b"POST", [], True),  # not a browser
        (b"POST", [(b"origin", b"null")], True),
        (b"POST", [(b"origin", b"http://gw.example:8080")], True),  # same origin
        (b"POST", [(b"origin", b"https://gw.example:8080")], False),  # other scheme
        (b"POST", [(b"origin", b"https://evil.example")], False),
        (b"DELETE", [(b"origin", b"https://trusted.example")], True),  # additional
        (b"POST", [(b"sec-fetch-site", b"same-origin"), (b"origin", b"https://evil.example")], True),
        (b"POST", [(b"sec-fetch-site", b"none")], True),
        (b"POST", [(b"sec-fetch-site", b"cross-site")], False),
        (b"POST", [(b"sec-fetch-site", b"same-site"), (b"origin", b"http://gw.example:8080")], False),
        (b"PUT", [(b"sec-fetch-site", b"cross-site"), (b"origin", b"https://trusted.example")], True),
    ],
)
def test_csrf(method, headers, allowed):
    csrf = Csrf(CsrfConfig(additional_origins=["https://trusted.example"]), "csrf")
    reply = csrf.on_request(ctx(method, headers))
    if allowed:
        assert reply is None
    else:
        assert reply is not None and reply.status == 403 and b"Cross-origin request detected" in reply.body
