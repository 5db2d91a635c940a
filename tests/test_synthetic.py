"""The demo's synthetic traffic: the same events for a seed, release after release (a second
demo run finds every event in the ledger; the README quotes the demo's total), and written to
its file whole, a chunk of lines at a time."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from pipeline.entrypoints.cli.demo import write_lines
from pipeline.inputs import synthetic
from pipeline.inputs.synthetic import Weighted


@pytest.mark.parametrize(("month", "events", "seed", "digest"), [
    # The traffic of these seeds as the generator of 94974ea made it (random.choices by weights,
    # uuid.UUID objects): its faster form must make the same bytes.
    ("2026-10", 2000, 7, "60a1ef24bb42061a05691999a67aa1915607effbebb7f662e164a5e4db20399d"),
    ("2027-02", 500, 123, "98447e46c7844c9a081622408a1c1e81d93a65c6d5993ce4315736a311c59262"),
])
def test_a_seed_makes_the_traffic_it_always_made(month: str, events: int, seed: int, digest: str) -> None:
    text = b"".join(line + b"\n" for line in synthetic.traffic(month, events, seed))
    assert text.count(b"\n") == events
    assert hashlib.sha256(text).hexdigest() == digest


@pytest.mark.parametrize("weights", [(0.965, 0.02, 0.01, 0.005), (0.3, 0.25, 0.15, 0.15, 0.1, 0.05), (1.0,),
                                     (0.5, 0.0, 0.5), (2, 3, 5)])
def test_a_weighted_draw_is_the_draw_of_random_choices(weights: tuple[float, ...]) -> None:
    population = [f"item-{n}" for n in range(len(weights))]
    weighted = Weighted.of(population, weights)  # as the generator makes its teams', deployments' and statuses'
    ours, theirs = random.Random(11), random.Random(11)
    drawn = [weighted.draw(ours) for _ in range(20_000)]
    assert drawn == [theirs.choices(population, weights)[0] for _ in range(20_000)]
    assert ours.random() == theirs.random()  # and each took as many numbers from the stream
    if 0.0 in weights:
        assert population[weights.index(0.0)] not in drawn


def test_the_demo_writes_every_line_with_its_end_a_chunk_at_a_time(tmp_path: Path) -> None:
    lines = [f"line {n}".encode() for n in range(7)] + [b""]  # an empty line is a line too
    path = tmp_path / "demo" / "traffic.jsonl"
    write_lines(path, iter(lines), chunk=3)
    assert path.read_bytes() == b"\n".join(lines) + b"\n"
    write_lines(path, iter(lines[:2]), chunk=3)  # written again: replaced, not appended to
    assert path.read_bytes() == b"line 0\nline 1\n"
