"""Weighted choice among a route's backends."""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class WeightedChoice(Generic[T]):
    """Picks an item with probability weight/sum(weights); zero-weight items are never picked.
    Cumulative weights are computed once, so a pick is one random draw and one bisect."""

    __slots__ = ("_items", "_weights", "_cumulative", "_total", "_single")

    def __init__(self, items: list[tuple[T, int]]) -> None:
        live = [(item, w) for item, w in items if w > 0]
        self._items = [item for item, _ in live]
        self._weights = [w for _, w in live]
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

    def pick_where(self, usable: Callable[[T], bool]) -> T | None:
        """A weighted pick among the items ``usable`` accepts (None if it accepts none)."""
        live = [(item, w) for item, w in zip(self._items, self._weights, strict=True) if usable(item)]
        if not live:
            return None
        point = random.random() * sum(w for _, w in live)
        for item, w in live:
            point -= w
            if point < 0:
                return item
        return live[-1][0]
