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
    if not pa.types.is_large_string(chunk.type):
        chunk = chunk.cast(pa.large_string())  # string or string_view: one layout to slice
    _, offsets, data = chunk.buffers()
    if data is None or not len(chunk):
        return b""
    first, last = (int.from_bytes(offsets[8 * at:8 * at + 8], "little", signed=True)
                   for at in (chunk.offset, chunk.offset + len(chunk)))
    text: bytes = data[first:last].to_pybytes()
    return text
