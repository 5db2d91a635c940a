"""Timing and memory of one measured run, in the process that runs it (stdlib only).

Wall-clock seconds decide the medians and ratios (what the issue's targets are about). CPU
seconds of the process are recorded too: on a shared machine they move much less with the load
than wall-clock time, so events per CPU-second is the per-core rate to plan capacity with.

Peak RSS is the process's high-water mark (VmHWM). Before each run the mark is reset to the
current RSS (Linux >= 4.0: writing 5 to /proc/self/clear_refs), so a run's peak is its own
even when several runs share a process; without that file it is the process's peak so far
(`getrusage` ru_maxrss), and `peak_reset` says so.
"""

from __future__ import annotations

import gc
import os
import re
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(name: str) -> int | None:
    try:
        match = re.search(rf"^{name}:\s+(\d+) kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def rss_mib() -> float:
    kib = _status_kib("VmRSS")
    return (kib if kib is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def reset_peak() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_mib() -> float:
    kib = _status_kib("VmHWM")
    return (kib if kib is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


@dataclass(slots=True)
class Run:
    seconds: float
    peak_mib: float
    start_mib: float
    peak_reset: bool
    loadavg: float
    events: int = 0  # events this run processed, when not the result's (a run stopped by a time cap)
    cpu_seconds: float = 0.0  # CPU time of the process (all its threads) during the run


@dataclass(slots=True)
class Result:
    """All runs of one variant of one stage."""

    stage: str
    variant: str
    role: str  # "stage" (the pipeline code), "baseline", or "info" (a part, shown for the why)
    events: int
    runs: list[Run] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(run: Callable[[], object]) -> tuple[Run, object]:
    """Run once, timed, with this run's own peak RSS."""
    gc.collect()
    start = rss_mib()
    was_reset = reset_peak()
    cpu = time.process_time()
    began = time.perf_counter()
    value = run()
    seconds = time.perf_counter() - began
    cpu = time.process_time() - cpu
    return Run(seconds, peak_mib(), start, was_reset, os.getloadavg()[0], cpu_seconds=cpu), value
