"""``SharedDelay``: callbacks run between ``delay`` and twice ``delay`` after being added, never
when withdrawn, and the shared timer stops once nothing waits (real uvloop loop and clock)."""

from __future__ import annotations

import asyncio

import uvloop

from agentgateway.core.timers import SharedDelay

_DELAY = 0.05


def test_callbacks_run_after_the_delay_and_before_twice_it() -> None:
    async def scenario() -> list[float]:
        loop = asyncio.get_running_loop()
        delays = SharedDelay(loop, _DELAY)
        waited: list[float] = []
        for stagger in (0.0, 0.02, 0.04, 0.06):  # added at different points of the periods
            await asyncio.sleep(stagger)
            added = loop.time()
            delays.add(object(), lambda added=added: waited.append(loop.time() - added))
        await asyncio.sleep(4 * _DELAY)
        return waited

    waited = uvloop.run(scenario())
    assert len(waited) == 4
    assert all(_DELAY * 0.9 <= w <= 2 * _DELAY + 0.05 for w in waited), waited


def test_a_withdrawn_callback_never_runs_and_the_timer_stops() -> None:
    async def scenario() -> tuple[list[str], SharedDelay]:
        delays = SharedDelay(asyncio.get_running_loop(), _DELAY)
        ran: list[str] = []
        delays.add("early", lambda: ran.append("early"))
        delays.withdraw("early")  # withdrawn in the period it was added
        delays.add("late", lambda: ran.append("late"))
        await asyncio.sleep(_DELAY * 1.2)
        delays.withdraw("late")  # withdrawn while due at the next firing
        delays.add("kept", lambda: ran.append("kept"))
        await asyncio.sleep(5 * _DELAY)
        return ran, delays

    ran, delays = uvloop.run(scenario())
    assert ran == ["kept"]
    assert delays._timer is None  # nothing waits: no timer left set
