"""The LLM gateway: one OpenAI- and Anthropic-compatible front door for many providers.

Client APIs (Chat Completions, Messages, Responses, embeddings, models) are served by
``exchange.LlmExchange``; ``config`` compiles the ``llm:`` shortcut and ``ai`` backends; the
translation between wire formats lives in one module per format; ``guards``, ``tokens`` and
``accounting`` hold prompt guards, token estimates and the token-accounting hook.
"""
