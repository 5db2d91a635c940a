"""Event Hubs addresses (`eventhub://NAMESPACE/HUB`) and the RawMessage of one received event.

The Functions trigger and `chargeback consume` both build their RawMessages here, so that the
same event gets the same ledger row (source, position, partition, sequence, offset, enqueued
time) whichever of the two received it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from pipeline.domain.decode import RawMessage
from pipeline.domain.errors import UserError

SCHEME = "eventhub://"
DOMAIN = ".servicebus.windows.net"
# The usage hub's events: built by the APIM policy as a JObject, sent by APIM's identity alone,
# so no duplicate-key check (the trigger's EVENTHUB_CHECKS_DUPLICATE_KEYS, docs/guarantees.md).
CHECKS_DUPLICATE_KEYS = False


class EventHubAddressError(UserError):
    """An eventhub:// URL that names no namespace or no hub."""


@dataclass(frozen=True, slots=True)
class EventHubAddress:
    namespace: str  # fully qualified: NAMESPACE.servicebus.windows.net
    hub: str

    @property
    def source(self) -> str:
        """`eventhub:<namespace>/<hub>`, the source the ledger rows name (as the trigger's)."""
        return source_name(self.namespace, self.hub)


def parse_eventhub_url(url: str) -> EventHubAddress:
    """`eventhub://NAMESPACE/HUB` (NAMESPACE short or fully qualified) as an address."""
    if not url.startswith(SCHEME):
        raise EventHubAddressError(f"{url!r}: expected eventhub://NAMESPACE/HUB")
    namespace, _, hub = url.removeprefix(SCHEME).strip("/").partition("/")
    if not namespace or not hub or "/" in hub:
        raise EventHubAddressError(f"{url!r}: expected eventhub://NAMESPACE/HUB")
    return EventHubAddress(qualified_namespace(namespace), hub)


def qualified_namespace(namespace: str) -> str:
    """NAMESPACE.servicebus.windows.net for a short name; a name with a dot is kept as it is."""
    return namespace if "." in namespace else f"{namespace}{DOMAIN}"


def source_name(namespace: str | None, hub: str | None) -> str:
    return f"eventhub:{namespace or 'unknown'}/{hub or 'unknown'}"


def event_message(body: bytes, source: str, partition: str | None, sequence_number: int | None,
                  offset: str | None, enqueued_time: datetime | None) -> RawMessage:
    """One received event as a RawMessage; the enqueued time in UTC (naive times are UTC)."""
    return RawMessage(
        body=body, source=source,
        position=f"partition {partition or '?'}, sequence {'?' if sequence_number is None else sequence_number}",
        partition=partition, sequence_number=sequence_number, offset=offset, enqueued_time=utc(enqueued_time))


def utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def endpoint_host(connection_string: str) -> str | None:
    """NAMESPACE.servicebus.windows.net from `Endpoint=sb://NAMESPACE.servicebus.windows.net/;...`."""
    for part in connection_string.split(";"):
        name, _, value = part.partition("=")
        if name.strip().lower() == "endpoint":
            return value.strip().removeprefix("sb://").rstrip("/") or None
    return None


def partition_key(body: bytes) -> str | None:
    """The event's eventId, the partition key the APIM policy sends it with (None if it has none)."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    event_id = document.get("eventId") if isinstance(document, dict) else None
    return event_id if isinstance(event_id, str) and event_id else None
