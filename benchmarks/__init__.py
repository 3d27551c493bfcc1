"""Speed benchmarks (`beast bench ...`): ingest, training, routing, serving, scale-out and CLI start-up, each vs a baseline."""
