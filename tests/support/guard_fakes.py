"""Fake moderation services for the vendor prompt guards, strict about request shape and
credentials as the vendors document them.

Run as ``python -m tests.support.guard_fakes --kind KIND --port P``. KIND is:

- ``moderation``: OpenAI ``POST /v1/moderations`` (``Authorization: Bearer <GUARD_KEY>``; body
  ``{input: string | string[], model}``): one result per input, ``flagged`` when it contains
  ``FLAGME``;
- ``bedrock``: ``POST /guardrail/{id}/version/{version}/apply`` (SigV4 for service ``bedrock``,
  ``accept: application/json``; body ``{source: INPUT|OUTPUT, content: [{text: {text}}]}``):
  ``BLOCKME`` is blocked (an assessment with action ``BLOCKED``), an e-mail address anonymized
  (outputs with ``{EMAIL}``), the rest ``NONE``;
- ``armor``: Model Armor ``POST /v1/projects/{p}/locations/{l}/templates/{t}:sanitizeUserPrompt``
  and ``:sanitizeModelResponse`` (``Authorization: Bearer <GUARD_KEY>``; ``userPromptData`` /
  ``modelResponseData`` with ``text``, proto JSON or snake_case names): ``JAILBREAK`` matches
  the prompt-injection filter;
- ``contentsafety``: Azure AI Content Safety ``POST /contentsafety/text:analyze`` and
  ``/contentsafety/text:detectJailbreak`` (``api-version`` required; key in
  ``Ocp-Apim-Subscription-Key``): ``HATEFUL`` is Hate at severity 4, ``forbidden`` matches the
  blocklist ``banned``, ``JAILBREAK`` is a jailbreak.

Any service answers 500 when a text contains ``FAILGUARD``. ``GET /_last`` returns the last
request ({path, headers, body}); ``GET /_count`` how many were served.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from typing import Any

import orjson
import uvloop

from tests.support.llm_fakes import FakeProtocol, Invalid, need, only_keys, verify_sigv4

GUARD_KEY = "sk-guard-secret"
Json = dict[str, Any]
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


class GuardFake:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.last: Json = {}
        self.count = 0

    async def handle(
        self, method: str, target: str, headers: dict[bytes, bytes], body: bytes, host: str
    ) -> tuple[int, list[tuple[str, str]], Any]:
        path, _, query = target.partition("?")
        json_type = [("content-type", "application/json")]
        if method == "GET" and path == "/_last":
            return 200, json_type, orjson.dumps(self.last)
        if method == "GET" and path == "/_count":
            return 200, json_type, orjson.dumps({"count": self.count})
        self.count += 1
        self.last = {
            "path": target,
            "headers": {k.decode(): v.decode("latin-1") for k, v in headers.items()},
            "body": body.decode("utf-8", "replace"),
        }
        try:
            need(method == "POST", "method not allowed")
            need(headers.get(b"content-type", b"").startswith(b"application/json"), "content-type must be JSON")
            self.check_auth(headers, method, f"http://{host}{target}", body)
            try:
                req = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise Invalid("request body is not valid JSON") from None
            need(isinstance(req, dict), "request body must be an object")
            if "FAILGUARD" in body.decode("utf-8", "replace"):
                raise Invalid("the guard service failed", 500)
            answer = self.route(path, query, req, headers)
            return 200, json_type, orjson.dumps(answer)
        except Invalid as exc:
            return exc.status, json_type, orjson.dumps({"error": {"code": exc.status, "message": exc.message}})

    def check_auth(self, headers: dict[bytes, bytes], method: str, url: str, body: bytes) -> None:
        kind = self.kind
        if kind == "bedrock":
            try:
                verify_sigv4(method, url, headers, body)
            except Invalid as exc:
                raise Invalid(exc.message, 403) from None
            return
        if kind == "contentsafety":
            sent = headers.get(b"ocp-apim-subscription-key", b"").decode()
        else:
            sent = headers.get(b"authorization", b"").decode().removeprefix("Bearer ")
        if sent != GUARD_KEY:
            raise Invalid("invalid credentials", 401)

    def route(self, path: str, query: str, req: Json, headers: dict[bytes, bytes]) -> Json:
        kind = self.kind
        if kind == "moderation":
            need(path == "/v1/moderations", f"unknown path {path}")
            only_keys(req, frozenset(("input", "model")), "moderation request")
            inputs = req.get("input")
            inputs = [inputs] if isinstance(inputs, str) else inputs
            need(isinstance(inputs, list) and inputs and all(isinstance(i, str) for i in inputs), "input is required")
            need(isinstance(req.get("model"), str), "model must be a string")
            results = []
            for text in inputs:
                flagged = "FLAGME" in text
                results.append(
                    {
                        "flagged": flagged,
                        "categories": {"harassment": flagged, "violence": False},
                        "category_scores": {"harassment": 0.98 if flagged else 0.01, "violence": 0.0},
                    }
                )
            return {"id": "modr-fake", "model": req["model"], "results": results}
        if kind == "bedrock":
            m = re.fullmatch(r"/guardrail/([^/]+)/version/([^/]+)/apply", path)
            need(m, f"unknown path {path}")
            need(headers.get(b"accept") == b"application/json", "accept: application/json is required")
            only_keys(req, frozenset(("source", "content", "outputScope")), "ApplyGuardrail request")
            need(req.get("source") in ("INPUT", "OUTPUT"), "source must be INPUT or OUTPUT")
            content = req.get("content")
            need(isinstance(content, list) and content, "content is required")
            texts = []
            for block in content:
                text = (block.get("text") or {}).get("text") if isinstance(block, dict) else None
                need(isinstance(text, str), "content[].text.text is required")
                texts.append(text)
            if any("BLOCKME" in t for t in texts):
                return {
                    "action": "GUARDRAIL_INTERVENED",
                    "outputs": [{"text": "Sorry, the model cannot answer this question."}],
                    "assessments": [
                        {"topicPolicy": {"topics": [{"name": "Blocked", "type": "DENY", "action": "BLOCKED"}]}}
                    ],
                    "usage": {"topicPolicyUnits": 1},
                }
            if any(_EMAIL.search(t) for t in texts):
                return {
                    "action": "GUARDRAIL_INTERVENED",
                    "outputs": [{"text": _EMAIL.sub("{EMAIL}", t)} for t in texts],
                    "assessments": [
                        {
                            "sensitiveInformationPolicy": {
                                "piiEntities": [{"type": "EMAIL", "match": "x", "action": "ANONYMIZED"}]
                            }
                        }
                    ],
                }
            return {"action": "NONE", "outputs": [], "assessments": [{}]}
        if kind == "armor":
            m = re.fullmatch(r"/v1/projects/([^/]+)/locations/([^/]+)/templates/([^/:]+):(\w+)", path)
            need(m, f"unknown path {path}")
            assert m is not None
            action = m.group(4)
            need(action in ("sanitizeUserPrompt", "sanitizeModelResponse"), f"unknown method {action}")
            names = (
                ("userPromptData", "user_prompt_data")
                if action == "sanitizeUserPrompt"
                else ("modelResponseData", "model_response_data")
            )
            data = req.get(names[0], req.get(names[1]))
            only_keys(req, frozenset((*names, "multiLanguageDetectionMetadata")), f"{action} request")
            need(isinstance(data, dict) and isinstance(data.get("text"), str), f"{names[0]}.text is required")
            state = "MATCH_FOUND" if "JAILBREAK" in data["text"] else "NO_MATCH_FOUND"
            return {
                "sanitizationResult": {
                    "filterMatchState": state,
                    "filterResults": {
                        "pi_and_jailbreak": {
                            "piAndJailbreakFilterResult": {"executionState": "EXECUTION_SUCCESS", "matchState": state}
                        },
                        "csam": {"csamFilterFilterResult": {"matchState": "NO_MATCH_FOUND"}},
                    },
                    "invocationResult": "SUCCESS",
                }
            }
        # contentsafety
        need(query.startswith("api-version="), "api-version is required")
        if path == "/contentsafety/text:analyze":
            need(query == "api-version=2024-09-01", f"unsupported {query}")
            only_keys(
                req,
                frozenset(("text", "categories", "blocklistNames", "haltOnBlocklistHit", "outputType")),
                "AnalyzeTextOptions",
            )
            text = req.get("text")
            need(isinstance(text, str) and 0 < len(text) <= 10000, "text is required (at most 10000 characters)")
            blocklists = req.get("blocklistNames") or []
            need(isinstance(blocklists, list), "blocklistNames must be a list")
            matches = (
                [{"blocklistName": "banned", "blocklistItemId": "1", "blocklistItemText": "forbidden"}]
                if "banned" in blocklists and "forbidden" in text
                else []
            )
            hate = 4 if "HATEFUL" in text else 0
            return {
                "blocklistsMatch": matches,
                "categoriesAnalysis": [
                    {"category": "Hate", "severity": hate},
                    {"category": "SelfHarm", "severity": 0},
                    {"category": "Sexual", "severity": 0},
                    {"category": "Violence", "severity": 0},
                ],
            }
        need(path == "/contentsafety/text:detectJailbreak", f"unknown path {path}")
        need(query == "api-version=2024-02-15-preview", f"unsupported {query}")
        only_keys(req, frozenset(("text",)), "DetectJailbreak request")
        need(isinstance(req.get("text"), str), "text is required")
        return {"jailbreakAnalysis": {"detected": "JAILBREAK" in req["text"]}}


async def main_async(kind: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    fake = GuardFake(kind)
    server = await loop.create_server(lambda: FakeProtocol(fake, loop), "127.0.0.1", port)  # type: ignore[arg-type]
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kind", required=True, choices=["moderation", "bedrock", "armor", "contentsafety"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    try:
        uvloop.run(main_async(args.kind, args.port))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
