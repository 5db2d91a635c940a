"""pipeline.lake.arrow_text: a text column's values as one run of bytes, whatever the layout
(string, large_string, string_view), the chunking and the slicing."""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from pipeline.lake.arrow_text import joined_bytes

LINES = ["a,b\n", "ünï,\"q\"\n", "", "last\n"]
JOINED = "".join(LINES).encode()


@pytest.mark.parametrize("kind", [pa.string(), pa.large_string(), pa.string_view()])
def test_every_layout_gives_the_lines_bytes(kind: pa.DataType) -> None:
    assert joined_bytes(pa.array(LINES, kind)) == JOINED


def test_chunks_and_slices_give_only_their_own_values() -> None:
    whole = pa.array(["skipped\n", *LINES, "after\n"])
    sliced = whole.slice(1, len(LINES))
    assert joined_bytes(sliced) == JOINED
    assert joined_bytes(pa.chunked_array([sliced.slice(0, 2), sliced.slice(2)])) == JOINED
    assert joined_bytes(pa.chunked_array([], pa.string())) == b""
    assert joined_bytes(pa.array([], pa.string())) == b""


def test_duckdbs_own_result_column() -> None:
    connection = duckdb.connect()
    table = connection.sql("SELECT 'line ' || i || chr(10) AS line FROM range(100000) t(i) ORDER BY i").to_arrow_table()
    assert joined_bytes(table.column("line")) == "".join(f"line {i}\n" for i in range(100_000)).encode()


def test_a_null_line_is_refused() -> None:
    with pytest.raises(ValueError, match="1 NULL line"):
        joined_bytes(pa.array(["a\n", None]))
