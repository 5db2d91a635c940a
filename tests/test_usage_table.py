"""The usage table (pipeline.lake.usage): events read back from it are the events written."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.domain.events import Usage
from pipeline.lake.usage import events_from_table, events_table
from tests.test_ledger_contract import FULL, event

INGESTED = datetime(2026, 10, 15, 13, 0, tzinfo=UTC)
EVENTS = [
    FULL,
    event("bare", usage=None, usage_source="none", status_code=500),
    event("audio", usage=Usage(900, 300, 1200, 100, 0, 400, 200), service_tier="priority",
          service_tier_source="response", spillover=True, tags={}),
    event("no-spillover", spillover=False, model=None),
]


def test_events_read_back_are_the_events_written() -> None:
    assert events_from_table(events_table(EVENTS, INGESTED)) == EVENTS


def test_a_table_of_an_earlier_schema_reads_its_later_columns_as_null() -> None:
    table = events_table(EVENTS, INGESTED)
    later = ["service_tier", "service_tier_source", "spillover", "audio_prompt_tokens", "audio_completion_tokens"]
    earlier = table.drop_columns(later)
    read = events_from_table(earlier)
    assert [e.event_id for e in read] == [e.event_id for e in EVENTS]
    assert {(e.service_tier, e.service_tier_source, e.spillover) for e in read} == {(None, None, None)}
    audio = read[2].usage
    assert audio is not None and (audio.prompt_tokens, audio.audio_prompt_tokens, audio.audio_completion_tokens) \
        == (900, 0, 0)
