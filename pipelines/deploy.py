"""`beast deploy`: the `retrain` flow on its cron schedule and the `monitor` flow on its interval, served as
Prefect deployments by this process against a real Prefect server (schedules need one: `make
prefect-server` starts it on localhost, and PREFECT_API_URL must point at it)."""

from __future__ import annotations

import os
from pathlib import Path

from core.config import load_params
from core.errors import BeastError
from pipelines.flows import RetrainParams, configured_retrain, monitor


def deployments(params_file: str) -> list:
    """The two deployments, with their schedules and the params file as a flow parameter."""
    params = load_params(Path(params_file), "retrain", RetrainParams)
    return [
        configured_retrain(params_file).to_deployment(
            name="nightly", cron=params.cron, parameters={"params_file": params_file}, tags=["beast"]
        ),
        monitor.to_deployment(
            name="drift", interval=params.monitor_interval_s, parameters={"params_file": params_file}, tags=["beast"]
        ),
    ]


def main(params_file: str = "params.yaml") -> None:
    """Register both deployments and run their scheduled (and manually triggered) runs until interrupted."""
    from prefect import serve

    if not os.environ.get("PREFECT_API_URL"):
        raise BeastError(
            "deploy: PREFECT_API_URL is not set; start a server with `make prefect-server` and export PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    items = deployments(params_file)
    for item in items:  # registered before "serving" is said: a client reading that line finds both (serve re-applies)
        item.apply()
    print(
        f"serving {', '.join(f'{d.flow_name}/{d.name}' for d in items)} on {os.environ['PREFECT_API_URL']} (Ctrl-C stops)",
        flush=True,
    )
    serve(*items)
