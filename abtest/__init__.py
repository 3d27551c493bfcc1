"""A/B test statistics for the model-router gate: pure functions returning typed, JSON-serialisable results."""
