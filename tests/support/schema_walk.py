"""Walks agentgateway's config schema and loads one minimal config per key, enum value and
alternative, to tell what this gateway does with each: **implemented** (the config loads and
compiles) or **refused by name** (``<path>: not supported``). Anything else (an unknown field, a
type error on a value agentgateway accepts, any other error, or a key that loads but that the
compile step never reads) is a problem the tests report.

The walk starts at the top of the file and goes depth-first. A property that is implemented is
entered (its own keys, enum values and alternatives are walked); a refused one is not. Each schema
definition is entered once, at the first place the walk reaches it (the top-level sections are
visited in ``_ORDER``), so a definition used in many places is judged where it is simplest to
reach. A minimal value holds the keys the schema requires (and those agentgateway requires at
conversion, ``_ALSO_REQUIRED``), with sample values that are valid for both gateways (``_BY_NAME``,
``_by_key``); ``_SIBLINGS`` and ``_CONTEXT`` give the keys that only make sense beside another
(``tls`` with ``protocol: HTTPS``) or on one kind of backend (``ai`` under an ``ai`` backend).

An implemented key must also be *read*: while the compile step runs, every attribute read of a
config struct is noted, and a key the compile step never reads is reported as silently ignored
(``NO_EFFECT`` lists the ones agentgateway itself accepts without effect).

A *unit* names what was judged: ``Def.key`` for a key of a schema definition, ``Def.key=VALUE``
for an enum value, ``Def<alt>`` for one alternative of a one-of / any-of.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import msgspec
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from agentgateway.config import schema as S
from agentgateway.config.compile import compile_config
from agentgateway.config.errors import ConfigError
from agentgateway.config.loader import decode_config
from tests.support.reference_schema import load

IMPLEMENTED = "implemented"
REFUSED = "refused by name"
# Where the walk test leaves its tally line for the end of the pytest run (tests/unit/config/conftest.py).
TALLY = pytest.StashKey[str]()

Embed = Callable[[Any], Any]


@dataclass
class Case:
    unit: str
    path: str
    doc: Any
    outcome: str = ""
    problem: str = ""


@dataclass
class WalkResult:
    source: str
    cases: list[Case] = field(default_factory=list)

    def by_outcome(self, outcome: str) -> list[Case]:
        return [c for c in self.cases if c.outcome == outcome]

    @property
    def problems(self) -> list[Case]:
        return [c for c in self.cases if c.outcome not in (IMPLEMENTED, REFUSED)]

    def tally(self) -> dict[str, int]:
        """Units by outcome; a unit judged at several places counts once, as implemented only
        when it is implemented everywhere it was judged."""
        units: dict[str, str] = {}
        for c in self.cases:
            if c.outcome == IMPLEMENTED:
                units.setdefault(c.unit, IMPLEMENTED)
            else:
                units[c.unit] = c.outcome if c.outcome == REFUSED else "problem"
        out = {IMPLEMENTED: 0, REFUSED: 0, "problem": 0}
        for outcome in units.values():
            out[outcome] += 1
        return out


# ---------------------------------------------------------------- the schema


class Schema:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.defs: dict[str, Any] = root.get("$defs", {})

    def resolve(self, node: Any) -> tuple[Any, str | None]:
        """Follows ``$ref`` (and a one-branch any-of around a ``$ref`` plus ``null``)."""
        name = None
        while isinstance(node, dict):
            if "$ref" in node:
                name = node["$ref"].rsplit("/", 1)[-1]
                node = self.defs[name]
                continue
            alts = [a for a in node.get("anyOf", []) if a != {"type": "null"}]
            if len(alts) == 1 and len(node) == 1:
                node = alts[0]
                continue
            break
        return node, name

    def variants(self, node: Any) -> list[tuple[str, dict[str, Any]]]:
        """The alternatives a value at ``node`` may take, each as one plain schema (a single JSON
        type, no any-of / one-of), labelled; ``null`` is left out (it means the key is unset)."""
        node, _ = self.resolve(node)
        if not isinstance(node, dict):
            return [("any", {})]
        base = {k: v for k, v in node.items() if k not in ("anyOf", "oneOf", "allOf", "not")}
        for extra in node.get("allOf", []):
            extra, _ = self.resolve(extra)
            base = _merge(base, {k: v for k, v in extra.items() if k not in ("not",)})
        branches = node.get("oneOf", []) + node.get("anyOf", [])
        out: list[tuple[str, dict[str, Any]]] = []
        if branches:
            for branch in branches:
                rbranch, _ = self.resolve(branch)
                for label, v in self.variants(rbranch):
                    merged = _merge(base, v)
                    own = [k for k in merged.get("required", []) if k not in base.get("required", [])]
                    out.append(("+".join(own) if own and _kind(merged) == "object" else label, merged))
        else:
            types = base.get("type")
            if isinstance(types, list):
                for t in types:
                    if t != "null":
                        out.append((t, {**base, "type": t}))
            elif types != "null":
                out.append((_label(base), base))
        # Distinguish labels (the key an object alternative requires, else its type).
        return [
            (lbl if sum(1 for other, _ in out if other == lbl) == 1 else f"{lbl}{i}", v)
            for i, (lbl, v) in enumerate(out)
        ]


def _label(v: dict[str, Any]) -> str:
    if "const" in v:
        return str(v["const"])
    req = v.get("required", [])
    if v.get("type", "object") == "object" and len(req) == 1:
        return str(req[0])
    if "enum" in v:
        return "|".join(str(e) for e in v["enum"])
    return str(v.get("type", "object"))


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        if k == "properties":
            out["properties"] = {**a.get("properties", {}), **v}
        elif k == "required":
            out["required"] = list(dict.fromkeys([*a.get("required", []), *v]))
        else:
            out[k] = v
    return out


def _kind(v: dict[str, Any]) -> str:
    t = v.get("type")
    if t is None:
        if "properties" in v or "required" in v or "additionalProperties" in v:
            return "object"
        if "enum" in v or "const" in v:
            return "string"
        return "any"
    return str(t)


# ---------------------------------------------------------------- sample values


class Samples:
    """Values that are valid for agentgateway and meaningful enough for this gateway's compile
    step (real files, host:port addresses, CEL, durations). Sample values written ``@name`` are
    replaced by the attribute ``name`` (a file's path, or a key set's text)."""

    def fill(self, node: Any) -> Any:
        if isinstance(node, str) and node.startswith("@") and hasattr(self, node[1:]):
            return getattr(self, node[1:])
        if isinstance(node, dict):
            return {k: self.fill(v) for k, v in node.items()}
        if isinstance(node, list):
            return [self.fill(v) for v in node]
        return node

    def __init__(self, tmp: Path) -> None:
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("localhost", "127.0.0.1")
        self.cert = str(tmp / "cert.pem")
        self.key = str(tmp / "key.pem")
        self.root = str(tmp / "ca.pem")
        cert.cert_chain_pems[0].write_to_path(self.cert)
        cert.private_key_pem.write_to_path(self.key)
        ca.cert_pem.write_to_path(self.root)
        key = ec.generate_private_key(ec.SECP256R1())
        numbers = key.public_key().public_numbers()

        def b64(n: int) -> str:
            return base64.urlsafe_b64encode(n.to_bytes(32, "big")).rstrip(b"=").decode()

        jwk = {"kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "x": b64(numbers.x), "y": b64(numbers.y)}
        self.jwks_text = json.dumps({"keys": [jwk]})
        self.discovery = str(tmp / "openid-configuration.json")
        Path(self.discovery).write_text(
            json.dumps(
                {
                    "issuer": "https://issuer.example",
                    "authorization_endpoint": "https://issuer.example/authorize",
                    "token_endpoint": "https://issuer.example/token",
                    "jwks_uri": "https://issuer.example/jwks",
                }
            )
        )
        # an RSA signing key (RS256, the default alg of jwtSign and private_key_jwt)
        self.ec256_pem, self.ec384_pem = (
            ec.generate_private_key(curve)
            .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            .decode()
            for curve in (ec.SECP256R1(), ec.SECP384R1())
        )
        self.rsa_pem = (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            .decode()
        )
        self.secret = str(tmp / "secret.txt")
        # also a valid htpasswd file: FileOrInline holds secrets and htpasswd files alike
        Path(self.secret).write_text("user:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n")
        self.jwks = str(tmp / "jwks.json")
        Path(self.jwks).write_text(self.jwks_text)
        self.htpasswd = str(tmp / "htpasswd")
        self.htpasswd_line = "user:" + bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode() + "\n"
        Path(self.htpasswd).write_text(self.htpasswd_line)
        # A file that is a key set and an OpenAPI document at once (both read it, as JSON).
        self.json_document = str(tmp / "document.json")
        Path(self.json_document).write_text(
            json.dumps({"keys": [jwk], "openapi": "3.0.0", "info": {"title": "t", "version": "1"}, "paths": {}})
        )


# Values by (definition, key); the definition is the schema definition holding the key (or the
# unit of the anonymous object holding it).
def _by_key(s: Samples) -> dict[tuple[str, str], Any]:
    return {
        ("RawSession", "key"): "ab" * 32,
        ("RuleSet", "rules"): ["true"],
        ("KV", "value"): '"v"',
        ("LocalLLMModels", "name"): "gpt",
        ("LocalLLMVirtualModel", "name"): "virtual",
        ("LocalLLMWeightedTarget", "model"): "gpt",
        ("LocalLLMFailoverTarget", "model"): "gpt",
        ("LocalLLMConditionalTarget", "model"): "gpt",
        ("LocalMcpTarget.sse", "path"): "/sse",
        ("LocalMcpTarget.mcp", "path"): "/mcp",
        ("LocalMcpTarget.openapi", "path"): "/api",
        ("McpAuthorization", "rules"): ["true"],
        ("LocalBind", "listeners"): [{"routes": [{"backends": [{"host": "127.0.0.1:18080"}]}]}],
        ("LocalRouteBackend.service", "name"): SERVICE,
        ("LocalConfig", "services"): [SERVICE_ENTRY],
        ("LocalConfig", "workloads"): [WORKLOAD_ENTRY],
        ("LocalBasicAuth", "htpasswd"): {"file": s.htpasswd},
        ("FileOrInline", "file"): s.secret,
        ("RequestRedirect", "status"): 302,
        ("RequestRejection", "status"): 403,
        ("HostRedirect", "full"): "example.com:8443",
        ("HostRedirect", "host"): "example.com",
        ("FileInlineOrRemote", "file"): s.json_document,
        ("LocalTLSServerConfig", "cert"): s.cert,
        ("LocalTLSServerConfig", "key"): s.key,
        ("LocalTLSServerConfig", "root"): s.root,
        ("LocalBackendTLS", "cert"): s.cert,
        ("LocalBackendTLS", "key"): s.key,
        ("LocalBackendTLS", "root"): s.root,
        # CEL expressions (agentgateway's metadata of an HTTP ext_authz call)
        ("ExtAuthzProtocol.http", "metadata"): {"team": "'t'"},
        ("OAuthTokenExchangeAuth", "path"): "/token",
        ("KeepaliveConfig", "time"): "30s",
        ("JwtSignAuth", "signingKey"): "@rsa_pem",
        ("RawOAuthClientAuth", "signingKey"): "@rsa_pem",
        ("OAuthClientAuth", "signingKey"): "@rsa_pem",
        ("ProviderFormatConfig", "path"): "/v1/chat/completions",
        ("LocalOidcConfig", "discovery"): {"file": s.discovery},
        # vendor guards take an API key here (implicit cloud credentials are not implemented)
        ("Moderation", "policies"): {"backendAuth": {"key": "k"}},
        ("AzureContentSafety", "policies"): {"backendAuth": {"key": "k"}},
        ("CrossAppAccessEndpoint", "path"): "/token",
        # OTLP collectors' request paths; sampling and filters as CEL
        ("OtlpLoggingConfig", "path"): "/v1/logs",
        ("TracingConfig", "path"): "/v1/traces",
        ("RawTracing", "path"): "/v1/traces",
        ("RawLogging", "filter"): "true",
        ("TracingConfig", "randomSampling"): "true",
        ("TracingConfig", "clientSampling"): "true",
        ("RawTracing", "randomSampling"): "true",
        ("RawTracing", "clientSampling"): "true",
        # HTTP/2 settings within their protocol bounds; ALPN as the reference's bytes ("h2")
        ("FrontendHTTP", "http2ConnectionWindowSize"): 1048576,
        ("FrontendHTTP", "http2FrameSize"): 16384,
        ("TLS", "alpn"): [[104, 50]],
        ("HTTP", "version"): "2",
    }


# Alternatives a minimal value avoids (when it has a choice): forms that are not what a config
# usually says, or that this gateway does not implement.
_DISFAVORED = {
    "invalid",
    "conditional",
    "service",
    "dynamic",
    "internal",
    "aws",
    "routeGroup",
    "credentials",
    "openai",
    "copilot",
    "reference",
    "custom",
}


def _fits(sample: Any, kind: str) -> bool:
    want = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "array": list, "object": dict}
    return isinstance(sample, want.get(kind, object)) and not (kind == "integer" and isinstance(sample, bool))


# Keys a minimal value holds although the schema does not require them: agentgateway requires them
# when the file is converted (a bind or a gateway without a port, TLS without a certificate).
_ALSO_REQUIRED: dict[str, tuple[str, ...]] = {
    "LocalBind": ("port",),
    "LocalGateway": ("port",),
    "LocalTLSServerConfig": ("cert", "key"),
    "RateLimitSpec": ("maxTokens", "tokensPerFill"),
    "LocalLLMVirtualModelRouting": ("weighted",),
    # a route without backends answers 500: its backend policies would be judged on nothing
    "LocalRoute": ("backends",),
    "LocalAttachedRoute": ("backends",),
    "LocalTCPRoute": ("backends",),
    "Moderation": ("policies",),
    "AzureContentSafety": ("policies",),
    "LocalAttachedTCPRoute": ("backends",),
}

SERVICE = "default/svc.local"
SERVICE_ENTRY = {"name": "svc", "namespace": "default", "hostname": "svc.local", "vips": [], "ports": {"18080": 18080}}
WORKLOAD_ENTRY = {"name": "w", "namespace": "default", "workloadIps": ["127.0.0.1"], "services": {SERVICE: {}}}

# Keys agentgateway accepts and gives no effect in a local config: accepted here too, unread.
NO_EFFECT = {
    "LocalRoute.ruleName": "agentgateway reads it from the file and names no route rule with it",
    "LocalTCPRoute.ruleName": "agentgateway reads it from the file and names no route rule with it",
    "LocalAttachedTCPRoute.ruleName": "agentgateway reads it from the file and names no route rule with it",
    "LocalLLMModels.id": "a stable identity of the entry for config stores; a local file matches models by name",
    "LocalAttachedRoute.ruleName": "agentgateway reads it from the file and names no route rule with it",
}

# Keys of a definition of which agentgateway takes exactly one (the schema cannot say so).
_EXCLUSIVE: dict[str, tuple[str, ...]] = {
    "LocalLLMVirtualModelRouting": ("weighted", "failover", "conditional"),
}

# Values by key name, wherever it is (``{"by kind": {...}}`` when it depends on the JSON type).
_BY_NAME: dict[str, Any] = {
    "host": "127.0.0.1:18080",
    "hostOverride": "127.0.0.1:18080",
    "port": 18080,
    "issuer": "https://issuer.example",
    "method": "GET",
    "exact": "/p",
    "pathPrefix": "/p",
    "prefix": "/p",
    "regex": "^/p$",
    "full": "/p",
    "url": "http://127.0.0.1:18080/x",
    "baseUrl": "http://127.0.0.1:18080/v1",
    "name": "n",
    "model": "m",
    "status": 200,
    "percentage": 0.5,
    "weight": 1,
    "priority": 0,
    "adminAddr": "127.0.0.1:15000",
    "statsAddr": "127.0.0.1:15020",
    "readinessAddr": "127.0.0.1:15021",
    "domain": "d",
    "key": "k",
    "value": "v",
    "resourceName": "r",
    "region": "us-east-1",
    "projectId": "p",
    "apiVersion": "v1",
    "cmd": "true",
    "pattern": "x+",
    "role": "user",
    "content": "c",
    "fillInterval": "1s",
    "maxTokens": 10,
    "tokensPerFill": 1,
    "attempts": 2,
    "codes": [503],
    "backend": "named",
    "audiences": ["a"],
    "keys": [{"key": "k"}],
    "requestsPerUnit": 1,
    "workerThreads": {"by kind": {"string": "50%", "integer": 2}},
    "level": "info",
    "allowOrigins": ["*"],
    "additionalOrigins": ["https://example.com"],
    "requiredClaims": ["exp"],
    "scheme": "https",
    "keyHash": "sha256:" + "ab" * 32,
    "jwks": {"by kind": {"object": {"url": "http://127.0.0.1:18080/jwks"}, "string": "@jwks_text"}},
    "metadata": {"team": "t"},
    "allowHeaders": ["content-type"],
    "exposeHeaders": ["x-id"],
    "allowMethods": ["GET"],
    "hostname": "example.com",
    "hostnames": ["example.com"],
    "gateways": "default",
    "provider": {"by kind": {"string": "openAI"}},
    "rules": {"by kind": {"string": "true"}},
    "randomSampling": {"by kind": {"string": "true"}},
    "clientSampling": {"by kind": {"string": "true"}},
    "htpasswd": {"by kind": {"string": "@htpasswd_line"}},
    "denyWithStatus": 403,
    "minTLSVersion": "TLS_V1_2",
    "minTlsVersion": "TLS_V1_2",
    "maxTLSVersion": "TLS_V1_3",
    "maxTlsVersion": "TLS_V1_3",
    "minVersion": "TLS_V1_2",
    "maxVersion": "TLS_V1_3",
    "pathOverride": "/v1/chat/completions",
    "tokenType": "urn:ietf:params:oauth:token-type:jwt",
    "authorizationEndpoint": "https://issuer.example/authorize",
    "tokenEndpoint": "https://issuer.example/token",
    "redirectURI": "http://127.0.0.1:18090/oauth/callback",
}
_DURATION = re.compile(r"(timeout|interval|duration|ttl|backoff|deadline|age|grace|keepalive)$", re.I)
# Keys holding CEL.
_CEL = re.compile(
    r"(expression|condition|precondition|postcondition|when|body|redirect|path|allow|deny|require)$", re.I
)


# ---------------------------------------------------------------- walk


# Keys set beside a key (or beside an enum value of it: ``key=VALUE``) for it to make sense.
_TLS = {"cert": "@cert", "key": "@key"}
_OIDC_ENDPOINTS = {
    "authorizationEndpoint": "https://issuer.example/authorize",
    "tokenEndpoint": "https://issuer.example/token",
    "jwks": "@jwks_text",
}
_SIBLINGS: dict[tuple[str, str], dict[str, Any]] = {
    ("LocalListener", "tls"): {"protocol": "HTTPS"},
    ("LocalBackendTLS", "cert"): {"key": "@key"},
    ("LocalBackendTLS", "key"): {"cert": "@cert"},
    ("LocalListener", "protocol=HTTPS"): {"tls": _TLS},
    ("LocalGateway", "protocol=HTTPS"): {"tls": _TLS},
    ("LocalGatewayListener", "protocol=HTTPS"): {"tls": _TLS},
    ("LocalLLMModels", "provider=vertex"): {"params": {"vertexProject": "p"}},
    ("LocalLLMModels", "provider=bedrock"): {"params": {"awsRegion": "us-east-1"}},
    ("LocalLLMModels", "provider=azure"): {"params": {"azureResourceName": "r"}},
    # a TCP or TLS listener takes tcpRoutes (and no routes)
    ("LocalListener", "protocol=TCP"): {"routes": [], "tcpRoutes": [{"backends": [{"host": "127.0.0.1:18080"}]}]},
    ("LocalListener", "protocol=TLS"): {"routes": [], "tcpRoutes": [{"backends": [{"host": "127.0.0.1:18080"}]}]},
    ("LocalListener", "tcpRoutes"): {"protocol": "TLS", "routes": []},
    # explicit endpoints are given all together
    **{("LocalOidcConfig", key): {k: v for k, v in _OIDC_ENDPOINTS.items() if k != key} for key in _OIDC_ENDPOINTS},
    ("LocalOidcConfig", "tokenEndpointAuth"): _OIDC_ENDPOINTS,
    # a Bedrock guardrail is named by both
    ("BedrockProvider", "guardrailIdentifier"): {"guardrailVersion": "1"},
    ("BedrockProvider", "guardrailVersion"): {"guardrailIdentifier": "gr"},
    ("JwtSignAuth", "alg=ES256"): {"signingKey": "@ec256_pem"},
    ("JwtSignAuth", "alg=ES384"): {"signingKey": "@ec384_pem"},
    ("SimpleLocalBackendPolicies", "backendTLS"): {"backendAuth": {"key": "k"}},
    ("ActorTokenSpec", "enforceMayAct"): {"tokenType": "urn:ietf:params:oauth:token-type:jwt"},
    ("LocalConfig", "tcpRoutes"): {"gateways": {"default": {"port": 18091, "protocol": "TLS"}}},
    # a provider models refer to (one no model names is never compiled, as an unused backend)
    ("LocalLLMConfig", "providers"): {"models": [{"name": "gpt", "provider": {"reference": "n"}}]},
    # tracing settings need a collector to mean anything
    **{
        ("RawTracing", key): {"otlpEndpoint": "http://127.0.0.1:4317"}
        for key in ("headers", "otlpProtocol", "fields", "randomSampling", "clientSampling", "path")
    },
}

# Where a key only makes sense on one kind of backend: (levels up from the key to the backend,
# keys removed there, keys set there).
_BACKEND_KINDS = ("host", "service", "backend", "mcp", "ai")
_MCP_BACKEND = {"mcp": {"targets": [{"name": "t", "mcp": {"host": "http://127.0.0.1:18080/mcp"}}]}}
_AI_BACKEND = {"ai": {"name": "a", "provider": {"openAI": {}}}}
_CONTEXT: dict[str, tuple[int, tuple[str, ...], dict[str, Any]]] = {
    "LocalBackendPolicies.mcpAuthorization": (2, _BACKEND_KINDS, _MCP_BACKEND),
    "LocalBackendPolicies.ai": (2, _BACKEND_KINDS, _AI_BACKEND),
    "FilterOrPolicy.mcpAuthorization": (2, ("backends",), {"backends": [_MCP_BACKEND]}),
    "FilterOrPolicy.ai": (2, ("backends",), {"backends": [_AI_BACKEND]}),
    # providers without a default JWKS URL
    **{f"McpIDP<{idp}>": (1, (), {"jwks": "@jwks_text"}) for idp in ("okta", "authentik")},
    **{f"McpIDP.{idp}": (2, (), {"jwks": "@jwks_text"}) for idp in ("okta", "authentik")},
    # Descope's issuer names its project and server
    **{
        unit: (levels, ("issuer",), {"issuer": "https://api.descope.com/v1/apps/agentic/P1/S1", "jwks": "@jwks_text"})
        for unit, levels in (("McpIDP<descope>", 1), ("McpIDP.descope", 2))
    },
    # a custom provider needs to know where it is; a reference, the provider it names
    "AIProvider<custom>": (1, (), {"hostOverride": "127.0.0.1:18080"}),
    "AIProvider.custom": (2, (), {"hostOverride": "127.0.0.1:18080"}),
    "LocalModelAIProvider<custom>": (1, (), {"params": {"baseUrl": "http://127.0.0.1:18080/v1"}}),
    "LocalModelAIProvider.custom": (2, (), {"params": {"baseUrl": "http://127.0.0.1:18080/v1"}}),
    "LocalModelAIProvider<reference>": (3, (), {"providers": [{"name": "x", "provider": "openAI"}]}),
    "LocalModelAIProvider.reference": (4, (), {"providers": [{"name": "x", "provider": "openAI"}]}),
}
# Definitions judged at a later place than the first the walk reaches: ``backendAuth`` in a vendor
# guard's policies takes only a key, while a backend's takes every kind; a model's ``provider`` is
# judged on a model (``llm.providers[]`` entries take no reference).
_NOT_FIRST_AT: dict[str, str] = {"BackendAuthCompat": "promptGuard", "LocalModelAIProvider": "llm.providers"}

# Top-level keys in the order the walk visits them: a definition is judged at its first place.
_ORDER = [
    "config",
    "frontendPolicies",
    "binds",
    "gateways",
    "routes",
    "backends",
    "services",
    "workloads",
    "llm",
    "mcp",
    "tcpRoutes",
    "policies",
    "routeGroups",
    "ui",
]

# What every case's file also holds: a named backend for ``backend: named`` references.
_SUPPORT = {"backends": [{"name": "named", "host": "127.0.0.1:18081"}]}


class Walker:
    def __init__(self, schema: Schema, samples: Samples, base_dir: Path) -> None:
        self.schema = schema
        self.samples = samples
        self.base_dir = base_dir
        self.by_key = _by_key(samples)
        self.entered: set[str] = set()
        self.cases: list[Case] = []

    # -------------------------------------------------------- values

    def value(self, node: Any, owner: str, key: str | None, depth: int = 0) -> Any:
        """A minimal valid value for ``node`` (the value of ``owner.key``)."""
        if key is not None and (owner, key) in self.by_key:
            return copy.deepcopy(self.by_key[(owner, key)])
        rnode, name = self.schema.resolve(node)
        if name == "Expression":
            return "true"
        vs = self.schema.variants(rnode)
        if not vs:
            return None
        vs.sort(key=lambda lv: any(part in _DISFAVORED for part in lv[0].split("+")))
        return self.variant_value(vs[0][1], name or f"{owner}.{key}", key, depth)

    def variant_value(self, v: dict[str, Any], owner: str, key: str | None, depth: int = 0) -> Any:
        kind = _kind(v)
        if "const" in v:
            return v["const"]
        sample = _BY_NAME.get(key or "")
        if isinstance(sample, dict) and "by kind" in sample:
            sample = sample["by kind"].get(kind)
        if "enum" in v:
            return sample if sample in v["enum"] else v["enum"][0]
        if sample is not None and _fits(sample, kind):
            return copy.deepcopy(sample)
        if kind == "object":
            out = {}
            required = list(v.get("required", []))
            required += [k for k in _ALSO_REQUIRED.get(owner, ()) if k in v.get("properties", {}) and k not in required]
            for req in required:
                sub = v.get("properties", {}).get(req, {})
                out[req] = self.value(sub, owner, req, depth + 1)
            return out
        if kind == "array":
            if depth > 12:
                return []
            return [self.value(v.get("items", {}), owner, key, depth + 1)]
        if kind == "string":
            if key and _DURATION.search(key):
                return "1s"
            if key and _CEL.search(key):
                return "true"
            return "x"
        if kind == "integer":
            return max(1, int(v.get("minimum", 1)))
        if kind == "number":
            return 0.5
        if kind == "boolean":
            return True
        if kind == "any":
            return {}
        return "x"

    # -------------------------------------------------------- cases

    @staticmethod
    def in_context(unit: str, path: str, doc: Any) -> Any:
        """``doc`` with the object ``levels`` up from ``path`` changed as ``_CONTEXT`` says."""
        if unit not in _CONTEXT:
            return doc
        levels, drop, patch = _CONTEXT[unit]
        parts = re.findall(r"[^.\[\]]+|\[\d+\]", path)
        node = doc = copy.deepcopy(doc)
        for part in parts[: len(parts) - levels]:
            node = node[int(part[1:-1])] if part.startswith("[") else node[part]
        for key in drop:
            node.pop(key, None)
        _fill_in(node, copy.deepcopy(patch))
        return doc

    def judge(self, unit: str, path: str, doc: Any, alt_paths: tuple[str, ...] = ()) -> Case:
        case = Case(unit, path, doc)
        self.cases.append(case)
        full = copy.deepcopy(doc)
        if isinstance(full, dict) and "gateways" not in full:
            full["gateways"] = {"default": {"port": 18090}}
        if isinstance(full, dict) and "services" not in full:
            full["services"] = [copy.deepcopy(SERVICE_ENTRY)]
        if isinstance(full, dict) and "backends" not in full:
            full.update(copy.deepcopy(_SUPPORT))
        elif isinstance(full, dict):
            full["backends"] = list(full["backends"]) + copy.deepcopy(_SUPPORT["backends"])
        full = self.samples.fill(full)
        reads: set[tuple[int, str]] = set()
        holder: tuple[object, str] | None = None
        try:
            cfg = decode_config(json.dumps(full))
            holder = _holder(cfg, path) if "." in unit and "<" not in unit and "=" not in unit else None
            with _tracking(reads):
                compile_config(cfg, self.base_dir)
        except ConfigError as exc:
            if "not supported" in exc.reason and (exc.path == path or exc.path in alt_paths):
                case.outcome = REFUSED
            else:
                case.outcome = "problem"
                case.problem = str(exc)
            return case
        except Exception as exc:  # a crash of the compile step is a problem too
            case.outcome = "problem"
            case.problem = f"{type(exc).__name__}: {exc}"
            return case
        if holder is not None and (id(holder[0]), holder[1]) not in reads and unit not in NO_EFFECT:
            case.outcome = "problem"
            case.problem = f"{path}: accepted, but the compile step never reads it (silently ignored)"
            return case
        case.outcome = IMPLEMENTED
        return case

    def enter(self, node: Any, path: str, embed: Embed, owner: str) -> None:
        """Judge the keys, enum values and alternatives of the value at ``path``."""
        rnode, name = self.schema.resolve(node)
        here = name or owner
        if here in self.entered or _NOT_FIRST_AT.get(here, "\0") in path:
            return
        self.entered.add(here)
        vs = self.schema.variants(rnode)
        # The usual alternative first: the keys every alternative shares are judged with it.
        vs.sort(key=lambda lv: any(part in _DISFAVORED for part in lv[0].split("+")))
        several = len(vs) > 1
        for label, v in vs:
            key = re.sub(r"\[\d+\]$", "", path.rsplit(".", 1)[-1]) if path and _kind(v) != "object" else None
            value = self.variant_value(v, here, key)
            if several:
                alt_paths = tuple(f"{path}.{k}" for k in v.get("required", []))
                unit = f"{here}<{label}>"
                case = self.judge(unit, path, self.in_context(unit, path, embed(value)), alt_paths)
                if case.outcome != IMPLEMENTED:
                    continue
            if "enum" in v and len(v["enum"]) > 1:
                for item in v["enum"]:
                    self.judge(f"{here}={item}", path, embed(item))
            kind = _kind(v)
            if kind == "object" and v.get("properties"):
                props = v["properties"]
                keys = (
                    sorted(props, key=lambda k: _ORDER.index(k) if k in _ORDER else len(_ORDER))
                    if not path
                    else list(props)
                )
                for key in keys:
                    sub = props[key]
                    obj = dict(value) if isinstance(value, dict) else {}
                    if key in _EXCLUSIVE.get(here, ()):
                        obj = {k: v for k, v in obj.items() if k not in _EXCLUSIVE[here]}
                    if key not in obj:
                        obj[key] = self.value(sub, here, key)
                    kpath = f"{path}.{key}" if path else key
                    obj.update(copy.deepcopy(_SIBLINGS.get((here, key), {})))
                    case = self.judge(f"{here}.{key}", kpath, self.in_context(f"{here}.{key}", kpath, embed(obj)))
                    if case.outcome == IMPLEMENTED:
                        inner = _embed_key(embed, obj, key, here)
                        if f"{here}.{key}" in _CONTEXT:  # the keys below need the same context
                            inner = _in_context(self.in_context, f"{here}.{key}", kpath, inner)
                        self.enter(sub, kpath, inner, f"{here}.{key}")
            elif kind == "array" and isinstance(v.get("items"), dict):
                self.enter(v["items"], f"{path}[0]", _embed_list(embed), f"{here}[]")
            elif kind == "object" and isinstance(v.get("additionalProperties"), dict):
                mkey = "default" if path == "gateways" else "k"
                self.enter(v["additionalProperties"], f"{path}.{mkey}", _embed_key(embed, {}, mkey), f"{here}{{}}")


def _fill_in(node: dict[str, Any], patch: dict[str, Any]) -> None:
    """Sets the keys of ``patch`` that ``node`` lacks, object by object (what is there stays)."""
    for key, value in patch.items():
        if isinstance(node.get(key), dict) and isinstance(value, dict):
            _fill_in(node[key], value)
        elif key not in node:
            node[key] = value


def _holder(cfg: S.LocalConfig, path: str) -> tuple[object, str] | None:
    """(the decoded struct holding the key at ``path``, the key's attribute name), or None when
    the key is not a field of a struct (a map entry, a list item)."""
    parts = re.findall(r"[^.\[\]]+|\[\d+\]", path)
    node: Any = cfg
    for part in parts[:-1]:
        if part.startswith("["):
            node = node[int(part[1:-1])] if isinstance(node, list) else None
        elif isinstance(node, S.Schema):
            node = getattr(node, _attr(type(node), part) or "", None)
        elif isinstance(node, dict):
            node = node.get(part)
        else:
            return None
        if node is None:
            return None
    if not isinstance(node, S.Schema):
        return None
    attr = _attr(type(node), parts[-1])
    return (node, attr) if attr else None


def _attr(cls: type[S.Schema], key: str) -> str | None:
    return next((f.name for f in msgspec.structs.fields(cls) if f.encode_name == key), None)


@contextlib.contextmanager
def _tracking(reads: set[tuple[int, str]]) -> Iterator[None]:
    """Notes every attribute read of a config struct while the block runs."""

    def tracked(self: object, name: str) -> Any:
        reads.add((id(self), name))
        return object.__getattribute__(self, name)

    S.Schema.__getattribute__ = tracked  # type: ignore[method-assign]
    try:
        yield
    finally:
        del S.Schema.__getattribute__


def _embed_key(embed: Embed, obj: dict[str, Any], key: str, owner: str = "") -> Embed:
    def inner(x: Any) -> Any:
        siblings = _SIBLINGS.get((owner, f"{key}={x}"), {}) if isinstance(x, str) else {}
        return embed({**obj, **copy.deepcopy(siblings), key: x})

    return inner


def _in_context(apply: Callable[[str, str, Any], Any], unit: str, path: str, embed: Embed) -> Embed:
    def inner(x: Any) -> Any:
        return apply(unit, path, embed(x))

    return inner


def _embed_list(embed: Embed) -> Embed:
    def inner(x: Any) -> Any:
        return embed([x])

    return inner


@contextlib.contextmanager
def _workspace() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="agw-walk-") as tmp:
        yield Path(tmp)


@contextlib.contextmanager
def _aws_credentials() -> Iterator[None]:
    """Bedrock models need AWS credentials at load, oidc a session key; the walk lends fake ones."""
    fake = {
        "AWS_ACCESS_KEY_ID": "AKIDWALK",
        "AWS_SECRET_ACCESS_KEY": "walk-secret",
        "AWS_REGION": "us-east-1",
        # oidc seals its session cookies with the session key
        "SESSION_KEY": "cd" * 32,
    }
    saved = {k: os.environ.get(k) for k in fake}
    os.environ.update(fake)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def walk() -> WalkResult:
    root, source = load()
    schema = Schema(root)
    with _workspace() as tmp, _aws_credentials():
        walker = Walker(schema, Samples(tmp), tmp)
        walker.enter(root, "", lambda x: x, "LocalConfig")
        return WalkResult(source, walker.cases)


def readme_block(result: WalkResult) -> str:
    """The README's table of agentgateway keys: per definition, the keys implemented and the keys
    refused by name."""
    rows: dict[str, tuple[list[str], list[str]]] = {}
    for c in result.cases:
        owner, _, rest = c.unit.partition(".")
        if not rest:
            m = re.match(r"^([^<=]+)([<=].*)$", c.unit)
            if not m:
                continue
            owner, rest = m.group(1), m.group(2)
        done, refused = rows.setdefault(owner, ([], []))
        (done if c.outcome == IMPLEMENTED else refused).append(rest)
    t = result.tally()
    lines = [
        f"Of the {sum(t.values())} keys, enum values and alternatives of agentgateway's schema the walk "
        f"reaches, **{t[IMPLEMENTED]} are implemented** and **{t[REFUSED]} are refused by name**.",
        "",
        "| Definition | Implemented | Not supported |",
        "|---|---|---|",
    ]
    for owner in sorted(rows):
        done, refused = rows[owner]
        lines.append(
            f"| `{owner}` | {', '.join(f'`{k}`' for k in dict.fromkeys(done))} | "
            f"{', '.join(f'`{k}`' for k in dict.fromkeys(refused))} |"
        )
    return "\n".join(lines) + "\n"
