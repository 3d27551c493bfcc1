"""Speed benchmarks (`beast bench ...`): ingest, training, routing, serving and scale-out, each vs a baseline."""
