"""The usage table (pipeline.lake.usage): events read back from it are the events written."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.domain.events import Usage
from pipeline.lake.usage import USAGE_SCHEMA, conformed, events_from_table, events_table
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


def test_gateway_timeout_is_what_the_tags_say_also_for_a_batch_of_an_earlier_schema() -> None:
    """The column the usage state is read from (no MAP column read): written from the tags, and
    made from them for a ledger batch stored before the column existed (`conformed`)."""
    timed_out = [event("timeout", usage=None, usage_source="none", status_code=500,
                       tags={"apimErrorSource": "forward-request", "chargebackError": "gateway-timeout"}),
                 event("other-error", usage=None, usage_source="none", status_code=500,
                       tags={"chargebackError": "something-else"})]
    table = events_table([*EVENTS, *timed_out], INGESTED)
    assert table.column("gateway_timeout").to_pylist() == [False, False, False, False, True, False]
    [earlier] = table.drop_columns(["gateway_timeout"]).to_batches()
    again = conformed(earlier)
    assert again.schema.equals(USAGE_SCHEMA)
    assert again.column("gateway_timeout").to_pylist() == [False, False, False, False, True, False]
