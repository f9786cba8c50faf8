"""Summaries over rounds, Markdown tables, and the one section of RESULTS.md a scenario owns."""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

RESULTS_PATH = Path(__file__).resolve().parent / "RESULTS.md"
RESULTS_PREAMBLE = """\
# Benchmark results

Written by `python -m benchmarks <scenario>` (`make bench ARGS="<scenario>"`). Each scenario owns one
`## <scenario>` section below and replaces only that section when it runs. How to run and how to read
the tables: [README.md](README.md).
"""


@dataclass(frozen=True)
class Spread:
    """Median of the rounds, and the lowest and highest round, to show how noisy a figure is."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread | None:
        if not values:
            return None
        return cls(statistics.median(values), min(values), max(values))


DASH = "–"  # a cell without a value


def spread_of(values: Sequence[float]) -> Spread:
    """The spread of a row's rounds (a row always has at least one)."""
    spread = Spread.of(values)
    assert spread is not None, "a row always has at least one round"
    return spread


def range_cell(spread: Spread | None, fmt: str, signed: bool = False) -> str:
    """``median [low…high]``, or the median alone when the rounds print the same."""
    if spread is None:
        return DASH
    fmt = ("+" if signed else "") + fmt
    median = format(spread.median, fmt)
    if format(spread.low, fmt) == format(spread.high, fmt):
        return median
    return f"{median} [{format(spread.low, fmt)}…{format(spread.high, fmt)}]"


def median_cell(spread: Spread | None, fmt: str, signed: bool = False) -> str:
    return DASH if spread is None else format(spread.median, ("+" if signed else "") + fmt)


def percent_cell(spread: Spread | None, pick: str = "median") -> str:
    return DASH if spread is None else f"{getattr(spread, pick) * 100:.0f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], right_align_from: int = 1) -> str:
    """A Markdown table padded to line up in a terminal too."""
    # At least three wide: a delimiter cell needs a dash besides the alignment colon.
    widths = [max(3, *(len(cell) for cell in column)) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.rjust(width) if index >= right_align_from else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * (width - 1) + ":" if index >= right_align_from else "-" * width for index, width in enumerate(widths)]
    return "\n".join([line(header), line(rule), *(line(row) for row in rows)])


_HEADING = re.compile(r"^## (\S+)")
_FENCE = re.compile(r"^\s*(```|~~~)")


def _section_bounds(lines: list[str], scenario: str) -> tuple[int, int] | None:
    """Line range of ``## <scenario>...`` up to the next level-2 heading, skipping fenced code."""
    start: int | None = None
    in_fence = False
    for index, text in enumerate(lines):
        if _FENCE.match(text):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        heading = _HEADING.match(text)
        if heading is None:
            continue
        if start is not None:
            return start, index
        if heading.group(1) == scenario:
            start = index
    return (start, len(lines)) if start is not None else None


def replace_section(document: str, scenario: str, section: str) -> str:
    """``document`` with the scenario's section replaced (or appended); other sections stay as they are."""
    lines = document.splitlines() if document.strip() else RESULTS_PREAMBLE.splitlines()
    new_lines = section.rstrip("\n").splitlines() + [""]
    bounds = _section_bounds(lines, scenario)
    if bounds is None:
        while lines and not lines[-1].strip():
            lines.pop()
        lines += [""] + new_lines
    else:
        start, end = bounds
        lines[start:end] = new_lines
    return "\n".join(lines).rstrip("\n") + "\n"


def write_section(scenario: str, section: str, path: Path = RESULTS_PATH) -> None:
    document = path.read_text() if path.exists() else ""
    path.write_text(replace_section(document, scenario, section))
