"""Our predictors (quality, cost, cache hit: LightGBM) and their lifecycle: train, tune, register, export."""
