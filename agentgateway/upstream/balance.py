"""Weighted choice among a route's backends."""

from __future__ import annotations

import bisect
import random
from typing import Generic, TypeVar

T = TypeVar("T")


class WeightedChoice(Generic[T]):
    """Picks an item with probability weight/sum(weights); zero-weight items are never picked.
    Cumulative weights are computed once, so a pick is one random draw and one bisect."""

    __slots__ = ("_items", "_cumulative", "_total", "_single")

    def __init__(self, items: list[tuple[T, int]]) -> None:
        live = [(item, w) for item, w in items if w > 0]
        self._items = [item for item, _ in live]
        self._cumulative: list[int] = []
        total = 0
        for _, w in live:
            total += w
            self._cumulative.append(total)
        self._total = total
        self._single = self._items[0] if len(self._items) == 1 else None

    def __len__(self) -> int:
        return len(self._items)

    @property
    def items(self) -> list[T]:
        return self._items

    def pick(self) -> T | None:
        if self._single is not None:
            return self._single
        if not self._items:
            return None
        return self._items[bisect.bisect_right(self._cumulative, random.random() * self._total)]
