"""JSON-lines files read in batches (pipeline.inputs.event_files): a file on disk is cut into
runs of lines by where they are (LineRange), read where they are decoded; every other stream is
read here (LineBatch). Both give exactly the messages, batches and line numbers that iterating
the file gives."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import threading
from itertools import islice
from pathlib import Path

import pytest

from pipeline.domain.decode import RawMessage
from pipeline.inputs.event_files import DamagedFile, FileChanged, LineBatch, LineRange, json_lines, line_ranges

# Blank lines, a lone CR inside a line, CRLF, a line longer than the read block, and no newline
# at the end: every way a line can end.
AWKWARD = b"".join([b'{"a":1}\n', b"\n", b"x\ry\n", b'{"b":2}\r\n', b"z" * 50 + b"\n", b"\r\n", b"last"])


def _messages(batches: list[LineBatch | LineRange]) -> list[list[tuple[bytes, str, str]]]:
    return [[(m.body, m.source, m.position) for m in batch.messages()] for batch in batches]


def _by_islice(data: bytes, size: int) -> list[tuple[int, int, int]]:
    """What the ranges must be: the runs of `size` lines a file object's iteration gives."""
    stream, runs, offset = io.BytesIO(data), [], 0
    while lines := list(islice(stream, size)):
        runs.append((offset, sum(map(len, lines)), len(lines)))
        offset += runs[-1][1]
    return runs


@pytest.mark.parametrize("ending", [b"", b"\n", b"\r\n", b"\n\n"])
@pytest.mark.parametrize("size", [1, 2, 3, 7, 100])
@pytest.mark.parametrize("block", [1, 5, 16, 4096])
def test_the_ranges_are_the_runs_of_lines_iteration_gives(ending: bytes, size: int, block: int) -> None:
    data = AWKWARD + ending
    assert list(line_ranges(io.BytesIO(data), size, block)) == _by_islice(data, size)


def test_an_empty_file_has_no_ranges() -> None:
    assert list(line_ranges(io.BytesIO(b""), 3, 4)) == []


def test_a_file_on_disk_gives_ranges_with_the_messages_of_its_lines(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "month.jsonl").write_bytes(AWKWARD)
    monkeypatch.chdir(tmp_path)
    batches = list(json_lines("month.jsonl").batches(3))
    assert all(isinstance(batch, LineRange) for batch in batches)
    assert [batch.lines for batch in batches if isinstance(batch, LineRange)] == [3, 3, 1]
    moved = [pickle.loads(pickle.dumps(batch)) for batch in batches]  # as a worker gets them
    monkeypatch.chdir("/")  # a worker elsewhere still finds the file
    assert _messages(moved) == [
        [(b'{"a":1}', "month.jsonl", "line 1"), (b"", "month.jsonl", "line 2"), (b"x\ry", "month.jsonl", "line 3")],
        [(b'{"b":2}', "month.jsonl", "line 4"), (b"z" * 50, "month.jsonl", "line 5"), (b"", "month.jsonl", "line 6")],
        [(b"last", "month.jsonl", "line 7")],
    ]
    iterated: list[RawMessage] = list(json_lines(str(tmp_path / "month.jsonl")))
    assert [(m.body, m.position) for m in iterated] == [(b, p) for batch in _messages(moved) for b, _, p in batch]


def test_a_pipe_is_read_here_in_batches_of_lines(tmp_path: Path) -> None:
    fifo = tmp_path / "events.pipe"
    os.mkfifo(fifo)
    writer = threading.Thread(target=fifo.write_bytes, args=(AWKWARD,))
    writer.start()
    try:
        batches = list(json_lines(str(fifo)).batches(4))
    finally:
        writer.join()
    assert all(isinstance(batch, LineBatch) for batch in batches)
    assert [[m.position for m in batch.messages()] for batch in batches] == [
        ["line 1", "line 2", "line 3", "line 4"], ["line 5", "line 6", "line 7"]]


def test_a_file_that_changed_before_its_lines_were_read_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "month.jsonl"
    path.write_bytes(b"one\ntwo\nthree\nfour\n")
    first, second = json_lines(str(path)).batches(2)
    path.write_bytes(b"one\ntwo\nthree\nfour\n".replace(b"three\nfour\n", b"t\nhree\nfou\n"))  # same size, 3 lines
    assert [m.body for m in first.messages()] == [b"one", b"two"]
    with pytest.raises(FileChanged, match=r"month.jsonl changed while it was read \(lines 3-4 .* ingest it again"):
        second.messages()
    path.write_bytes(b"one\n")  # cut short
    with pytest.raises(FileChanged, match="lines 1-2"):
        first.messages()
    error = pickle.loads(pickle.dumps(FileChanged("x changed")))  # how it leaves a worker process
    assert isinstance(error, FileChanged) and str(error) == "x changed"


def test_a_gzip_file_is_read_decompressed_whatever_its_name(tmp_path: Path) -> None:
    plain, packed = tmp_path / "month.jsonl", tmp_path / "month.data"
    plain.write_bytes(AWKWARD)
    packed.write_bytes(gzip.compress(AWKWARD))
    batches = list(json_lines(str(packed)).batches(3))
    assert all(isinstance(batch, LineBatch) for batch in batches)  # read here: a range of a gzip file means nothing
    positions = [[(body, position) for body, _, position in batch] for batch in _messages(batches)]
    assert positions == [[(body, position) for body, _, position in batch]
                         for batch in _messages(list(json_lines(str(plain)).batches(3)))]
    assert positions[0][2] == (b"x\ry", "line 3")
    assert [m.body for m in json_lines(str(packed))][-1] == b"last"


def test_a_gzip_file_cut_short_is_one_clear_error(tmp_path: Path) -> None:
    lines = b"".join(b'{"n":%d}\n' % n for n in range(50_000))
    packed = tmp_path / "month.jsonl.gz"
    packed.write_bytes(gzip.compress(lines)[:60_000])
    with pytest.raises(DamagedFile, match=r"month.jsonl.gz: gzip data damaged or cut short after line \d+ .* again"):
        list(json_lines(str(packed)).batches(1000))
