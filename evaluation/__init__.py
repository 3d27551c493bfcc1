"""Judging routers on prompts they never trained on: the routing benchmark, its metrics, offline A/B replay."""
