"""Prefect flows that orchestrate the stage modules; tasks are thin wrappers, flows hold no logic."""
