"""What the gateway learns about one A2A exchange, from the request and from what the agent answers.

Both protocol versions are read: 0.3 (JSON-RPC methods ``message/send`` …, results carrying a
``kind``, states ``working``) and 1.0 (methods ``SendMessage`` …, results wrapped in ``task`` /
``message`` / ``statusUpdate`` / ``artifactUpdate``, states ``TASK_STATE_WORKING``). Methods are
recorded as the client named them (REST calls get the canonical 1.0 name of their operation);
task states are recorded in one vocabulary for both versions: the 0.3 spelling
(``TASK_STATE_INPUT_REQUIRED`` and ``input-required`` are both ``input-required``).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote_from_bytes, unquote_to_bytes

JSONRPC, REST = "JSONRPC", "HTTP+JSON"
# The extended card's JSON-RPC methods (1.0, 0.3), compared lower-cased.
EXTENDED_CARD_METHODS = frozenset(("getextendedagentcard", "agent/getauthenticatedextendedcard"))
# Card paths: the well-known card (0.3 on, and the older name); the extended card over HTTP+JSON
# (1.0 ``/extendedAgentCard``, 0.3 ``/v1/card``, 0.2 ``/agent/authenticatedExtendedCard``). They
# are matched on the path as an agent's router sees it (``routed_path``), in any case and with or
# without a trailing slash: a spelling the gateway did not take for a card would reach the
# agent's card all the same (case-insensitive routers, percent-decoding frameworks) and come
# back un-rewritten.
_CARD_PATH = re.compile(rb"/\.well-known/agent(?:-card)?\.json/?$", re.I)
_EXTENDED_CARD_PATH = re.compile(rb"/(?:extendedAgentCard|v1/card|agent/authenticatedExtendedCard)/?$", re.I)
_PATH_PARAMS = re.compile(rb";[^/]*")
# What stays as written when a decoded base path is quoted again for the card's URLs.
_PATH_SAFE = "/!$&'()*+,=:@-._~"

# The HTTP+JSON binding: an optional tenant or mount prefix, then the operation. 0.3 put the
# operations under /v1 (and named the extended card /v1/card); 1.0 dropped both. Matched, as the
# card paths are, on the path as an agent's router sees it and in any case: a spelling the gateway
# did not take for an operation (``tasks/t-1%3Acancel``, ``TASKS/t-1:CANCEL``, ``tasks/t-1:cancel/``)
# was read as a JSON-RPC call whose method the body names, while the agent routed it to CancelTask.
_REST = re.compile(
    rb"""(?:^|/)(?:
        message:(?P<send>send|stream)
      | tasks(?:/(?P<task>[^/]+?)(?::(?P<verb>cancel|subscribe)|/pushNotificationConfigs(?P<configs>/[^/]+)?)?)?
      | (?P<card>extendedAgentCard|(?<=v1/)card)
    )$""",
    re.X | re.I,
)


# ProtoJSON spellings that differ from 0.3's JSON names (0.3's own proto said CANCELLED).
_STATE_ALIASES = {"cancelled": "canceled", "unspecified": "unknown"}


def normalize_state(state: str) -> str:
    """``TASK_STATE_INPUT_REQUIRED`` → ``input-required``; 0.3 names are kept."""
    if state.startswith("TASK_STATE_"):
        name = state[11:].lower().replace("_", "-")
        return _STATE_ALIASES.get(name, name)
    return state


def rest_operation(method: bytes, path: bytes) -> tuple[str, str] | None:
    """(canonical method name, task id) of an HTTP+JSON call, or None for other requests. The
    path is read as the agent's router reads it (``routed_path``, any case); the task id is the
    decoded one the agent acts on."""
    # A trailing slash is the same route to many routers (Express's default, agentgateway's
    # segment split); to one that redirects (Starlette), the client's second request is read
    # again here.
    m = _REST.search(routed_path(path).removesuffix(b"/"))
    if m is None:
        return None
    task = (m.group("task") or b"").decode("utf-8", "replace")
    if m.group("send") is not None:
        if method != b"POST":
            return None
        return ("SendMessage" if m.group("send").lower() == b"send" else "SendStreamingMessage"), ""
    if m.group("card") is not None:
        return ("GetExtendedAgentCard", "") if method == b"GET" else None
    verb = m.group("verb")
    if verb is not None:
        if verb.lower() == b"cancel":
            return ("CancelTask", task) if method == b"POST" else None
        return ("SubscribeToTask", task) if method in (b"POST", b"GET") else None
    if m.group("configs") is not None:
        if method == b"GET":
            return "GetTaskPushNotificationConfig", task
        return ("DeleteTaskPushNotificationConfig", task) if method == b"DELETE" else None
    if task and m.group(0).lower().endswith(b"/pushnotificationconfigs"):
        if method == b"POST":
            return "CreateTaskPushNotificationConfig", task
        return ("ListTaskPushNotificationConfigs", task) if method == b"GET" else None
    if method != b"GET":
        return None
    return ("GetTask", task) if task else ("ListTasks", "")


def routed_path(path: bytes) -> bytes:
    """The request path as an agent's router matches it: percent-decoded, ``;`` parameters
    dropped from its segments."""
    if b"%" in path:
        path = unquote_to_bytes(path)
    if b";" in path:
        path = _PATH_PARAMS.sub(b"", path)
    return path


def card_base(path: bytes, binding: str) -> str | None:
    """The base path of a card request, as it goes in the card's URLs: the path less the
    well-known suffix (``binding`` "": the agent card) or the extended card's HTTP+JSON operation
    (``REST``); for a JSON-RPC call, the endpoint's path less a trailing slash. None when the
    path is not such a request."""
    plain = routed_path(path)
    if binding == JSONRPC:
        base = plain.removesuffix(b"/")
    else:
        found = (_EXTENDED_CARD_PATH if binding == REST else _CARD_PATH).search(plain)
        if found is None:
            return None
        base = plain[: found.start()]
    return quote_from_bytes(base, _PATH_SAFE)


class CardRequest:
    """An agent card asked for through the gateway (the well-known card, or the extended card of
    either binding): what its rewrite needs from the request. The scheme and authority are the
    ones the client used; ``request_id`` is the JSON-RPC call's raw id, for the gateway's own
    error answer."""

    __slots__ = ("client_base", "scheme", "authority", "if_none_match", "request_id", "forwarded")

    def __init__(
        self,
        client_base: str,
        scheme: str,
        authority: str,
        if_none_match: bytes | None,
        request_id: bytes | None = None,
        forwarded: bool = False,
    ) -> None:
        self.client_base = client_base
        self.scheme = scheme
        self.authority = authority
        self.if_none_match = if_none_match
        self.request_id = request_id
        # The request came with X-Forwarded-Proto (kept only from a trusted proxy): the card's
        # URLs depend on it, which its answer tells caches (Vary).
        self.forwarded = forwarded


def _str(node: dict[str, Any], key: str) -> str:
    value = node.get(key)
    return value if isinstance(value, str) else ""


# The proto field names of the ids the facts read: A2A 1.0 is ProtoJSON, whose parsers take a
# field by its JSON name or its proto name (the SDK's ParseDict, Go's protojson, …), and the
# 0.3 SDK's models take both too. So ``message.task_id`` is the task an agent acts on, as
# ``message.taskId`` is; a request naming both is refused (``ID_SPELLINGS``).
ID_SPELLINGS = {"taskId": "task_id", "contextId": "context_id", "messageId": "message_id"}


def _id(node: dict[str, Any], key: str) -> str:
    """An id named by its JSON name or its proto field name."""
    return _str(node, key) or _str(node, ID_SPELLINGS[key])


class A2aFacts:
    """One request's A2A facts: set from the request by the ``a2a`` policy, completed from the
    response (JSON body or each stream event) by the response observer; read by the access log,
    the metrics and CEL (``a2a.*``)."""

    __slots__ = (
        "binding",
        "version",
        "method",
        "card",
        "extended_card",
        "task_id",
        "context_id",
        "message_id",
        "task_state",
        "result_kind",
        "error_code",
        "events",
    )

    def __init__(self, binding: str, version: str) -> None:
        self.binding = binding
        self.version = version
        self.method = ""
        # A fetch of the well-known agent card (``a2a.card``), or an extended card call
        # (``GetExtendedAgentCard``, ``agent/getAuthenticatedExtendedCard``, ``GET /v1/card``):
        # both answers are rewritten.
        self.card: CardRequest | None = None
        self.extended_card: CardRequest | None = None
        self.task_id = ""
        self.context_id = ""
        self.message_id = ""
        self.task_state = ""
        self.result_kind = ""
        self.error_code = ""
        self.events = 0  # stream events seen

    # ------------------------------------------------------------------ request

    def observe_params(self, params: object, path_task: str = "") -> str | None:
        """Ids named by a request's params (JSON-RPC ``params`` or a REST body), both versions:
        ``message.{taskId,contextId,messageId}``, a task's ``id`` (get, cancel, subscribe) or
        ``taskId`` (push-notification configs); each id also by its proto name (``task_id``).

        ``path_task`` is the task an HTTP+JSON path names (``/tasks/{id}:cancel``): the one the
        agent acts on (the SDK takes it from the path, whatever the body says), so the body does
        not change ``task_id``. A body that names another task (``taskId``) is returned, for the
        policy to refuse; else None."""
        if not isinstance(params, dict):
            return None
        message = params.get("message")
        if isinstance(message, dict):
            named = _id(message, "taskId")
            self.context_id = _id(message, "contextId")
            self.message_id = _id(message, "messageId")
        else:
            named = _id(params, "taskId")
            if not path_task:
                named = named or _str(params, "id")
        if path_task:
            return named if named and named != path_task else None
        if named:
            self.task_id = named
        return None

    def cel(self) -> dict[str, object]:
        """The ``a2a`` CEL variable: only what is known (``has(a2a.task.id)`` tells)."""
        out: dict[str, object] = {"method": self.method, "binding": self.binding, "version": self.version}
        if self.card is not None:
            out["card"] = True
        if self.task_id:
            out["task"] = {"id": self.task_id}
        if self.context_id:
            out["context"] = {"id": self.context_id}
        if self.message_id:
            out["message"] = {"id": self.message_id}
        return out

    # ------------------------------------------------------------------ response

    def observe_result(self, result: object) -> None:
        """A result (JSON-RPC ``result``, a REST body or stream event) of either version."""
        if not isinstance(result, dict):
            return
        kind = result.get("kind")
        node: dict[str, Any] = result
        if not isinstance(kind, str):
            for key, name in (
                ("task", "task"),
                ("statusUpdate", "status-update"),
                ("artifactUpdate", "artifact-update"),
                ("message", "message"),
            ):
                inner = result.get(key)
                if isinstance(inner, dict):
                    node, kind = inner, name
                    break
            else:
                if not (isinstance(result.get("status"), dict) and "id" in result):
                    return
                kind = "task"  # a bare 1.0 Task (GetTask, CancelTask)
        self.result_kind = kind
        task_id = _str(node, "id") if kind == "task" else _str(node, "taskId")
        if task_id:
            self.task_id = task_id
        context_id = _str(node, "contextId")
        if context_id:
            self.context_id = context_id
        status = node.get("status")
        if isinstance(status, dict):
            state = status.get("state")
            if isinstance(state, str) and state:
                self.task_state = normalize_state(state)

    def observe_rest_error(self, body: object, status: int) -> None:
        """A REST error body (``{"error": {"code", "status", "details": [ErrorInfo]}}``): the
        ErrorInfo ``reason`` (``TASK_NOT_FOUND``), else the status name, else the HTTP status."""
        error = body.get("error") if isinstance(body, dict) else None
        code = ""
        if isinstance(error, dict):
            details = error.get("details")
            if isinstance(details, list):
                for item in details:
                    if isinstance(item, dict) and isinstance(item.get("reason"), str):
                        code = item["reason"]
                        break
            if not code and isinstance(error.get("status"), str):
                code = error["status"]
        self.error_code = code or str(status)

    def outcome_code(self, status: int) -> str:
        """The error code (JSON-RPC code, REST reason), else the HTTP status of a failure."""
        if self.error_code:
            return self.error_code
        return str(status) if status >= 400 else ""

    def log_fields(self, fields: dict[str, object], status: int) -> None:
        """The access-log fields (agentgateway's names where it has them)."""
        if self.method:
            fields["a2a.method"] = self.method
        elif self.card is not None:
            fields["a2a.card"] = "true"
        if self.task_id:
            fields["a2a.task.id"] = self.task_id
        if self.context_id:
            fields["a2a.context.id"] = self.context_id
        if self.task_state:
            fields["a2a.task.state"] = self.task_state
        if self.result_kind:
            fields["a2a.result.kind"] = self.result_kind
        code = self.outcome_code(status)
        if code:
            fields["a2a.response.error_code"] = code
        if self.events:
            fields["a2a.stream.events"] = self.events

    def span_fields(self, fields: dict[str, object], status: int) -> None:
        """The server span carries every access-log field: no other span of an A2A call has them
        (its upstream call is traced as a plain HTTP client span)."""
        self.log_fields(fields, status)
