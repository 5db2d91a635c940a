"""docs/finance.md is executed: each Python block in order, in one namespace, on the month of
tests.test_billing_classes (tiers, spillover, PTU capacity, audio), with its report written."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import WriteFile
from tests.test_billing_classes import TOTAL, ingest_world, run

DOC = Path(__file__).parent.parent / "docs" / "finance.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, re.DOTALL)


def test_every_example_of_finance_md_runs_and_adds_up(home: Path, write_file: WriteFile,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    ingest_world(write_file, monkeypatch)
    result = run("report", "--month", "2026-10", "--format", "csv,parquet,focus")
    assert result.exit_code == 0, result.output
    blocks = python_blocks(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 6
    namespace: dict[str, object] = {}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{DOC.name} block {number}", "exec"), namespace)  # our own docs
    assert namespace["total"] == TOTAL == Decimal("93.125")
    printed = capsys.readouterr().out
    assert "total 93.125 USD" in printed
    assert "flex is 13.9% of pay-as-you-go" in printed  # (5.25 + 1.00) / 45.125 = 0.1385
