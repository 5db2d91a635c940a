"""Where raw events come from: JSON-lines files (or stdin), one event per line."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from pipeline.domain.decode import RawMessage

STDIN = "-"


def json_lines(name: str) -> Iterator[RawMessage]:
    """Every line is one message (blank lines too: they are dead-lettered as empty, so the
    counts always add up to the lines read). `-` reads standard input."""
    if name == STDIN:
        yield from _lines(sys.stdin.buffer, "stdin")
        return
    with Path(name).open("rb") as file:
        yield from _lines(file, name)


def _lines(file: BinaryIO, source: str) -> Iterator[RawMessage]:
    for number, line in enumerate(file, start=1):
        yield RawMessage(line.rstrip(b"\r\n"), source, f"line {number}")
