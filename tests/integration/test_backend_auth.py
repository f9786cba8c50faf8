"""backendAuth through the real daemon: keys, passthrough, AWS SigV4 (verified by recomputing the
signature with botocore from what reached the upstream) and Google tokens (from a local token
endpoint named in a service-account file whose key is generated here; nothing reaches Google)."""

from __future__ import annotations

import json
import os
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.gateway import binds, free_port

AKID, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


def _headers(seen: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, v in seen["headers"]:
        out.setdefault(k, []).append(v)
    return out


# ---------------------------------------------------------------- key and passthrough


def test_key_locations_and_precedence(gateway, upstream, tmp_path):
    up = upstream()
    key_file = tmp_path / "key.txt"
    key_file.write_text("from-a-file\n")
    port = free_port()
    route = lambda name, auth, **extra: {  # noqa: E731
        "name": name,
        "matches": [{"path": {"pathPrefix": f"/{name}"}}],
        "backends": [{"host": up.address, "policies": {"backendAuth": auth}}],
        **extra,
    }
    config = binds(
        port,
        [
            route("bearer", {"key": "$BACKEND_KEY"}),
            route("header", {"key": {"value": "k2", "location": {"header": {"name": "x-api-key"}}}}),
            route("prefixed", {"key": {"value": "k3", "location": {"header": {"name": "x-auth", "prefix": "Token "}}}}),
            route("query", {"key": {"value": "a b", "location": {"queryParameter": {"name": "api_key"}}}}),
            route("cookie", {"key": {"value": "k5", "location": {"cookie": {"name": "session"}}}}),
            route("file", {"key": {"value": {"file": str(key_file)}}}),
            route("file2", {"key": {"file": str(key_file)}}),
            route("pass", {"passthrough": {}}),
            # Route-level auth for every backend; an entry's own wins; a named backend's is last.
            {
                "name": "levels",
                "matches": [{"path": {"pathPrefix": "/levels"}}],
                "policies": {"backendAuth": {"key": "route-key"}},
                "backends": [{"backend": "named"}],
            },
            {"name": "named", "matches": [{"path": {"pathPrefix": "/named"}}], "backends": [{"backend": "named"}]},
            {
                "name": "inline",
                "matches": [{"path": {"pathPrefix": "/inline"}}],
                "policies": {"backendAuth": {"key": "route-key"}},
                "backends": [{"host": up.address, "policies": {"backendAuth": {"key": "inline-key"}}}],
            },
        ],
    )
    config["backends"] = [{"name": "named", "host": up.address, "policies": {"backendAuth": {"key": "named-key"}}}]
    gateway(config, env={"BACKEND_KEY": "s3cret"})
    base = f"http://127.0.0.1:{port}"
    with httpx.Client() as client:

        def seen(path, **kw):
            r = client.get(f"{base}{path}", **kw)
            assert r.status_code == 200, r.text
            return r.json()

        client_auth = {"authorization": "Bearer client-token"}
        assert _headers(seen("/bearer", headers=client_auth))["authorization"] == ["Bearer s3cret"]
        h = _headers(seen("/header", headers=client_auth))
        assert h["x-api-key"] == ["k2"] and h["authorization"] == ["Bearer client-token"]
        assert _headers(seen("/prefixed"))["x-auth"] == ["Token k3"]
        assert seen("/query?api_key=forged&x=1")["target"] == "/query?x=1&api_key=a%20b"
        assert _headers(seen("/cookie", headers={"cookie": "a=1; session=forged"}))["cookie"] == ["a=1; session=k5"]
        assert _headers(seen("/file"))["authorization"] == ["Bearer from-a-file"]
        assert _headers(seen("/file2"))["authorization"] == ["Bearer from-a-file"]
        assert _headers(seen("/pass", headers=client_auth))["authorization"] == ["Bearer client-token"]
        assert _headers(seen("/levels"))["authorization"] == ["Bearer route-key"]
        assert _headers(seen("/named"))["authorization"] == ["Bearer named-key"]
        assert _headers(seen("/inline"))["authorization"] == ["Bearer inline-key"]


def test_mirror_and_retry_keep_credentials_per_backend(gateway, upstream):
    primary, shadow = upstream("primary"), upstream("shadow")
    port = free_port()
    gateway(
        binds(
            port,
            [
                {
                    "policies": {"requestMirror": {"backend": {"host": shadow.address}, "percentage": 1.0}},
                    "backends": [{"host": primary.address, "policies": {"backendAuth": {"key": "primary-only"}}}],
                }
            ],
        )
    )
    r = httpx.post(f"http://127.0.0.1:{port}/echo", content=b"x", headers={"authorization": "Bearer client"})
    assert _headers(r.json())["authorization"] == ["Bearer primary-only"]

    def mirrored():
        return shadow.requests()

    deadline = time.monotonic() + 5
    while not mirrored() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _headers(mirrored()[0])["authorization"] == ["Bearer client"]


def test_bad_backend_auth_configs(gateway, tmp_path):
    import subprocess
    import sys

    import yaml

    from tests.support.gateway import REPO

    cases = [
        ({"key": "a", "aws": {}}, "exactly one of"),
        ({"key": {"value": "a", "file": "b"}}, "exactly one of value or file"),
        ({"key": {"file": str(tmp_path / "missing")}}, "not found"),
        ({"key": {"value": "a", "location": {"header": {"name": "bad name"}}}}, "location.header.name"),
        ({"aws": {"accessKeyId": "a"}}, "go together"),
        ({"gcp": {"audience": "x"}}, "only with type: idToken"),
        ({"azure": {}}, "backendAuth.azure"),
        ({"passthrough": {"location": {"header": {"name": "x"}}}}, "passthrough.location"),
    ]
    for i, (auth, expected) in enumerate(cases):
        path = tmp_path / f"bad{i}.yaml"
        config = binds(8080, [{"backends": [{"host": "127.0.0.1:1", "policies": {"backendAuth": auth}}]}])
        path.write_text(yaml.safe_dump(config))
        r = subprocess.run(
            [sys.executable, "-m", "agentgateway", "-f", str(path), "--validate-only"],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )
        assert r.returncode != 0 and expected in r.stderr, (auth, r.stderr)


# ---------------------------------------------------------------- aws


def verify_sigv4(seen: dict, body: bytes, secret: str = SECRET) -> dict[str, str]:
    """Recompute the signature of a request as it reached the upstream, with botocore's own
    SigV4 code, and compare. Returns the parts of the Authorization header."""
    headers = {k: v for k, v in seen["headers"]}
    m = re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
        r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})",
        headers["authorization"],
    )
    assert m, headers["authorization"]
    akid, date, region, service, signed, signature = m.groups()
    assert headers["x-amz-date"].startswith(date)
    names = signed.split(";")
    assert "host" in names and "x-amz-date" in names
    request = AWSRequest(
        method=seen["method"],
        url=f"http://{headers['host']}{seen['target']}",
        data=body,
        headers={n: headers[n] for n in names},
    )
    request.context["timestamp"] = headers["x-amz-date"]
    signer = SigV4Auth(Credentials(akid, secret, headers.get("x-amz-security-token")), service, region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    assert expected == signature, "signature does not verify"
    return {"akid": akid, "region": region, "service": service, "signed": signed}


def _aws_route(up, aws, name="aws"):
    return {
        "name": name,
        "matches": [{"path": {"pathPrefix": f"/{name}"}}],
        "backends": [{"host": up.address, "policies": {"backendAuth": {"aws": aws}}}],
    }


def test_aws_sigv4_explicit_credentials(gateway, upstream):
    up = upstream()
    port = free_port()
    aws = {"accessKeyId": AKID, "secretAccessKey": SECRET, "region": "eu-west-3", "serviceName": "execute-api"}
    config = binds(port, [_aws_route(up, aws)])
    config["frontendPolicies"] = {"http": {"maxBufferSize": 65536}}
    gateway(config)
    base = f"http://127.0.0.1:{port}"
    body = json.dumps({"prompt": "hi", "n": list(range(100))}).encode()
    with httpx.Client() as client:
        r = client.post(
            f"{base}/aws/model/x%20y/invoke?b=2&a=1",
            content=body,
            headers={"content-type": "application/json", "x-amz-target": "Svc.Op", "authorization": "Bearer client"},
        )
        assert r.status_code == 200, r.text
        seen = r.json()
        parts = verify_sigv4(seen, body)
        assert parts == {
            "akid": AKID,
            "region": "eu-west-3",
            "service": "execute-api",
            "signed": "host;x-amz-date;x-amz-target",
        }
        assert seen["body_length"] == len(body)
        # A tampered body or the wrong secret does not verify (the check above is real).
        with pytest.raises(AssertionError, match="does not verify"):
            verify_sigv4(seen, body + b" ")
        with pytest.raises(AssertionError, match="does not verify"):
            verify_sigv4(seen, body, secret="other")
        # A chunked body is read whole, signed, and sent with its length.
        chunks = [b"a" * 1000, b"b" * 1000]
        r = client.post(f"{base}/aws/chunked", content=iter(chunks))
        assert r.status_code == 200 and not r.json()["chunked"]
        verify_sigv4(r.json(), b"".join(chunks))
        # No body, and a GET.
        verify_sigv4(client.get(f"{base}/aws/list").json(), b"")
        # Larger than maxBufferSize: refused, and the gateway keeps serving.
        r = client.post(f"{base}/aws/big", content=b"z" * 70000)
        assert r.status_code == 413
        assert client.get(f"{base}/aws/after").status_code == 200


@pytest.fixture
def aws_env(tmp_path, monkeypatch):
    """An environment where botocore finds only what the test gives it (no files, no IMDS)."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)

    def env(**extra: str) -> dict[str, str]:
        return {
            "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            **extra,
        }

    return env


def test_aws_sigv4_default_chain(gateway, upstream, aws_env):
    up = upstream()
    port = free_port()
    env = aws_env(
        AWS_ACCESS_KEY_ID="AKIDFROMENV",
        AWS_SECRET_ACCESS_KEY=SECRET,
        AWS_SESSION_TOKEN="session-token-123",
        AWS_REGION="us-east-2",
    )
    gateway(binds(port, [_aws_route(up, {})]), env=env)
    body = b'{"messages": []}'
    r = httpx.post(f"http://127.0.0.1:{port}/aws/converse", content=body)
    assert r.status_code == 200, r.text
    seen = r.json()
    parts = verify_sigv4(seen, body)
    assert parts["akid"] == "AKIDFROMENV" and parts["region"] == "us-east-2" and parts["service"] == "bedrock"
    assert "x-amz-security-token" in parts["signed"].split(";")
    assert _headers(seen)["x-amz-security-token"] == ["session-token-123"]


def test_aws_without_credentials_fails_cleanly(gateway, upstream, aws_env):
    up = upstream()
    port = free_port()
    env = aws_env()
    routes = [_aws_route(up, {"region": "us-east-1"}), {"name": "plain", "backends": [{"host": up.address}]}]
    gateway(binds(port, routes), env=env)
    with httpx.Client() as client:
        for _ in range(2):
            r = client.post(f"http://127.0.0.1:{port}/aws/x", content=b"x")
            assert r.status_code == 500 and "backend authentication failed" in r.text and "credentials" in r.text
        assert client.get(f"http://127.0.0.1:{port}/other").status_code == 200
    assert [q["target"] for q in up.requests()] == ["/other"]


# ---------------------------------------------------------------- gcp


class TokenEndpoint:
    """An OAuth token endpoint on 127.0.0.1 for a service account's JWT-bearer grant: verifies the
    signed assertion with the account's public key and answers an access token or an ID token."""

    def __init__(self, public_key, email: str) -> None:
        self.public_key = public_key
        self.email = email
        self.assertions: list[dict] = []
        self.id_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                form = parse_qs(self.rfile.read(int(self.headers["content-length"])).decode())
                status, answer = endpoint.grant(form)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def grant(self, form: dict[str, list[str]]) -> tuple[int, dict]:
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            return 400, {"error": "unsupported_grant_type"}
        try:
            # google-auth names Google's token endpoint as the audience whatever token_uri says.
            audience = [self.url, "https://oauth2.googleapis.com/token"]
            claims = jwt.decode(form["assertion"][0], self.public_key, algorithms=["RS256"], audience=audience)
        except jwt.PyJWTError as exc:
            return 400, {"error": "invalid_grant", "error_description": str(exc)}
        self.assertions.append(claims)
        assert claims["iss"] == self.email and claims["exp"] - claims["iat"] <= 3600
        n = len(self.assertions)
        if "target_audience" in claims:
            now = int(time.time())
            token = jwt.encode(
                {
                    "iss": "local-test",
                    "aud": claims["target_audience"],
                    "sub": self.email,
                    "iat": now,
                    "exp": now + 3600,
                },
                self.id_key,
                algorithm="RS256",
            )
            return 200, {"id_token": token}
        return 200, {"access_token": f"ya29.local-{n}", "expires_in": 3600, "token_type": "Bearer"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def google_account(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    email = "gateway@local-test.iam.gserviceaccount.com"
    endpoint = TokenEndpoint(key.public_key(), email)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    account = {
        "type": "service_account",
        "project_id": "local-test",
        "private_key_id": "k1",
        "private_key": pem.decode(),
        "client_email": email,
        "client_id": "1",
        "token_uri": endpoint.url,
    }
    path = tmp_path / "service-account.json"
    path.write_text(json.dumps(account))
    yield path, endpoint
    endpoint.close()


def test_gcp_tokens_from_a_service_account(gateway, upstream, google_account):
    path, endpoint = google_account
    up = upstream()
    port = free_port()
    routes = [
        {
            "name": "access",
            "matches": [{"path": {"pathPrefix": "/access"}}],
            "backends": [{"host": up.address, "policies": {"backendAuth": {"gcp": {}}}}],
        },
        {
            "name": "id",
            "matches": [{"path": {"pathPrefix": "/id"}}],
            "backends": [
                {
                    "host": up.address,
                    "policies": {"backendAuth": {"gcp": {"type": "idToken", "audience": "https://run.example"}}},
                }
            ],
        },
        {
            "name": "id-host",
            "matches": [{"path": {"pathPrefix": "/host"}}],
            "backends": [{"host": up.address, "policies": {"backendAuth": {"gcp": {"type": "idToken"}}}}],
        },
    ]
    gateway(binds(port, routes), env={"GOOGLE_APPLICATION_CREDENTIALS": str(path), "GCE_METADATA_HOST": "127.0.0.1:1"})
    base = f"http://127.0.0.1:{port}"
    with httpx.Client() as client:
        for _ in range(3):  # fetched once, then cached
            r = client.get(f"{base}/access")
            assert r.status_code == 200, r.text
            assert _headers(r.json())["authorization"] == ["Bearer ya29.local-1"]
        access = [a for a in endpoint.assertions if "scope" in a]
        assert len(access) == 1 and "https://www.googleapis.com/auth/cloud-platform" in access[0]["scope"]
        r = client.get(f"{base}/id")
        token = _headers(r.json())["authorization"][0].removeprefix("Bearer ")
        claims = jwt.decode(token, endpoint.id_key.public_key(), algorithms=["RS256"], audience="https://run.example")
        assert claims["sub"] == "gateway@local-test.iam.gserviceaccount.com"
        r = client.get(f"{base}/host")
        token = _headers(r.json())["authorization"][0].removeprefix("Bearer ")
        assert jwt.decode(token, options={"verify_signature": False})["aud"] == "127.0.0.1"
    assert sorted(a.get("target_audience", "") for a in endpoint.assertions) == ["", "127.0.0.1", "https://run.example"]


def test_gcp_without_credentials_fails_cleanly(gateway, upstream, tmp_path):
    up = upstream()
    port = free_port()
    missing = tmp_path / "nope.json"
    gateway(
        binds(port, [{"backends": [{"host": up.address, "policies": {"backendAuth": {"gcp": {}}}}]}]),
        env={"GOOGLE_APPLICATION_CREDENTIALS": str(missing)},
    )
    for _ in range(2):
        r = httpx.get(f"http://127.0.0.1:{port}/x", timeout=30)
        assert r.status_code == 500 and "backend authentication failed: gcp" in r.text
    assert up.requests() == []
