"""Usage events and LLM-log envelopes from files: JSON lines (or stdin), one message per line,
each with where it came from (file and line), so that a rejection names its line."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import msgspec

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


def llm_log_messages(name: str) -> Iterator[RawMessage]:
    """The envelopes of a file (`-`: stdin): a file that is one JSON document (an envelope, an array
    of records or rows, one record) is one message, anything else is read as JSON lines, one
    document per line."""
    data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    source = "stdin" if name == "-" else name
    try:
        document = msgspec.json.decode(data)
    except msgspec.DecodeError:
        document = None
    if isinstance(document, dict | list):
        yield RawMessage(data, source, "whole file")
        return
    for number, line in enumerate(data.splitlines(), start=1):
        if line.strip():
            yield RawMessage(line, source, f"line {number}")
