"""Request and response editing policies through the real daemon: header modifiers, urlRewrite,
requestRedirect, directResponse, transformations, and the order they run in."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest
import yaml

from tests.support.gateway import binds, free_port


def _echo(r: httpx.Response) -> dict:
    assert r.status_code == 200, r.text
    return r.json()


def _headers(echo: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in echo["headers"]:
        out.setdefault(k, []).append(v)
    return out


def test_header_modifiers(gateway, upstream):
    up = upstream()
    port = free_port()
    gateway(
        binds(
            port,
            [
                {
                    "policies": {
                        "requestHeaderModifier": {
                            "add": {"x-added": "a"},
                            "set": {"x-set": "s", "user-agent": "gw"},
                            "remove": ["x-drop"],
                        },
                        "responseHeaderModifier": {
                            "add": {"x-resp": "1"},
                            "set": {"x-upstream": "hidden"},
                            "remove": ["x-conn"],
                        },
                    },
                    "backends": [{"host": up.address}],
                }
            ],
        )
    )
    r = httpx.get(
        f"http://127.0.0.1:{port}/echo",
        headers={"x-set": "client", "x-drop": "secret", "x-added": "client", "x-keep": "k"},
    )
    seen = _headers(_echo(r))
    assert seen["x-added"] == ["client", "a"]
    assert seen["x-set"] == ["s"] and seen["user-agent"] == ["gw"]
    assert "x-drop" not in seen and seen["x-keep"] == ["k"]
    assert r.headers["x-resp"] == "1"
    assert r.headers["x-upstream"] == "hidden"
    assert "x-conn" not in r.headers


def test_url_rewrite_prefix_full_and_authority(gateway, upstream):
    up = upstream()
    port = free_port()
    gateway(
        binds(
            port,
            [
                {
                    "name": "prefix",
                    "matches": [{"path": {"pathPrefix": "/api/v1"}}],
                    "policies": {"urlRewrite": {"path": {"prefix": "/v2"}, "authority": {"full": "svc.internal:81"}}},
                    "backends": [{"host": up.address}],
                },
                {
                    "name": "root",
                    "matches": [{"path": {"pathPrefix": "/root"}}],
                    "policies": {"urlRewrite": {"path": {"prefix": "/"}, "authority": "auto"}},
                    "backends": [{"host": up.address}],
                },
                {
                    "name": "full",
                    "matches": [{"path": {"exact": "/old"}}],
                    "policies": {"urlRewrite": {"path": {"full": "/new/place"}, "authority": {"host": "example.org"}}},
                    "backends": [{"host": up.address}],
                },
            ],
        )
    )
    url = f"http://127.0.0.1:{port}"
    echo = _echo(httpx.get(url + "/api/v1/users/7?q=1"))
    assert echo["target"] == "/v2/users/7?q=1"
    assert _headers(echo)["host"] == ["svc.internal:81"]
    echo = _echo(httpx.get(url + "/api/v1"))
    assert echo["target"] == "/v2"
    echo = _echo(httpx.get(url + "/root/x/y"))
    assert echo["target"] == "/x/y"
    assert _headers(echo)["host"] == [up.address]  # auto: the chosen backend's host:port
    echo = _echo(httpx.get(url + "/old?keep=yes"))
    assert echo["target"] == "/new/place?keep=yes"
    assert _headers(echo)["host"] == ["example.org"]


def test_prefix_rewrite_needs_prefix_matches(gateway, tmp_path):
    import subprocess
    import sys

    import yaml

    from tests.support.gateway import REPO

    config = binds(
        8080,
        [
            {
                "matches": [{"path": {"exact": "/x"}}],
                "policies": {"urlRewrite": {"path": {"prefix": "/y"}}},
                "backends": [{"host": "127.0.0.1:1"}],
            }
        ],
    )
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    r = subprocess.run(
        [sys.executable, "-m", "agentgateway", "-f", str(path), "--validate-only"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert r.returncode == 1
    assert "binds[0].listeners[0].routes[0].policies.urlRewrite.path.prefix" in r.stderr


def test_request_redirect(gateway):
    port = free_port()
    gateway(
        binds(
            port,
            [
                {
                    "name": "https",
                    "matches": [{"path": {"pathPrefix": "/secure"}}],
                    "policies": {"requestRedirect": {"scheme": "https", "status": 301}},
                },
                {
                    "name": "moved",
                    "matches": [{"path": {"pathPrefix": "/docs"}}],
                    "policies": {
                        "requestRedirect": {
                            "authority": {"host": "docs.example.com"},
                            "path": {"prefix": "/manual"},
                        }
                    },
                },
                {
                    "name": "port",
                    "matches": [{"path": {"exact": "/p"}}],
                    "policies": {"requestRedirect": {"authority": {"port": 8443}, "path": {"full": "/q"}}},
                },
            ],
        )
    )
    url = f"http://127.0.0.1:{port}"
    r = httpx.get(url + "/secure/a?b=1", headers={"host": "shop.example.com"})
    assert r.status_code == 301 and r.headers["location"] == "https://shop.example.com/secure/a?b=1"
    r = httpx.get(url + "/docs/intro", headers={"host": "www.example.com:8080"})
    assert r.status_code == 302
    assert r.headers["location"] == "http://docs.example.com:8080/manual/intro"
    r = httpx.get(url + "/p?x=1", headers={"host": "h.example.com"})
    assert r.headers["location"] == "http://h.example.com:8443/q?x=1"


def test_direct_response_in_the_chain(gateway):
    port = free_port()
    gateway(
        binds(
            port,
            [
                {
                    "policies": {
                        "directResponse": {"status": 418, "body": "short and stout\n"},
                        "responseHeaderModifier": {"set": {"x-teapot": "yes"}},
                    }
                }
            ],
        )
    )
    r = httpx.get(f"http://127.0.0.1:{port}/")
    assert r.status_code == 418 and r.text == "short and stout\n"
    assert r.headers["x-teapot"] == "yes"


def test_direct_response_body_as_bytes(gateway, tmp_path):
    """agentgateway's Bytes form of ``body``: a list of byte values, served as those bytes; a
    value outside 0-255 is a config error at its path."""
    port = free_port()
    gateway(binds(port, [{"policies": {"directResponse": {"status": 200, "body": [104, 105, 0, 255]}}}]))
    assert httpx.get(f"http://127.0.0.1:{port}/").content == b"hi\x00\xff"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(binds(port, [{"policies": {"directResponse": {"body": [256]}}}])))
    r = subprocess.run(
        [sys.executable, "-m", "agentgateway", "-f", str(bad), "--validate-only"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and "binds[0].listeners[0].routes[0].policies.directResponse.body" in r.stderr, r.stderr


def test_transformations_headers_and_bodies(gateway, upstream):
    up = upstream()
    port = free_port()
    gateway(
        binds(
            port,
            [
                {
                    "name": "t",
                    "policies": {
                        "transformations": {
                            "request": {
                                "set": {"x-user": 'request.headers["x-client-user"]', "x-const": '"fixed"'},
                                "add": {"x-path": "request.path", "x-from": "source.address"},
                                "remove": ["x-client-user"],
                                "body": "'replaced body'",
                            },
                            "response": {"set": {"x-method": "request.method"}, "remove": ["x-conn"]},
                        }
                    },
                    "backends": [{"host": up.address}],
                }
            ],
        )
    )
    r = httpx.post(
        f"http://127.0.0.1:{port}/echo", headers={"x-client-user": "alice"}, content=b"original, longer body"
    )
    echo = _echo(r)
    seen = _headers(echo)
    assert seen["x-user"] == ["alice"] and seen["x-const"] == ["fixed"]
    assert seen["x-path"] == ["/echo"] and seen["x-from"] == ["127.0.0.1"]
    assert "x-client-user" not in seen
    assert echo["body_length"] == len("replaced body")
    assert r.headers["x-method"] == "POST" and "x-conn" not in r.headers
    # A missing header leaves the header unset instead of failing the request.
    echo = _echo(httpx.get(f"http://127.0.0.1:{port}/echo"))
    assert "x-user" not in _headers(echo)


def test_response_body_transformation(gateway, upstream):
    up = upstream()
    port = free_port()
    gateway(
        binds(
            port,
            [
                {
                    "policies": {"transformations": {"response": {"body": '"{\\"masked\\": true}"'}}},
                    "backends": [{"host": up.address}],
                }
            ],
        )
    )
    r = httpx.get(f"http://127.0.0.1:{port}/bytes?n=100000&chunked=1")
    assert r.status_code == 200 and r.json() == {"masked": True}
    assert r.headers["content-length"] == str(len(r.content))


def test_transformations_with_cel_expressions(gateway, upstream):
    """Expressions beyond the direct lookups run on the native CEL engine; one that fails for a
    request (a missing header) is an absent value, so its header is left alone."""
    up = upstream()
    port = free_port()
    gateway(
        binds(
            port,
            [
                {
                    "policies": {
                        "transformations": {
                            "request": {
                                "set": {
                                    "x-greeting": '"hello " + request.headers["x-name"]',
                                    "x-long-path": "size(request.path) > 5",
                                    "x-segments": 'request.path.split("/").size()',
                                    "x-internal": 'cidr("127.0.0.0/8").containsIP(source.address)',
                                }
                            }
                        }
                    },
                    "backends": [{"host": up.address}],
                }
            ],
        )
    )
    seen = _headers(_echo(httpx.get(f"http://127.0.0.1:{port}/echo/a/b", headers={"x-name": "ada"})))
    assert seen["x-greeting"] == ["hello ada"]
    assert seen["x-long-path"] == ["true"] and seen["x-segments"] == ["4"] and seen["x-internal"] == ["true"]
    seen = _headers(_echo(httpx.get(f"http://127.0.0.1:{port}/echo")))
    assert "x-greeting" not in seen


@pytest.mark.parametrize(
    "expression,reason",
    [("request.nope", "nope"), ("1 +", "Syntax error"), ("nobody.sub", "nobody")],
)
def test_invalid_expressions_are_refused_at_load(tmp_path, expression, reason):
    import subprocess
    import sys

    import yaml

    from tests.support.gateway import REPO

    config = binds(
        8080,
        [
            {
                "policies": {"transformations": {"request": {"set": {"x": expression}}}},
                "backends": [{"host": "h:1"}],
            }
        ],
    )
    path = tmp_path / "cel.yaml"
    path.write_text(yaml.safe_dump(config))
    r = subprocess.run(
        [sys.executable, "-m", "agentgateway", "-f", str(path), "--validate-only"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert r.returncode == 1
    assert "policies.transformations.request.set.x" in r.stderr
    assert reason.lower() in r.stderr.lower()


def test_policy_order(gateway, upstream):
    """agentgateway's order: local rate limit → transformations → requestHeaderModifier →
    urlRewrite → requestRedirect → directResponse."""
    up = upstream()
    port = free_port()
    gateway(
        binds(
            port,
            [
                {
                    "name": "edits",
                    "matches": [{"path": {"pathPrefix": "/edit"}}],
                    "policies": {
                        # the header modifier runs after the transformation: its value wins
                        "requestHeaderModifier": {"set": {"x-who": "modifier"}},
                        "transformations": {
                            "request": {"set": {"x-who": '"transformation"', "x-seen-path": "request.path"}}
                        },
                        # the rewrite runs after both: they saw the client's path
                        "urlRewrite": {"path": {"prefix": "/rewritten"}},
                    },
                    "backends": [{"host": up.address}],
                },
                {
                    "name": "answers",
                    "matches": [{"path": {"pathPrefix": "/answer"}}],
                    "policies": {
                        "directResponse": {"status": 200, "body": "direct"},
                        "requestRedirect": {"path": {"full": "/elsewhere"}},
                        "localRateLimit": [{"maxTokens": 2, "tokensPerFill": 1, "fillInterval": "1h"}],
                    },
                },
            ],
        )
    )
    url = f"http://127.0.0.1:{port}"
    echo = _echo(httpx.get(url + "/edit/x"))
    seen = _headers(echo)
    assert seen["x-who"] == ["modifier"]
    assert seen["x-seen-path"] == ["/edit/x"]
    assert echo["target"] == "/rewritten/x"
    # The redirect comes before the direct response, the rate limit before both.
    statuses = [httpx.get(url + "/answer").status_code for _ in range(3)]
    assert statuses == [302, 302, 429]
