"""Usage events and LLM-log envelopes from files: JSON lines (or stdin), one message per line,
each with where it came from (file and line), so that a rejection names its line."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import BinaryIO

import msgspec

from pipeline.domain.decode import RawMessage

STDIN = "-"


def json_lines(name: str) -> JsonLines:
    """Every line is one message (blank lines too: they are dead-lettered as empty, so the
    counts always add up to the lines read). `-` reads standard input."""
    return JsonLines(name)


@dataclass(frozen=True, slots=True)
class LineBatch:
    """Consecutive lines of a file as read, the first one numbered `first_line`: what a process
    that decodes ahead is sent instead of messages (a list of bytes pickles in C)."""

    source: str
    first_line: int
    lines: list[bytes]

    def messages(self) -> list[RawMessage]:
        """The lines as messages, each naming its line, as iterating the file gives them."""
        return [RawMessage(line.rstrip(b"\r\n"), self.source, f"line {number}")
                for number, line in enumerate(self.lines, start=self.first_line)]


@dataclass(frozen=True, slots=True)
class JsonLines:
    """The messages of a JSON-lines file (or stdin): iterate it, or read it in batches of lines."""

    name: str

    def __iter__(self) -> Iterator[RawMessage]:
        for batch in self.batches(1024):
            yield from batch.messages()

    def batches(self, size: int) -> Iterator[LineBatch]:
        """The lines in batches of `size` (the last one shorter): the messages `iter` gives, in
        the same order and batches as `pipeline.stages.ingest.batches` cuts them."""
        with self._open() as (file, source):
            first = 1
            while lines := list(islice(file, size)):
                yield LineBatch(source, first, lines)
                first += len(lines)

    @contextmanager
    def _open(self) -> Iterator[tuple[BinaryIO, str]]:
        if self.name == STDIN:
            yield sys.stdin.buffer, "stdin"
            return
        with Path(self.name).open("rb") as file:
            yield file, self.name


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
