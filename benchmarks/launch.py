"""Whole processes measured by their own numbers: `whole_process(command, ...)` runs the command
under `python -m benchmarks.launch`, which starts it, waits for it with `os.wait4` and writes its
wall-clock time, CPU seconds, peak RSS and exit code as JSON.

Why a launcher: Linux carries the peak RSS of a process that execs over to the program it runs
(exec keeps the old memory's high-water mark in the new program's `ru_maxrss`). A command
started straight from the bench harness, which may have just generated a month of events in
memory, then reports the harness's peak instead of its own: on a fresh clone every
whole-process stage showed the same 1,255 MiB. Started from this small process, a command's
peak is its own (this process's peak is the inflated one, and it is not reported).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from benchmarks.measure import Run


@dataclass(frozen=True, slots=True)
class Measured:
    seconds: float
    cpu_seconds: float  # user + system, the command's and the children it waited for
    peak_kib: int
    exit_code: int


Output = int | IO[bytes] | None


def whole_process(command: Sequence[str], env: Mapping[str, str] | None = None,
                  stdout: Output = subprocess.DEVNULL, stderr: Output = None) -> Measured:
    """Run `command` (its output to `stdout` and `stderr`) and return its own measures."""
    with tempfile.NamedTemporaryFile(suffix=".json") as report:
        subprocess.run([sys.executable, "-m", "benchmarks.launch", report.name, "--", *command], env=env,
                       stdout=stdout, stderr=stderr, check=False)
        measured = json.loads(report.read() or b"null")
    if measured is None:
        raise SystemExit(f"benchmarks.launch wrote nothing for {' '.join(command[:3])}")
    return Measured(**measured)


def measured_run(command: Sequence[str], env: Mapping[str, str], events: int = 0) -> Run:
    """`whole_process` of a command that must succeed, as a Run of the bench's table (`events`:
    see Run). Its stderr goes to a file, not a pipe: a child writing more than a pipe holds would
    block forever; on a failure its last lines end the bench."""
    from benchmarks.measure import Run  # here: the launcher process itself does not need it

    with tempfile.TemporaryFile() as errors:
        measured = whole_process(command, env, stderr=errors)
        if measured.exit_code != 0:
            errors.seek(0)
            text = errors.read().decode(errors="replace").strip()[-400:]
            raise SystemExit(f"{' '.join(command[:3])} failed (exit {measured.exit_code}): {text}")
    return Run(measured.seconds, measured.peak_kib / 1024, 0.0, False, os.getloadavg()[0],
               events=events, cpu_seconds=measured.cpu_seconds)


def main(argv: Sequence[str]) -> int:
    report, separator, *command = argv
    if separator != "--" or not command:
        raise SystemExit("usage: python -m benchmarks.launch REPORT.json -- COMMAND...")
    started = time.perf_counter()
    child = subprocess.Popen(command)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = code = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    Path(report).write_text(json.dumps({"seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime,
                                        "peak_kib": usage.ru_maxrss, "exit_code": code}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
