"""Prompt guards that ask a vendor's moderation service, as agentgateway calls them:

- ``openAIModeration`` (requests): ``POST /v1/moderations`` with ``{"input": [texts], "model"}``
  (default ``omni-moderation-latest``); any result ``flagged`` rejects.
- ``bedrockGuardrails``: ``POST /guardrail/{id}/version/{version}/apply`` with
  ``{"source": "INPUT"|"OUTPUT", "content": [{"text": {"text"}}]}``, signed with SigV4 (service
  ``bedrock``); ``GUARDRAIL_INTERVENED`` with an assessment whose action is ``BLOCKED`` rejects,
  otherwise the texts are replaced by the guardrail's ``outputs`` (anonymized).
- ``googleModelArmor``: ``POST /v1/projects/{p}/locations/{l}/templates/{t}:sanitizeUserPrompt``
  (``user_prompt_data``) or ``:sanitizeModelResponse`` (``model_response_data``), the texts
  joined by newlines; a filter result with ``matchState: MATCH_FOUND`` rejects.
- ``azureContentSafety``: ``POST /contentsafety/text:analyze`` (a category at or above
  ``severityThreshold``, default 2, or a blocklist match rejects) and, on requests,
  ``/contentsafety/text:detectJailbreak`` (``jailbreakAnalysis.detected`` rejects).

A rejection is answered with the guard's ``rejection`` (status, body in the client API's error
format, header edits). A vendor that cannot be reached, answers an error or something that is
not its API fails the request with 503 (agentgateway's answer: the guard fails closed).
Credentials come from the guard's ``policies.backendAuth`` (a key, AWS or GCP); without them
Bedrock signs with the standard AWS chain and Model Armor uses Application Default Credentials.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import AwsAuth, BackendAuth, BackendTls, GcpAuth, PromptGuardRule
from agentgateway.llm.endpoints import MakeHttpTarget, parse_url
from agentgateway.llm.errors import LlmError
from agentgateway.llm.guards import Rejection
from agentgateway.upstream.backend_auth import compile_backend_auth
from agentgateway.upstream.client import HttpClient, HttpClientError
from agentgateway.upstream.target import HttpTarget

_JSON = (b"content-type", b"application/json")
_ACCEPT = (b"accept", b"application/json")
# a vendor check is an extra round trip before (or after) the model: bounded
GUARD_TIMEOUT = 10.0
_READ_LIMIT = 1024 * 1024


class VendorGuard:
    """One vendor guard: where its API is, what to send, how to read the verdict."""

    __slots__ = ("kind", "target", "prefix", "rejection", "response", "settings")

    def __init__(
        self,
        kind: str,
        target: HttpTarget,
        prefix: str,
        rejection: Rejection,
        response: bool,
        settings: dict[str, Any],
    ) -> None:
        self.kind = kind
        self.target = target
        self.prefix = prefix
        self.rejection = rejection
        self.response = response
        self.settings = settings

    async def check(self, client: HttpClient, texts: list[str]) -> list[str] | None:
        """None: the texts pass. A list: the texts to use instead (Bedrock's anonymized
        outputs). Raises the guard's rejection, or a 503 when the vendor fails."""
        if not texts:
            return None
        kind = self.kind
        if kind == "openAIModeration":
            verdict = await self._call(client, "/v1/moderations", {"input": texts, "model": self.settings["model"]})
            results = verdict.get("results")
            if not isinstance(results, list):
                raise self._failed("no results in the moderation answer")
            if any(isinstance(r, dict) and r.get("flagged") is True for r in results):
                raise self.rejection.error()
            return None
        if kind == "bedrockGuardrails":
            path = self.settings["path"]
            body: dict[str, Any] = {
                "source": "OUTPUT" if self.response else "INPUT",
                "content": [{"text": {"text": t}} for t in texts],
            }
            verdict = await self._call(client, path, body)
            action = verdict.get("action")
            if action not in ("NONE", "GUARDRAIL_INTERVENED"):
                raise self._failed(f"unexpected guardrail action {action!r}")
            if action == "NONE":
                return None
            if _has_blocked(verdict.get("assessments") or []):
                raise self.rejection.error()
            outputs = [o.get("text") for o in verdict.get("outputs") or [] if isinstance(o, dict)]
            masked = [o if isinstance(o, str) else t for o, t in zip(outputs, texts, strict=False)]
            return masked + texts[len(masked) :]
        if kind == "googleModelArmor":
            text = "\n".join(texts)
            if self.response:
                action, data = "sanitizeModelResponse", {"model_response_data": {"text": text}}
            else:
                action, data = "sanitizeUserPrompt", {"user_prompt_data": {"text": text}}
            verdict = await self._call(client, f"{self.settings['path']}:{action}", data)
            result = verdict.get("sanitizationResult")
            if result is not None and not isinstance(result, dict):
                raise self._failed("sanitizationResult is not an object")
            if result is not None and _armor_match(result.get("filterResults")):
                raise self.rejection.error()
            return None
        # azureContentSafety
        text = "\n".join(texts)
        analyze = self.settings.get("analyze")
        if analyze is not None:
            body = {"text": text}
            if analyze["blocklists"]:
                body["blocklistNames"] = analyze["blocklists"]
            if analyze["halt"] is not None:
                body["haltOnBlocklistHit"] = analyze["halt"]
            path = f"/contentsafety/text:analyze?api-version={quote(analyze['version'], safe='')}"
            verdict = await self._call(client, path, body)
            categories = verdict.get("categoriesAnalysis")
            if not isinstance(categories, list):
                raise self._failed("no categoriesAnalysis in the answer")
            if verdict.get("blocklistsMatch") or any(
                isinstance(c, dict) and isinstance(c.get("severity"), int) and c["severity"] >= analyze["threshold"]
                for c in categories
            ):
                raise self.rejection.error()
        jailbreak = self.settings.get("jailbreak")
        if jailbreak is not None and not self.response:
            path = f"/contentsafety/text:detectJailbreak?api-version={quote(jailbreak, safe='')}"
            verdict = await self._call(client, path, {"text": text})
            analysis = verdict.get("jailbreakAnalysis")
            if not isinstance(analysis, dict) or not isinstance(analysis.get("detected"), bool):
                raise self._failed("no jailbreakAnalysis in the answer")
            if analysis["detected"]:
                raise self.rejection.error()
        return None

    def _failed(self, reason: str) -> LlmError:
        return LlmError(503, f"prompt guard {self.kind} failed: {reason}")

    async def _call(self, client: HttpClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
        payload = orjson.dumps(body)
        try:
            resp = await client.request(
                self.target, b"POST", (self.prefix + path).encode(), [_JSON, _ACCEPT], payload, GUARD_TIMEOUT
            )
            raw = await resp.read(_READ_LIMIT)
        except HttpClientError as exc:
            raise self._failed(exc.message) from None
        if not 200 <= resp.status < 300:
            raise self._failed(f"the service answered {resp.status}")
        try:
            verdict = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise self._failed("the answer is not JSON") from None
        if not isinstance(verdict, dict):
            raise self._failed("the answer is not a JSON object")
        return verdict


def _has_blocked(value: Any) -> bool:
    """An assessment (at any depth) whose ``action`` is ``BLOCKED``."""
    if isinstance(value, dict):
        if value.get("action") == "BLOCKED":
            return True
        return any(_has_blocked(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_blocked(v) for v in value)
    return False


def _armor_match(results: Any) -> bool:
    """Any filter result (a map of filters, or a list) whose match state is MATCH_FOUND."""
    entries = list(results.values()) if isinstance(results, dict) else results if isinstance(results, list) else []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        for result in entry.values():
            if not isinstance(result, dict):
                continue
            if result.get("matchState") == "MATCH_FOUND":
                return True
            for inner in ("inspectResult", "deidentifyResult"):  # Sensitive Data Protection
                sub = result.get(inner)
                if isinstance(sub, dict) and sub.get("matchState") == "MATCH_FOUND":
                    return True
    return False


def compile_vendor_guard(
    rule: PromptGuardRule,
    rejection: Rejection,
    response: bool,
    where: str,
    make_http: MakeHttpTarget,
    base_dir: Path | None,
) -> VendorGuard:
    settings: dict[str, Any] = {}
    if rule.open_ai_moderation is not None:
        cfg: Any = rule.open_ai_moderation
        kind = "openAIModeration"
        if response:
            raise ConfigError(f"{where}.openAIModeration", "guards requests only (as in agentgateway)")
        settings["model"] = cfg.model or "omni-moderation-latest"
        default_url = "https://api.openai.com"
        implicit: BackendAuth | None = None
    elif rule.bedrock_guardrails is not None:
        cfg = rule.bedrock_guardrails
        kind = "bedrockGuardrails"
        ident, version = quote(cfg.guardrail_identifier, safe=""), quote(cfg.guardrail_version, safe="")
        settings["path"] = f"/guardrail/{ident}/version/{version}/apply"
        default_url = f"https://bedrock-runtime.{cfg.region}.amazonaws.com"
        implicit = BackendAuth(aws=AwsAuth(region=cfg.region, service_name="bedrock"))
    elif rule.google_model_armor is not None:
        cfg = rule.google_model_armor
        kind = "googleModelArmor"
        location = cfg.location or "us-central1"
        settings["path"] = (
            f"/v1/projects/{quote(cfg.project_id, safe='')}/locations/{quote(location, safe='')}"
            f"/templates/{quote(cfg.template_id, safe='')}"
        )
        default_url = f"https://modelarmor.{location}.rep.googleapis.com"
        implicit = BackendAuth(gcp=GcpAuth())
    else:
        cfg = rule.azure_content_safety
        assert cfg is not None
        kind = "azureContentSafety"
        endpoint = cfg.endpoint.removeprefix("https://").removeprefix("http://").rstrip("/")
        if not endpoint:
            raise ConfigError(f"{where}.azureContentSafety.endpoint", "required")
        default_url = f"https://{endpoint}"
        if cfg.analyze_text is not None:
            threshold = cfg.analyze_text.severity_threshold
            if threshold is not None and not 0 <= threshold <= 7:
                raise ConfigError(f"{where}.azureContentSafety.analyzeText.severityThreshold", "must be 0-7")
            settings["analyze"] = {
                "threshold": 2 if threshold is None else threshold,
                "version": cfg.analyze_text.api_version or "2024-09-01",
                "blocklists": list(cfg.analyze_text.blocklist_names or []),
                "halt": cfg.analyze_text.halt_on_blocklist_hit,
            }
        if cfg.detect_jailbreak is not None:
            settings["jailbreak"] = cfg.detect_jailbreak.api_version or "2024-02-15-preview"
        implicit = None
    gwhere = f"{where}.{kind}"
    url = cfg.base_url or default_url
    host, port, tls, prefix = parse_url(url, f"{gwhere}.baseUrl" if cfg.base_url else gwhere)
    policies = cfg.policies
    tls_settings = policies.backend_tls if policies is not None else None
    if tls_settings is None and tls:
        tls_settings = BackendTls()
    target = make_http(host, port, tls_settings, f"{kind}:{host}", gwhere)
    auth = policies.backend_auth if policies is not None else None
    awhere = f"{gwhere}.policies.backendAuth"
    if auth is None:
        if implicit is None:
            raise ConfigError(
                f"{gwhere}.policies.backendAuth",
                "required (a key: implicit credentials of this vendor are not supported)",
            )
        auth, awhere = implicit, gwhere
    if auth.passthrough is not None:
        raise ConfigError(f"{awhere}.passthrough", "not supported for prompt guards")
    target.auth = compile_backend_auth(auth, awhere, host, base_dir)
    return VendorGuard(kind, target, prefix, rejection, response, settings)
