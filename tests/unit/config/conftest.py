"""The schema walk's tally at the end of the run (test_schema_walk.py leaves it in the stash)."""

from __future__ import annotations

import pytest

from tests.support.schema_walk import TALLY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    line = config.stash.get(TALLY, None)
    if line is not None:
        terminalreporter.write_line(line)
