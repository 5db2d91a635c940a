"""`chargeback consume`: the usage hub's events into the ledger and counters, as a long-running
process (a container) instead of the Functions trigger; `chargeback send`: events to a hub."""

from __future__ import annotations

import signal
from pathlib import Path

import click

from pipeline.entrypoints.cli.options import pipeline_of, say, user_errors
from pipeline.settings import Settings


@click.command("consume",
               short_help="Ingest the usage Event Hub's events until stopped; checkpoints after each ledger write.")
@click.argument("hub", required=False, metavar="[eventhub://NAMESPACE/HUB]")
@click.option("--consumer-group", metavar="GROUP", help="The consumer group (default CHARGEBACK_CONSUMER_GROUP, "
              "else chargeback).")
@click.option("--checkpoints", metavar="az://CONTAINER", help="The Blob container of the checkpoints and "
              "partition ownership (default CHARGEBACK_CHECKPOINTS).")
@user_errors
def consume_command(hub: str | None, consumer_group: str | None, checkpoints: str | None) -> None:
    """Ingest the usage hub's events until SIGTERM or SIGINT. Instances of one consumer group
    share the partitions; a partition's checkpoint moves only after its batch is in the ledger.
    The hub defaults to EVENTHUB__fullyQualifiedNamespace and CHARGEBACK_EVENTHUB_NAME.

    Example: chargeback consume eventhub://evhns-chargeback/usage --checkpoints az://checkpoints
    """
    from pipeline.app import eventhub_address, open_consumer
    from pipeline.domain.decode import RawMessage
    from pipeline.domain.eventhubs import CHECKS_DUPLICATE_KEYS
    from pipeline.stages.ingest import ingest_batch

    settings = Settings.from_env()
    address = eventhub_address(settings, hub)
    with pipeline_of(settings) as p:
        def write(messages: list[RawMessage]) -> None:
            result = ingest_batch(messages, p.ledger, p.counters, p.dead_letters, p.pricer,
                                  check_duplicate_keys=CHECKS_DUPLICATE_KEYS)
            first = messages[0]
            say(f"{first.partition or '?'}: received {result.received}, ingested {result.ingested}, "
                f"duplicates {result.duplicates}, dead-lettered {result.dead_lettered}")

        consumer = open_consumer(settings, address, write, consumer_group=consumer_group, checkpoints=checkpoints)
        signal.signal(signal.SIGTERM, consumer.stop)
        signal.signal(signal.SIGINT, consumer.stop)
        say(f"consuming {address.source} (SIGTERM or Ctrl-C stops after the current batch)")
        consumer.run()
    say(f"stopped after {consumer.batches} batches")


@click.command("send",
               short_help="Send usage events (a JSON-lines FILE or --synthetic N) to an Event Hub: a smoke test.")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.argument("hub", required=False, metavar="[eventhub://NAMESPACE/HUB]")
@click.option("--synthetic", type=click.IntRange(min=1), metavar="N",
              help="Send N generated demo events of this month instead of a FILE.")
@user_errors
def send_command(file: Path | None, hub: str | None, synthetic: int | None) -> None:
    """Send usage events (JSON lines, as they are) to the hub, each keyed by its eventId as the
    APIM policy keys it: a smoke test after `terraform apply`. Prints how many were sent.

    Example: chargeback send --synthetic 100 eventhub://evhns-chargeback/usage
    """
    from datetime import UTC, datetime

    from pipeline.app import eventhub_address, send_to_eventhub
    from pipeline.domain.eventhubs import partition_key
    from pipeline.inputs.synthetic import traffic

    if file is not None and str(file).startswith("eventhub://"):
        file, hub = None, str(file)
    if (file is None) == (synthetic is None):
        raise click.UsageError("give a FILE or --synthetic N")
    if file is not None and not file.is_file():
        raise click.ClickException(f"{file}: no such file")
    settings = Settings.from_env()
    address = eventhub_address(settings, hub)
    if file is not None:
        bodies = [line.rstrip(b"\r\n") for line in file.read_bytes().splitlines() if line.strip()]
    else:
        bodies = list(traffic(f"{datetime.now(UTC):%Y-%m}", synthetic or 0))
    sent = send_to_eventhub(settings, address, iter([(body, partition_key(body)) for body in bodies]))
    say(f"sent {sent} events to {address.source}")
