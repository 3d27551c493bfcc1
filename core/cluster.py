"""The Dask cluster a stage runs on: a real one named by address, or a LocalCluster made for the call.

params.yaml `dask` (or `$BEAST_DASK_ADDRESS`, which wins) names a scheduler such as ``tcp://10.0.0.5:8786``;
without one a LocalCluster of `n_workers` processes is started for the duration of the `with` block and
stopped after it. `engine` decides whether a stage uses Dask at all: the single-process path stays the
default for data that fits one process (`auto`: Dask from `auto_rows` stored rows on).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from core.config import Count, Positive
from core.errors import BeastError

ADDRESS_ENV = "BEAST_DASK_ADDRESS"
ENGINES = ("auto", "single", "dask")


@dataclass(frozen=True)
class ClusterParams:
    """Mirrors params.yaml -> dask."""

    engine: str = "auto"  # auto | single | dask
    auto_rows: Count = 5_000_000  # `auto`: Dask from this many stored rows on
    address: str = ""  # scheduler address of a running cluster; empty = a LocalCluster per call
    n_workers: Count = 2  # LocalCluster worker processes
    threads_per_worker: Count = 1  # LightGBM runs one thread per worker (num_threads) either way
    memory_limit: str = "auto"  # per LocalCluster worker: "auto" = machine memory / n_workers, or e.g. "4GiB"
    partition_rows: Count = 250_000  # rows per Dask partition when reading the dataset (row groups are merged up to it)
    connect_timeout_s: Positive = 30.0  # waiting for the scheduler at `address`

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise BeastError(f"params.yaml:dask.engine: expected one of {', '.join(ENGINES)}, got {self.engine!r}")
        if self.n_workers < 1 or self.threads_per_worker < 1 or self.partition_rows < 1:
            raise BeastError("params.yaml:dask: n_workers, threads_per_worker and partition_rows must be >= 1")

    @property
    def scheduler(self) -> str:
        """The address to connect to ('' = start a LocalCluster): the environment wins over params.yaml."""
        return os.environ.get(ADDRESS_ENV, "").strip() or self.address.strip()


def use_dask(params: ClusterParams, rows: int) -> bool:
    """Whether a stage over `rows` stored rows runs on Dask (`engine`, or `auto` and `rows >= auto_rows`)."""
    return params.engine == "dask" or (params.engine == "auto" and rows >= params.auto_rows)


@contextmanager
def client(params: ClusterParams) -> Iterator[object]:
    """A `distributed.Client` on the configured cluster; a LocalCluster started here is stopped on exit."""
    from distributed import Client, LocalCluster, get_worker, worker_client

    started = time.perf_counter()
    try:
        get_worker()
    except ValueError:
        pass
    else:  # a task on a Dask worker (the retrain flow's Dask task runner): use its cluster, seceding our slot
        with worker_client() as dask_client:
            yield dask_client
        return
    address = params.scheduler
    if address:
        try:
            dask_client = Client(address, timeout=f"{params.connect_timeout_s}s")
        except (OSError, TimeoutError) as exc:
            raise BeastError(
                f"dask: cannot reach the scheduler at {address} ({exc}); check params.yaml dask.address or ${ADDRESS_ENV}"
            ) from None
        with dask_client:
            print(f"dask: connected to {address} ({len(dask_client.scheduler_info()['workers'])} workers)", flush=True)
            yield dask_client
        return
    cluster = LocalCluster(
        n_workers=params.n_workers,
        threads_per_worker=params.threads_per_worker,
        processes=True,
        memory_limit=params.memory_limit,
        dashboard_address=None,
        silence_logs=40,  # errors only: worker start/stop chatter is not progress
    )
    with cluster, Client(cluster) as dask_client:
        print(
            f"dask: LocalCluster of {params.n_workers} workers x {params.threads_per_worker} thread(s) up in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        yield dask_client
