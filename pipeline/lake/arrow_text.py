"""A column of text lines made by DuckDB, as the bytes of a file, without a Python string per line."""

from __future__ import annotations

import pyarrow as pa


def joined_bytes(lines: pa.ChunkedArray | pa.Array) -> bytes:
    """The UTF-8 bytes of the values one after the other, nothing between them (each line holds
    its own line end): per chunk, the slice of its data buffer between its first and last
    offsets. A NULL value is refused: it would be a silently missing line."""
    chunks = lines.chunks if isinstance(lines, pa.ChunkedArray) else [lines]
    return b"".join(map(_chunk_bytes, chunks))


def _chunk_bytes(chunk: pa.Array) -> bytes:
    if chunk.null_count:
        raise ValueError(f"{chunk.null_count} NULL line(s) in a text column made into a file")
    if pa.types.is_string(chunk.type):  # what DuckDB gives: 32-bit offsets
        width = 4
    else:  # large_string as it is; string_view cast to it (a cast loads pyarrow.compute: 90 ms)
        chunk = chunk if pa.types.is_large_string(chunk.type) else chunk.cast(pa.large_string())
        width = 8
    _, offsets, data = chunk.buffers()
    if data is None or not len(chunk):
        return b""
    first, last = (int.from_bytes(offsets[width * at:width * (at + 1)], "little", signed=True)
                   for at in (chunk.offset, chunk.offset + len(chunk)))
    text: bytes = data[first:last].to_pybytes()
    return text
