"""The pure core: the event contract, decoding rules, pricing and cost resolution. No I/O."""
