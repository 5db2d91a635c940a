"""The start of a decoding worker process (pipeline.stages.decode_ahead): in a module that imports
neither pyarrow nor the decoding, so that the worker refuses NumPy before either loads
(pipeline.lake.numpy_probe: pyarrow then goes without it, 80-130 ms less CPU a worker start)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from pipeline.lake.numpy_probe import refuse_numpy_for_good

if TYPE_CHECKING:
    from pipeline.domain.costing import Reference


def start_worker(reference: Reference, now: datetime | None, check_duplicate_keys: bool, columnar: bool) -> None:
    """The worker's initializer: NumPy refused, then the decoding's own start."""
    refuse_numpy_for_good()
    from pipeline.stages import decode_ahead

    decode_ahead.start(reference, now, check_duplicate_keys, columnar)
