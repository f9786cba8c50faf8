"""OpenAI embeddings requests for providers with their own embeddings APIs: Gemini
``batchEmbedContents``, Vertex AI ``predict``, and Bedrock ``invoke`` of Titan and Cohere models;
their answers back as an OpenAI embeddings list."""

from __future__ import annotations

from typing import Any

from agentgateway.llm.errors import LlmError
from agentgateway.llm.tokens import COUNTER
from agentgateway.llm.usage import MAX_TOKENS, token_count

Json = dict[str, Any]


def _inputs(body: Json, provider: str) -> list[str]:
    value = body.get("input")
    inputs = [value] if isinstance(value, str) else value
    if not isinstance(inputs, list) or not inputs or not all(isinstance(v, str) for v in inputs):
        raise LlmError(400, f"{provider} embeddings take text input (a string or a list of strings)")
    return inputs


def embed_request(kind: str, model: str, body: Json) -> Json:
    """The provider's request body for an OpenAI embeddings request (``kind``: the provider kind)."""
    dims = body.get("dimensions")
    if kind == "gemini":
        name = model if "/" in model else f"models/{model}"
        reqs: list[Json] = []
        for text in _inputs(body, "Gemini"):
            req: Json = {"model": name, "content": {"parts": [{"text": text}]}}
            if dims:
                req["outputDimensionality"] = dims
            reqs.append(req)
        return {"requests": reqs}
    if kind == "vertex":
        out: Json = {"instances": [{"content": text} for text in _inputs(body, "Vertex AI")]}
        if dims:
            out["parameters"] = {"outputDimensionality": dims}
        return out
    if kind == "bedrock":
        inputs = _inputs(body, "Bedrock")
        if model.startswith("cohere.") or ".cohere." in model:
            return {"texts": inputs, "input_type": "search_document"}
        if "titan-embed" in model:
            if len(inputs) != 1:
                raise LlmError(400, "Titan embedding models take one input per request")
            titan: Json = {"inputText": inputs[0]}
            if dims:
                titan["dimensions"] = dims
            return titan
        raise LlmError(400, f"embeddings through Bedrock are supported for Titan and Cohere models, not {model!r}")
    raise LlmError(400, f"embeddings are not supported for {kind} providers")


def embed_response(kind: str, model: str, data: Json, request: Json) -> Json:
    """An OpenAI embeddings list from the provider's answer; usage from the provider when it
    reports it, else the gateway's estimate."""
    tokens: int | None = None
    vectors: list[Any]
    if kind == "gemini":
        vectors = [e.get("values", []) for e in data.get("embeddings") or []]
    elif kind == "vertex":
        preds = [p.get("embeddings") or {} for p in data.get("predictions") or []]
        vectors = [p.get("values", []) for p in preds]
        counts = [(p.get("statistics") or {}).get("token_count") for p in preds]
        numbers = [token_count(c) for c in counts if isinstance(c, (int, float))]
        if numbers and len(numbers) == len(counts):
            tokens = min(sum(numbers), MAX_TOKENS)
    elif "embedding" in data:  # Titan
        vectors = [data["embedding"]]
        if isinstance(data.get("inputTextTokenCount"), int):
            tokens = token_count(data["inputTextTokenCount"])
    else:  # Cohere: a list of vectors, or {"float": [...]} by embedding type
        raw = data.get("embeddings")
        vectors = raw.get("float", []) if isinstance(raw, dict) else list(raw or [])
    if tokens is None:
        tokens = sum(COUNTER.count(t) for t in _inputs(request, kind))
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
