"""Secrets out of /config_dump: the schema's markers (checked against agentgateway's schema), the
redaction by type, and the value rules that apply to every string."""

from __future__ import annotations

import functools
import json
import re
import types
import typing
from typing import Annotated, Any, Union

import msgspec
import pytest

from agentgateway.config import schema as S
from agentgateway.config.loader import load_text
from agentgateway.config.redact import REDACTED, marked_fields, redact_config, scrub, scrub_tree
from tests.support import reference_schema

_NOT_SUPPORTED = "agentgateway:not-supported"
# Names of reference keys that may hold a secret.
_SECRETISH = re.compile(r"key|secret|password|token|credential|htpasswd|^env$", re.I)
# Keys of that look that are not secrets here, and why.
NOT_SECRETS = {
    ("AiBackend", "tokenize"): "a switch",
    ("AiNamedProvider", "tokenize"): "a switch",
    ("LlmParams", "tokenize"): "a switch",
    ("LocalRateLimit", "maxTokens"): "a number",
    ("PromptCaching", "minTokens"): "a number",
    ("LocalRateLimit", "tokensPerFill"): "a number",
    ("Cors", "allowCredentials"): "a switch",
    ("DescriptorEntry", "key"): "the name of a rate limit descriptor entry",
    ("ApiKey", "keys"): "a list of entries, whose key and keyHash are marked",
    ("RoutePolicies", "apiKey"): "the apiKey policy (its entries are marked)",
    ("Gateway", "apiKey"): "the apiKey policy (its entries are marked)",
    ("GatewayListener", "apiKey"): "the apiKey policy (its entries are marked)",
    ("GatewayPolicies", "apiKey"): "the apiKey policy (its entries are marked)",
    ("ActorTokenSpec", "tokenType"): "a token type URI",
    ("TokenSpec", "tokenType"): "a token type URI",
    ("CrossAppAccessSubjectToken", "tokenType"): "a token type URI",
    ("OAuthTokenExchange", "requestedTokenType"): "a token type URI",
    ("OAuthTokenExchange", "subjectToken"): "where the client's token is read",
    ("OAuthTokenExchange", "actorToken"): "where the actor token is read",
    ("CrossAppAccess", "subjectToken"): "where the client's token is read",
    ("CrossAppAccess", "accessTokenScopes"): "scope names",
    ("BackendAuth", "oauthTokenExchange"): "the policy (its client secret is marked)",
    ("AzureExplicitConfig", "clientSecret"): "the tenant, client and secret (the secret is marked)",
    ("ExtAuthzCache", "key"): "CEL expressions",
    ("McpIdentityProvider", "keycloak"): "a provider kind",
    ("Oidc", "tokenEndpoint"): "a URL",
    ("Oidc", "tokenEndpointAuth"): "a method name",
}
# Header maps: the values of credential headers in them are secrets.
HEADER_MAPS = {("HeaderModifier", "add"), ("HeaderModifier", "set"), ("TransformSide", "add"), ("TransformSide", "set")}
HEADER_MAPS |= {("ExtAuthzHttp", "addRequestHeaders")}


def _schema_classes(hint: Any) -> list[type[S.Schema]]:
    """The Schema classes a field's type may hold (through unions, lists and dict values)."""
    origin = typing.get_origin(hint)
    if origin is Annotated:
        return _schema_classes(typing.get_args(hint)[0])
    if origin in (Union, types.UnionType):
        return [c for a in typing.get_args(hint) for c in _schema_classes(a)]
    if origin in (list, dict):
        return _schema_classes(typing.get_args(hint)[-1])
    if isinstance(hint, type) and issubclass(hint, S.Schema):
        return [hint]
    return []


@functools.cache
def _hints(cls: type[S.Schema]) -> dict[str, Any]:
    """``cls``'s field types (resolved once: the walk below asks ~100,000 times)."""
    return typing.get_type_hints(cls, include_extras=True)


def _is_unsupported(cls: type[S.Schema], attr: str) -> bool:
    hint = _hints(cls)[attr]
    return typing.get_origin(hint) is Annotated and _NOT_SUPPORTED in hint.__metadata__


def all_marked_fields() -> dict[tuple[str, str], str]:
    """(struct, key) → marker of every marked field reachable from the top of the config."""
    out: dict[tuple[str, str], str] = {}
    seen: set[type[S.Schema]] = set()
    todo: list[type[S.Schema]] = [S.LocalConfig]
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        hints = _hints(cls)
        for attr, key, marker in marked_fields(cls):
            if marker is not None:
                out[(cls.__name__, key)] = marker
            todo += _schema_classes(hints[attr])
    return out


def reference_fields_by_name() -> dict[tuple[str, str], tuple[str | None, bool]]:
    """Walks agentgateway's schema and ours side by side: (our struct, key) → (our marker, refused
    as not supported) for every reference key our schema has whose name looks secret-bearing."""
    ref, _ = reference_schema.load()  # the live schema, else its committed interface snapshot
    defs = ref["$defs"]
    found: dict[tuple[str, str], tuple[str | None, bool]] = {}

    def walk(node: Any, classes: list[type[S.Schema]], seen: frozenset[tuple[str, tuple[str, ...]]]) -> None:
        if not isinstance(node, dict) or not classes:
            return
        if "$ref" in node:
            name = node["$ref"].split("/")[-1]
            visit = (name, tuple(c.__name__ for c in classes))
            if visit not in seen:
                walk(defs[name], classes, seen | {visit})
        for kw in ("anyOf", "oneOf", "allOf"):
            for branch in node.get(kw, []):
                walk(branch, classes, seen)
        for kw in ("items", "additionalProperties"):
            if isinstance(node.get(kw), dict):
                walk(node[kw], classes, seen)
        for cls in classes:
            hints = _hints(cls)
            fields = {key: (attr, marker) for attr, key, marker in marked_fields(cls)}
            for key, sub in node.get("properties", {}).items():
                if key not in fields:
                    continue
                attr, marker = fields[key]
                unsupported = _is_unsupported(cls, attr)
                if _SECRETISH.search(key) or (cls.__name__, key) in HEADER_MAPS:
                    found[(cls.__name__, key)] = (marker, unsupported)
                if not unsupported:
                    walk(sub, _schema_classes(hints[attr]), seen)

    walk(ref, [S.LocalConfig], frozenset())
    return found


def test_every_secret_bearing_reference_key_is_marked_or_refused():
    found = reference_fields_by_name()
    assert len(found) > 20  # the walk reached the policies, backends, llm and config sections
    problems = []
    for (struct, key), (marker, unsupported) in sorted(found.items()):
        if unsupported or (struct, key) in NOT_SECRETS:
            continue
        if (struct, key) in HEADER_MAPS:
            if marker != S.CREDENTIAL_HEADERS:
                problems.append(f"{struct}.{key}: a header map without the CREDENTIAL_HEADERS marker")
        elif marker is None:
            problems.append(f"{struct}.{key}: looks secret-bearing but has no marker (and is not refused)")
    assert problems == []
    # The ones refused at load need no redaction: they never reach a running config.
    assert found[("McpAuthentication", "clientSecret")] == (None, True)
    assert found[("RawConfig", "xdsAuthToken")] == (None, True)


def test_markers_cover_the_known_secret_fields():
    marked = all_marked_fields()
    assert marked == {
        ("SessionSettings", "key"): S.SECRET,
        ("BackendTls", "key"): S.KEY_MATERIAL,
        ("ListenerTls", "key"): S.KEY_MATERIAL,
        ("HeaderModifier", "add"): S.CREDENTIAL_HEADERS,
        ("HeaderModifier", "set"): S.CREDENTIAL_HEADERS,
        ("TransformSide", "add"): S.CREDENTIAL_HEADERS,
        ("TransformSide", "set"): S.CREDENTIAL_HEADERS,
        ("ExtAuthzHttp", "addRequestHeaders"): S.CREDENTIAL_HEADERS,
        ("BackendKey", "value"): S.SECRET,
        ("BackendAuth", "key"): S.SECRET,
        ("AwsAuth", "accessKeyId"): S.SECRET,
        ("AwsAuth", "secretAccessKey"): S.SECRET,
        ("AwsAuth", "sessionToken"): S.SECRET,
        ("JwksSource", "keys"): S.JWKS,
        ("JwtProvider", "jwks"): S.JWKS,
        ("JwtAuth", "jwks"): S.JWKS,
        ("McpAuthentication", "jwks"): S.JWKS,
        ("ApiKeyEntry", "key"): S.SECRET,
        ("ApiKeyEntry", "keyHash"): S.SECRET,
        ("BasicAuth", "htpasswd"): S.SECRET,
        ("McpStdio", "env"): S.SECRET,
        ("LlmParams", "apiKey"): S.SECRET,
        ("TracingSettings", "headers"): S.SECRET,
        ("JwtSign", "signingKey"): S.KEY_MATERIAL,
        ("OAuthClientAuth", "clientSecret"): S.SECRET,
        ("OAuthClientAuth", "signingKey"): S.KEY_MATERIAL,
        ("AzureClientSecret", "client_secret"): S.SECRET,
        ("Oidc", "clientSecret"): S.SECRET,
        ("Oidc", "jwks"): S.JWKS,
    }


def _redacted(text: str) -> tuple[Any, set[str]]:
    return redact_config(load_text(text))


def test_redaction_follows_the_type():
    out, found = _redacted(
        """
config: {session: {key: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'}}
binds:
- port: 8080
  listeners:
  - routes:
    - name: key-route
      policies:
        basicAuth: {htpasswd: "alice:{SHA}secret-digest-value"}
        requestHeaderModifier:
          set: {Authorization: Bearer abc-route-token, x-trace: visible}
          add: {COOKIE: sid=cookie-secret}
        backendTLS: {key: /etc/tls/client.key, cert: /etc/tls/client.crt}
        backendAuth: {key: {file: /run/secrets/upstream-key}}
        apiKey: {keys: [{key: plain-api-key-1, metadata: {team: a}}, {keyHash: 'sha256:00ff'}]}
      backends: [{host: 127.0.0.1:9000}]
    - policies:
        basicAuth: {htpasswd: {file: users.htpasswd}}
        backendAuth: {key: {value: inline-backend-key}}
        jwtAuth:
          issuer: https://idp.example
          jwks: {keys: [{kty: RSA, kid: k1, n: public-modulus, e: AQAB, d: private-exponent, p: prime-p}]}
      backends:
      - mcp:
          targets:
          - name: t
            stdio: {cmd: npx, args: [server], env: {GITHUB_TOKEN: ghp-env-token, LANG: C}}
"""
    )
    cfg = out["config"]
    assert cfg["session"]["key"] == REDACTED
    first, second = out["binds"][0]["listeners"][0]["routes"]
    p = first["policies"]
    assert first["name"] == "key-route"
    assert p["basicAuth"]["htpasswd"] == REDACTED
    assert p["requestHeaderModifier"]["set"] == {"Authorization": REDACTED, "x-trace": "visible"}
    assert p["requestHeaderModifier"]["add"] == {"COOKIE": REDACTED}
    assert p["backendTLS"] == {"key": "/etc/tls/client.key", "cert": "/etc/tls/client.crt"}  # paths
    assert p["backendAuth"] == {"key": {"file": "/run/secrets/upstream-key"}}
    assert p["apiKey"]["keys"] == [{"key": REDACTED, "metadata": {"team": "a"}}, {"keyHash": REDACTED}]
    q = second["policies"]
    assert q["basicAuth"]["htpasswd"] == {"file": "users.htpasswd"}
    assert q["backendAuth"]["key"] == {"value": REDACTED}
    assert q["jwtAuth"]["jwks"]["keys"] == [
        {"kty": "RSA", "kid": "k1", "n": "public-modulus", "e": "AQAB", "d": REDACTED, "p": REDACTED}
    ]
    env = second["backends"][0]["mcp"]["targets"][0]["stdio"]["env"]
    assert env == {"GITHUB_TOKEN": REDACTED, "LANG": REDACTED}
    assert "ghp-env-token" not in found  # env values are redacted in place only (PATH-like values are common)
    assert {"plain-api-key-1", "inline-backend-key", "private-exponent", "abc-route-token"} <= {
        s.removeprefix("Bearer ") for s in found
    }


def test_inline_pem_keys_and_jwks_text_are_redacted():
    pem = "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n-----END PRIVATE KEY-----\\n"
    jwks = json.dumps({"keys": [{"kty": "EC", "kid": "e1", "crv": "P-256", "x": "X", "y": "Y", "d": "DDD"}]})
    out, _ = _redacted(
        f"""
binds:
- port: 8443
  listeners:
  - protocol: HTTPS
    tls: {{cert: /etc/tls/server.crt, key: "{pem}"}}
    routes:
    - policies:
        jwtAuth: {{issuer: x, jwks: {json.dumps(jwks)}}}
"""
    )
    listener = out["binds"][0]["listeners"][0]
    assert listener["tls"] == {"cert": "/etc/tls/server.crt", "key": REDACTED}
    shown = json.loads(listener["routes"][0]["policies"]["jwtAuth"]["jwks"])
    assert shown == {"keys": [{"kty": "EC", "kid": "e1", "crv": "P-256", "x": "X", "y": "Y", "d": REDACTED}]}


@pytest.mark.parametrize(
    "text,expected",
    [
        ("redis://user:hunter22@127.0.0.1:6379/0", f"redis://user:{REDACTED}@127.0.0.1:6379/0"),
        ("redis://:hunter22@127.0.0.1:6379", f"redis://:{REDACTED}@127.0.0.1:6379"),
        ("https://ghp_tokenvalue@github.com/x", f"https://{REDACTED}@github.com/x"),
        (
            "see https://a:b@h.example and http://c:d@i.example",
            f"see https://a:{REDACTED}@h.example and http://c:{REDACTED}@i.example",
        ),
        ("HTTPS://U:P@H", f"HTTPS://U:{REDACTED}@H"),
        ("url 'http://127.0.0.1:9000/jwks.json' is fine", "url 'http://127.0.0.1:9000/jwks.json' is fine"),
        ("mail alice@example.com", "mail alice@example.com"),
        ("http://h.example/path@v2", "http://h.example/path@v2"),
        ("a -----BEGIN RSA PRIVATE KEY-----\nAAA\n-----END RSA PRIVATE KEY----- b", f"a {REDACTED} b"),
        ("cut -----BEGIN EC PRIVATE KEY-----\nAAA", f"cut {REDACTED}"),
        (
            "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----",
            "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----",
        ),
        ("token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln here", f"token {REDACTED} here"),
        ("key sk-proj-Abc123def456ghi789jkl0 end", f"key {REDACTED} end"),
        ("key sk-ant-api03-abcdefghijklmnop1234 end", f"key {REDACTED} end"),
        ("AKIAIOSFODNN7EXAMPLE", REDACTED),
        # Credentials in a query string, any case and separator; other parameters stay.
        ("http://h/mcp?api_key=abc123&x=1", f"http://h/mcp?api_key={REDACTED}&x=1"),
        ("http://h/?x=1&Access-Token=abc#frag", f"http://h/?x=1&Access-Token={REDACTED}#frag"),
        ("https://b.blob/c?sv=2024&sig=Zm9v%2Bbar", f"https://b.blob/c?sv=2024&sig={REDACTED}"),
        ("x?X-Amz-Signature=dead&X-Amz-Credential=AK%2F1", f"x?X-Amz-Signature={REDACTED}&X-Amz-Credential={REDACTED}"),
        ("<a href='/?a=1&amp;token=abc'>", f"<a href='/?a=1&amp;token={REDACTED}'>"),
        ("http://h/?keyword=cats&tokens_used=3", "http://h/?keyword=cats&tokens_used=3"),
        ("http://h/?client=web&page=2", "http://h/?client=web&page=2"),
        ("a == b && c", "a == b && c"),
        # Harmless values that only look a little like secrets stay as written.
        ("route sk-learn-pipeline-route", "route sk-learn-pipeline-route"),
        ("Bearer tokens are required", "Bearer tokens are required"),
        ("/etc/tls/server.key", "/etc/tls/server.key"),
        ("AKIA-not-a-key", "AKIA-not-a-key"),
    ],
)
def test_value_rules(text, expected):
    assert scrub(text) == expected


def test_known_secrets_are_cut_out_of_any_text_but_short_ones_are_not():
    assert scrub("bad value 'hunter2-long' at x", ["hunter2-long"]) == f"bad value '{REDACTED}' at x"
    assert scrub("a b c", ["a"]) == "a b c"
    tree = {"status": {"lastError": "x: 'pa55word!' rejected"}, "k": ["pa55word!"], "pa55word!": 1}
    assert scrub_tree(tree, ["pa55word!"]) == {
        "status": {"lastError": f"x: '{REDACTED}' rejected"},
        "k": [REDACTED],
        REDACTED: 1,
    }


def test_struct_builtins_match_to_builtins_apart_from_secrets():
    """Redaction keeps the shape of the dump: only marked values change."""
    text = "binds: [{port: 80, listeners: [{routes: [{policies: {apiKey: {keys: [{key: some-key-1}]}}}]}]}]"
    cfg = load_text(text)
    out, _ = redact_config(cfg)
    plain = msgspec.to_builtins(cfg)
    plain["binds"][0]["listeners"][0]["routes"][0]["policies"]["apiKey"]["keys"][0]["key"] = REDACTED
    assert out == plain


def test_secret_named_variables_are_known_by_their_values():
    from agentgateway.config.envexpand import secret_variable_values

    env = {
        "OPENAI_API_KEY": "v-openai",
        "GITHUB_TOKEN": "v-gh",
        "DB_PASS": "v-db",
        "CLIENT_SECRET": "v-cs",
        "KEYCLOAK_URL": "v-url",
        "PWD": "v-pwd",
        "TEAM": "v-team",
        "UNUSED_TOKEN": "v-unused",
    }
    text = (
        "a: ${OPENAI_API_KEY}\nb: $GITHUB_TOKEN\nc: x${DB_PASS}y\nd: ${CLIENT_SECRET:-dflt}\n"
        "e: ${KEYCLOAK_URL}\nf: $PWD\ng: $TEAM\n# h: $UNUSED_TOKEN\ni: ${MISSING_KEY:-default}\n"
    )
    assert secret_variable_values(text, env) == {"v-openai", "v-gh", "v-db", "v-cs"}


@pytest.mark.parametrize(
    "name,credential",
    [
        ("Authorization", True),
        ("x-api-key", True),
        ("X-Partner-Token", True),
        ("x_client_secret", True),
        ("x-hub-signature", True),
        ("x-partner-apikey", True),
        ("x-db-password", True),
        ("x-team", False),
        ("x-tokens-used", False),
        ("x-keyword", False),
        ("x-monkey", False),
    ],
)
def test_headers_named_as_credentials(name, credential):
    from agentgateway.config.redact import is_credential_header

    assert is_credential_header(name) is credential
