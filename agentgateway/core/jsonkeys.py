"""JSON member names that a peer may read as another name the gateway decided on.

Go's ``encoding/json`` (and the servers built on it: older MCP Go SDKs, mcp-go, Ollama, …) matches
member names to its fields case-insensitively, also folding ``ſ`` (U+017F) to ``s`` and ``K``
(U+212A, the Kelvin sign) to ``k``; of two matches, the last one wins (CVE-2026-27896). The gateway
reads names exactly. So ``{"name": "allowed", "NAME": "hidden"}`` is ``allowed`` to a policy and
``hidden`` to such a server, and ``{"Messages": [...]}`` is a prompt no guard read. A message the
gateway forwards must have neither: two names that fold alike, or a name that folds like one the
gateway reads without being it. The Go SDK's first fix (segmentio/encoding before 0.5.4) read a
name with U+0000 appended as the name itself (GHSA-q382-vc8q-7jhj): a name with a NUL in it is
refused too (no client of these protocols sends one).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


class FoldedNames(dict[str, str]):
    """Names the gateway reads, by their folded form, and the set of their exact spellings."""

    __slots__ = ("exact",)

    def __init__(self, names: Iterable[str]) -> None:
        spelled = frozenset(names)
        super().__init__((name.casefold(), name) for name in spelled)
        if len(self) != len(spelled):
            raise ValueError("two names the gateway reads fold alike")
        self.exact = spelled


def folded_names(names: Iterable[str]) -> FoldedNames:
    """``names`` (the ones the gateway reads) by their folded form, for ``ambiguous_key``."""
    return FoldedNames(names)


_NONE = FoldedNames(())


def ambiguous_key(obj: Mapping[str, object], read: FoldedNames = _NONE) -> str | None:
    """A member name of ``obj`` that a case-insensitive peer could take for another: one that
    folds like another name of ``obj``, or like a name in ``read`` (``folded_names``) without
    being spelled as it, or one with a NUL in it. None when every name is unambiguous (the common
    case: a short loop).

    ``str.casefold`` folds what Go folds (case, ``ſ``, ``K``) and a little more (``ß`` is ``ss``):
    the extra only refuses names no client of these protocols sends."""
    if obj.keys() <= read.exact:
        # Every name is spelled as one the gateway reads (the common case, one set operation):
        # no NUL, and no two of them fold alike (FoldedNames checked that).
        return None
    seen: set[str] = set()
    for key in obj:
        if "\x00" in key:
            return key
        folded = key.casefold()
        if folded in seen:
            return key
        exact = read.get(folded)
        if exact is not None and exact != key:
            return key
        seen.add(folded)
    return None
