"""Predictors of quality, cost and cache hit (LightGBM), trained from features; one module per predictor."""
