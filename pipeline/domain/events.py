"""The usage event contract, v1 (schemas/usage-event.v1.schema.json is its published form).

One event per request through APIM. Field names are camelCase on the wire and snake_case here.
No prompt or completion text is part of the contract, and none can be smuggled in: unknown
fields are kept (forward compatibility) but only as a size-limited JSON blob.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Literal

import msgspec

EXTRA_FIELD = "__extra__"
ORIGIN_FIELD = "__origin__"
RESERVED_FIELDS = (EXTRA_FIELD, ORIGIN_FIELD)

UsageSource = Literal["response", "stream", "estimated", "none"]
ServiceTierSource = Literal["response", "request"]

TokenCount = Annotated[int, msgspec.Meta(ge=0, le=10**12)]
ShortText = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
OptionalText = Annotated[str, msgspec.Meta(max_length=256)] | None
TagKey = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
TagValue = Annotated[str, msgspec.Meta(max_length=256)]
Tags = Annotated[dict[TagKey, TagValue], msgspec.Meta(max_length=32)]


class Origin(msgspec.Struct, frozen=True, gc=False):
    """Where an event was received: a file and line, or an Event Hub partition and sequence
    number, so that ops can trace any cost line back to its message."""

    source: str  # a file path, "stdin", or "eventhub:<namespace>/<hub>"
    position: str  # "line 12", or "partition 3, sequence 1234"
    partition: str | None = None
    sequence_number: int | None = None
    offset: str | None = None
    enqueued_time: datetime | None = None


# gc=False: these structs hold only scalars and a str->str map, so they can never be part of a
# reference cycle; leaving them out of the cycle collector keeps large batches cheap.
class Usage(msgspec.Struct, rename="camel", frozen=True, forbid_unknown_fields=True, gc=False):
    """Token counts of one request. cached is part of prompt; reasoning is part of completion."""

    prompt_tokens: TokenCount
    completion_tokens: TokenCount
    total_tokens: TokenCount
    cached_tokens: TokenCount = 0
    reasoning_tokens: TokenCount = 0
    audio_prompt_tokens: TokenCount = 0  # part of prompt_tokens (prompt_tokens_details.audio_tokens)
    audio_completion_tokens: TokenCount = 0  # part of completion_tokens (completion_tokens_details.audio_tokens)


class UsageEvent(msgspec.Struct, rename="camel", frozen=True, forbid_unknown_fields=True, gc=False):
    """One APIM request to Azure OpenAI, as emitted by the gateway policy."""

    schema_version: Literal[1]
    event_id: ShortText
    timestamp: Annotated[datetime, msgspec.Meta(tz=True)]
    subscription_id: ShortText
    deployment: ShortText
    stream: bool
    status_code: Annotated[int, msgspec.Meta(ge=100, le=599)]
    duration_ms: Annotated[int, msgspec.Meta(ge=0, le=86_400_000)]
    usage_source: UsageSource
    # Nullable, and null when absent: a producer may omit them.
    usage: Usage | None = None
    product_id: OptionalText = None
    api_id: OptionalText = None
    operation_id: OptionalText = None
    caller_app_id: OptionalText = None
    caller_tenant_id: OptionalText = None
    caller_object_id: OptionalText = None
    cost_center: OptionalText = None
    model: OptionalText = None
    region: OptionalText = None
    tags: Tags | None = None
    # The service tier the request was served at: the response's `service_tier`, lowercased
    # (for a stream, the request body's), and where it was read; null when neither said.
    service_tier: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] | None = None
    service_tier_source: ServiceTierSource | None = None
    # The response carried an `x-ms-spillover-from-<deployment>` header (a provisioned deployment's
    # overflow served by a standard one); null when there was no backend response.
    spillover: bool | None = None
    # Unknown fields of the raw event as JSON object text, None when there were none. Not part
    # of the wire contract: only the decoder fills it (a wire event using the name is rejected).
    extra: str | None = msgspec.field(default=None, name=EXTRA_FIELD)
    # Where the event was received; set by the decoder from the message, never from the wire.
    origin: Origin | None = msgspec.field(default=None, name=ORIGIN_FIELD)


# The wire field names: the contract test checks the JSON Schema against these.
WIRE_FIELDS: tuple[str, ...] = tuple(
    f.encode_name for f in msgspec.structs.fields(UsageEvent) if f.encode_name not in RESERVED_FIELDS
)
USAGE_FIELDS: tuple[str, ...] = tuple(f.encode_name for f in msgspec.structs.fields(Usage))


def first_copies(events: Sequence[UsageEvent]) -> dict[str, int]:
    """Each eventId of the batch and the position of its first copy, in batch order: the copy
    that counts (the ledger keeps it, the counters sum it), whatever its copies say."""
    first: dict[str, int] = {}
    for index, event in enumerate(events):
        first.setdefault(event.event_id, index)
    return first
