"""Usage events and LLM-log envelopes from files: JSON lines (or stdin), one message per line,
each with where it came from (file and line), so that a rejection names its line.

A gzip-compressed file (or stdin) is read decompressed, whatever its name: it is recognised by
its first bytes. Its line numbers are those of the decompressed text."""

from __future__ import annotations

import gzip
import io
import sys
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO, cast

import msgspec

from pipeline.domain.decode import RawMessage
from pipeline.domain.errors import UserError

STDIN = "-"
READ_BLOCK = 4 << 20  # bytes read at a time to find where the lines of a batch end
GZIP_MAGIC = b"\x1f\x8b"


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
        return _messages(self.lines, self.source, self.first_line)


@dataclass(frozen=True, slots=True)
class LineRange:
    """Consecutive lines of a file on disk, by where they are (`lines` lines from byte `offset`,
    `length` bytes), the first one numbered `first_line`: what a process that decodes ahead is
    sent for a file it can read itself, so the lines are neither split nor copied here."""

    source: str  # the file as named (what an origin says)
    path: str  # the file as opened, absolute (a worker may run elsewhere)
    first_line: int
    offset: int
    length: int
    lines: int

    def messages(self) -> list[RawMessage]:
        """The lines as messages, each naming its line, as iterating the file gives them."""
        with Path(self.path).open("rb") as file:
            file.seek(self.offset)
            data = file.read(self.length)
        lines = data.split(b"\n")
        if data.endswith(b"\n"):
            lines.pop()  # what follows the last newline is no line
        if len(data) != self.length or len(lines) != self.lines:
            raise FileChanged(f"{self.source} changed while it was read (lines {self.first_line}-"
                              f"{self.first_line + self.lines - 1} are not what they were): ingest it again once "
                              "nothing writes to it; what was ingested stays, once")
        return _messages(lines, self.source, self.first_line)


def _messages(lines: list[bytes], source: str, first_line: int) -> list[RawMessage]:
    """Lines as messages, each naming its line (its end of line, LF or CRLF, left out)."""
    return [RawMessage(line.rstrip(b"\r\n"), source, f"line {number}")
            for number, line in enumerate(lines, start=first_line)]


class FileChanged(UserError):
    """A file's lines moved between finding them and reading them: something wrote to it. Seen
    when the bytes of a run or its count of lines differ; a rewrite that keeps both is not."""


@dataclass(frozen=True, slots=True)
class JsonLines:
    """The messages of a JSON-lines file (or stdin): iterate it, or read it in batches of lines."""

    name: str

    def __iter__(self) -> Iterator[RawMessage]:
        for batch in self._line_batches(1024):
            yield from batch.messages()

    def batches(self, size: int) -> Iterator[LineBatch | LineRange]:
        """The lines in batches of `size` (the last one shorter): the messages `iter` gives, in
        the same order and batches as `pipeline.stages.ingest.batches` cuts them. A file on disk
        gives where its lines are (LineRange), read where they are decoded; stdin, a pipe or
        any other stream gives the lines read here (LineBatch)."""
        path = str(Path(self.name).absolute())
        if self.name == STDIN or not Path(path).is_file() or _gzipped(path):
            yield from self._line_batches(size)
            return
        with Path(path).open("rb") as file:
            first = 1
            for offset, length, lines in line_ranges(file, size):
                yield LineRange(self.name, path, first, offset, length, lines)
                first += lines

    def _line_batches(self, size: int) -> Iterator[LineBatch]:
        with self._open() as (file, source):
            first = 1
            while lines := _read_lines(file, size, source, first):
                yield LineBatch(source, first, lines)
                first += len(lines)

    @contextmanager
    def _open(self) -> Iterator[tuple[BinaryIO, str]]:
        with (_stdin() if self.name == STDIN else Path(self.name).open("rb")) as raw:
            source = "stdin" if self.name == STDIN else self.name
            if _gzip_header(raw.peek(len(GZIP_MAGIC))):
                with gzip.GzipFile(fileobj=raw, mode="rb") as unpacked:
                    yield cast(BinaryIO, unpacked), source
            else:
                yield cast(BinaryIO, raw), source


class DamagedFile(UserError):
    """A compressed file that cannot be read to its end."""


@contextmanager
def _stdin() -> Iterator[io.BufferedReader[Any]]:
    """Standard input, able to peek (not closed: it is the process's)."""
    stream = sys.stdin.buffer
    if isinstance(stream, io.BufferedReader):
        yield stream
        return
    wrapper = io.BufferedReader(cast(io.RawIOBase, stream))  # a stream replaced by a test runner
    try:
        yield wrapper
    finally:
        wrapper.detach()  # leaves the stream open


def _read_lines(file: BinaryIO, size: int, source: str, first: int) -> list[bytes]:
    try:
        return list(islice(file, size))
    except (EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise DamagedFile(f"{source}: gzip data damaged or cut short after line {first - 1} ({error}): "
                          "what was read before is ingested; fix or replace the file and ingest it again") from None


def _gzipped(path: str) -> bool:
    with Path(path).open("rb") as file:
        return _gzip_header(file.read(len(GZIP_MAGIC)))


def _gzip_header(start: bytes) -> bool:
    """Whether a stream beginning with `start` is gzip (`peek` may give more bytes than asked)."""
    return start[:len(GZIP_MAGIC)] == GZIP_MAGIC


def line_ranges(file: BinaryIO, size: int, block: int = READ_BLOCK) -> Iterator[tuple[int, int, int]]:
    """(offset, length, lines) of each run of `size` lines of the file from where it is (the last
    run shorter), lines ending at a newline or at the end of the file. Only newlines are looked
    for, a block at a time: nothing is kept, however long a line is."""
    start = offset = count = 0  # where the run being counted begins; where the block read begins
    ends_a_line = True  # the last byte read is a newline (or nothing was read)
    while data := file.read(block):
        at = 0
        while (found := data.find(b"\n", at)) >= 0:
            count, at = count + 1, found + 1
            if count == size:
                yield start, offset + at - start, count
                start, count = offset + at, 0
        offset += len(data)
        ends_a_line = data.endswith(b"\n")
    if offset > start:
        yield start, offset - start, count + (0 if ends_a_line else 1)


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
