"""Many short waits, one timer.

A uvloop timer costs ~2 µs to set and cancel, a noticeable share of a request that sets one only
in case it runs long (and almost never does). ``SharedDelay`` runs callbacks after about ``delay``
with one timer for all of them: a callback added now runs between ``delay`` and twice ``delay``
from now, unless withdrawn first (a dict insert and delete).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class SharedDelay:
    """Callbacks run ``delay`` to ``2 * delay`` seconds after being added, unless withdrawn."""

    __slots__ = ("loop", "delay", "_filling", "_due", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        self.loop = loop
        self.delay = delay
        # Added during the current period (run at the end of the next one), and added during
        # the previous period (run when the timer fires next): never sooner than ``delay``.
        self._filling: dict[object, Callable[[], object]] = {}
        self._due: dict[object, Callable[[], object]] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, key: object, callback: Callable[[], object]) -> None:
        self._filling[key] = callback
        if self._timer is None:
            self._timer = self.loop.call_later(self.delay, self._fire)

    def withdraw(self, key: object) -> None:
        if self._filling.pop(key, None) is None:
            self._due.pop(key, None)

    def _fire(self) -> None:
        due, self._due, self._filling = self._due, self._filling, {}
        self._timer = self.loop.call_later(self.delay, self._fire) if self._due else None
        for callback in due.values():
            callback()
