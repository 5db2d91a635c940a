"""pyarrow imports pandas the first time it converts a Python list (`pa.array([...])`,
`pa.scalar(...)`), only to ask whether a value is a pandas object: 0.3 s of every process that
builds Arrow columns from events (each `chargeback ingest`, `replay` and `snapshot`, and each of
their decoding workers), where pandas is not otherwise used.

`skip_pandas_probe` has pyarrow ask once while `import pandas` is refused, so that it records that
there is no pandas to look for. pyarrow still imports pandas when pandas is asked for
(`Table.to_pandas`), but it no longer recognises pandas objects handed to it (a Series is taken
for a plain sequence, its NaN for a number, a Categorical for strings). So it is only for
processes of ours that never hand pyarrow a pandas object: the CLI's commands and the decoding
workers. Never at import time, never in a library caller's process
(`pipeline.entrypoints.finance` does not use it), and not at all once pandas is loaded.
"""

from __future__ import annotations

import sys

from pipeline.lake.numpy_probe import RefuseImport

_RefusePandas = RefuseImport("pandas", "pandas is not loaded for pyarrow's probe")


def skip_pandas_probe() -> None:
    """Have pyarrow record that pandas is absent, unless it is loaded already (see the module)."""
    if "pandas" in sys.modules:
        return
    import pyarrow as pa

    sys.meta_path.insert(0, _RefusePandas)
    try:
        # A conversion that infers a type: both of pyarrow's checks for pandas run (its Python
        # layer's for array-likes, its C++ layer's for pandas scalars), each once per process.
        pa.array([0])
    finally:
        sys.meta_path.remove(_RefusePandas)
