"""``python -m benchmarks --help`` and every scenario's ``--help`` render: argparse %-formats
help texts, and a scenario summary with a bare ``%`` ("at 100% and 1% sampling") once made
``--help`` fail with a TypeError."""

from __future__ import annotations

import argparse

from benchmarks.__main__ import build_parser


def test_the_help_of_the_suite_and_of_every_scenario_renders() -> None:
    parser = build_parser()
    text = parser.format_help()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert commands.choices
    for name, scenario in commands.choices.items():
        assert name in text
        assert scenario.format_help()
    assert "100% and 1%" in text
