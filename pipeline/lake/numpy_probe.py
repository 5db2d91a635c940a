"""pyarrow imports NumPy when it is first imported (and `pyarrow.compute` when it is), only so that
it can take and give NumPy arrays: 80-130 ms of each `chargeback` command that reads or writes
Arrow (`report`, `usage`, `budgets`, `doctor`, `ingest`, `snapshot`, ...: measured in a slow phase),
where nothing else uses NumPy. The hand-written DuckDB query `make bench` holds the report against
never loads it: `import duckdb` does not, and neither do the Azure SDKs, msgspec, rich or click.

`numpy_refused` refuses `import numpy` while a command runs, so that pyarrow records that there is
no NumPy (its own `try: import numpy`, as on a machine without it). Every library the commands
use imports NumPy only that way (`try`, or by looking in `sys.modules`, as DuckDB does). This
process's pyarrow then neither takes NumPy arrays (`pa.array` of one raises ArrowInvalid) nor
gives them (`to_numpy`, `to_pandas` raise ImportError), also once NumPy is imported later. So it
is only for the CLI's commands (pipeline.entrypoints.cli.options.user_errors), which hand pyarrow
Python objects and read back Python objects: never at import time, never in a library caller's
process (`pipeline.entrypoints.finance` returns DataFrames), and not at all once NumPy or pyarrow
is loaded (a test process's, or a command run after another in one process). A decoding worker
(pipeline.stages.decode_worker), a process that runs nothing but our code, refuses it for good.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.machinery import ModuleSpec
from types import ModuleType


class RefuseImport:
    """A meta-path finder that refuses to import one package (and its modules) while it is
    installed, with `why` as the ModuleNotFoundError's message (pipeline.lake.pandas_probe uses it
    for pandas)."""

    def __init__(self, package: str, why: str) -> None:
        self.package, self.why = package, why

    def find_spec(self, name: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if name == self.package or name.startswith(f"{self.package}."):
            raise ModuleNotFoundError(self.why, name=name)
        return None


_RefuseNumpy = RefuseImport("numpy", "NumPy is not loaded by the chargeback commands")


@contextmanager
def numpy_refused() -> Iterator[bool]:
    """Refuse `import numpy` inside the block (see the module); True when it did, False (nothing
    refused) when NumPy or pyarrow was loaded already."""
    refused = refuse_numpy_for_good()
    try:
        yield refused
    finally:
        if refused:
            sys.meta_path.remove(_RefuseNumpy)


def refuse_numpy_for_good() -> bool:
    """Refuse `import numpy` from now on, in a process that runs nothing but our code (a decoding
    worker); False (nothing refused) when NumPy or pyarrow was loaded already."""
    if "numpy" in sys.modules or "pyarrow" in sys.modules:
        return False
    sys.meta_path.insert(0, _RefuseNumpy)
    return True
