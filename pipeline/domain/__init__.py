"""The pure core: events and their decoder, pricing and cost resolution, PTU capacity, periods,
live spend and budgets, corrections, the base errors. No I/O; standard library and msgspec only."""
