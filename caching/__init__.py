"""Cache studies on real traces: prefix-block policies (libCacheSim, learned, Belady), tiers, semantic cache."""
