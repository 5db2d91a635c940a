"""pyarrow imports NumPy when it is first imported, only so that it can take and give NumPy
arrays: 80-130 ms (slow phase) of each `chargeback report`, `usage`, `budgets` and `doctor`, where
NumPy is not otherwise used (the hand-written DuckDB query `make bench` holds the report against
never loads it: `import duckdb` does not). Those commands call this first.

`import_pyarrow_without_numpy` imports pyarrow while `import numpy` is refused, so that pyarrow
records that there is no NumPy (its own `try: import numpy`, as on a machine without it). NumPy
can still be imported later, but this process's pyarrow neither takes NumPy arrays (`pa.array`
of one raises ArrowInvalid) nor gives them (`to_numpy`, `to_pandas` raise ImportError). So it is only for the CLI's
commands that hand pyarrow Python objects and read back Python objects: never at import time,
never in a library caller's process (`pipeline.entrypoints.finance` returns DataFrames), and not
at all once NumPy or pyarrow is loaded.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType


class _RefuseNumpy:
    """A meta-path finder that refuses `import numpy` while it is installed."""

    @staticmethod
    def find_spec(name: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if name == "numpy" or name.startswith("numpy."):
            raise ModuleNotFoundError("NumPy is not loaded for pyarrow", name=name)
        return None


def import_pyarrow_without_numpy() -> bool:
    """Import pyarrow as on a machine without NumPy (see the module); False, and nothing done,
    when NumPy or pyarrow is loaded already."""
    if "numpy" in sys.modules or "pyarrow" in sys.modules:
        return False
    sys.meta_path.insert(0, _RefuseNumpy)
    try:
        import pyarrow  # noqa: F401  (imported for its side effect: pyarrow.lib without NumPy)
    finally:
        sys.meta_path.remove(_RefuseNumpy)
    return True
