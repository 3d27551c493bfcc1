"""Two-tier prefix-block cache: a small fast tier in front of a large slow one (`beast cache tiers`).

The block trace, its order and its evaluation window are `caching/sim.py`'s (`select_rows`,
`block_trace`, `BlockTrace.counted`): one lookup per prompt-prefix block, the whole trace replayed, only
lookups in the later `1 - eval_from` of the time range counted.

The tiers are exclusive LRU lists (a block lives in at most one tier):

- fast hit: the block moves to the fast tier's most-recent end;
- slow hit: the block is promoted to the fast tier; if that is full, the fast tier's least-recent block is
  demoted to the slow tier's most-recent end (into the slot the promoted block left);
- miss: the block is inserted into the fast tier; the fast tier's least-recent block is demoted, and the
  slow tier's least-recent block is dropped when the slow tier is full.

So the slow tier's list followed by the fast tier's is exactly one LRU list of `fast + slow` blocks: the
total hits equal `cache_sim.simulate_lru(block, fast + slow)` lookup for lookup (tested); the tiers only
decide how much each hit costs. A fast capacity of 0 sends every block straight to the slow tier.

Latency per block lookup: `fast_ms` for a fast hit, `slow_ms` for a slow hit, `miss_ms_per_block` for a
miss (the block's KV is recomputed by prefill). Every lookup costs one block, the last, partial block of a
request included (an upper bound on its cost); promotion and demotion copies are taken to run off the
request's critical path (not charged), and lookups of one request are charged one after another, not
overlapped. The defaults are ILLUSTRATIVE ASSUMPTIONS, not
measurements: one 512-token block of KV of an 8B GQA model (Llama-3-8B: 128 KiB per token in fp16) is
64 MiB; fast 3 ms = that much copied from host DRAM to the GPU over PCIe 4 (~25 GB/s; a block already in
GPU HBM would cost ~0), slow 15 ms = read from a local NVMe SSD (~5 GB/s), miss 50 ms = prefill of 512
tokens at ~10k tokens/s on one A100. Put your own hardware's numbers in params.yaml -> cache_tiers.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from caching.sim import BLOCK_TOKENS, BlockTrace, block_trace, read_block_trace, run_study, save_study, select_rows
from core.config import Count, NonNegative, NonNegativeInt, Share

MISS, FAST, SLOW = 0, 1, 2  # per-lookup outcome codes of `simulate_two_tier`


@dataclass(frozen=True)
class TiersParams:
    """Mirrors params.yaml -> cache_tiers (latencies: illustrative, see the module docstring)."""

    fast_capacities: tuple[NonNegativeInt, ...] = (0, 250, 1000, 4000)  # fast-tier sizes in blocks (0: slow tier only)
    slow_capacities: tuple[NonNegativeInt, ...] = (0, 1000, 4000, 16000, 64000)  # slow-tier sizes in blocks
    fast_ms: NonNegative = 3.0  # per block: KV copied from host DRAM over PCIe 4
    slow_ms: NonNegative = 15.0  # per block: KV read from a local NVMe SSD
    miss_ms_per_block: NonNegative = 50.0  # per block: prefill recompute of 512 tokens
    eval_from: Share = 0.5
    block_tokens: Count = BLOCK_TOKENS
    out: Path = Path("data/cache_tiers")


def simulate_two_tier(block: np.ndarray, fast_capacity: int, slow_capacity: int) -> np.ndarray:
    """Outcome per lookup (MISS / FAST / SLOW, int8) of the exclusive two-tier LRU of the module docstring."""
    if fast_capacity < 0 or slow_capacity < 0:
        raise ValueError(f"capacities must be >= 0, got fast {fast_capacity}, slow {slow_capacity}")
    if fast_capacity == 0:  # a one-tier LRU whose hits are slow
        fast_capacity, slow_capacity, hit_code = slow_capacity, 0, SLOW
    else:
        hit_code = FAST
    fast: OrderedDict[int, None] = OrderedDict()
    slow: OrderedDict[int, None] = OrderedDict()
    out = np.zeros(len(block), dtype=np.int8)
    if fast_capacity == 0:
        return out
    fast_move, fast_pop, slow_pop = fast.move_to_end, fast.popitem, slow.popitem
    for i, b in enumerate(block.tolist()):
        if b in fast:
            out[i] = hit_code
            fast_move(b)
            continue
        if b in slow:
            out[i] = SLOW
            del slow[b]
        elif len(fast) >= fast_capacity and slow_capacity and len(slow) >= slow_capacity:
            slow_pop(last=False)  # a miss with both tiers full: the slow tier's LRU block goes
        if len(fast) >= fast_capacity:
            demoted = fast_pop(last=False)[0]
            if slow_capacity:
                slow[demoted] = None
        fast[b] = None
    return out


@dataclass(frozen=True)
class TierRun:
    fast_capacity: int
    slow_capacity: int
    fast_hit_ratio: float  # counted fast hits / counted lookups
    slow_hit_ratio: float
    hit_ratio: float  # fast + slow
    expected_ms: float  # expected latency per counted block lookup
    saved_ms: float  # miss_ms_per_block - expected_ms: saved per lookup versus no cache
    saved_share: float  # saved_ms / miss_ms_per_block
    lookups_per_s: float | None  # whole replay (warm-up included); None without a cache (nothing simulated)


def tier_run(trace: BlockTrace, fast_capacity: int, slow_capacity: int, params: TiersParams) -> TierRun:
    """Replay the whole trace through one configuration; count and price the evaluation window only."""
    started = time.perf_counter()
    outcome = simulate_two_tier(trace.block, fast_capacity, slow_capacity)
    seconds = time.perf_counter() - started
    counted = outcome[trace.counted]
    n = len(counted)
    if n == 0:
        raise ValueError("cache-tiers: no lookups in the evaluation window")
    fast, slow = float(np.mean(counted == FAST)), float(np.mean(counted == SLOW))
    expected = fast * params.fast_ms + slow * params.slow_ms + (1.0 - fast - slow) * params.miss_ms_per_block
    saved = params.miss_ms_per_block - expected
    return TierRun(
        fast_capacity,
        slow_capacity,
        fast,
        slow,
        fast + slow,
        expected,
        saved,
        saved / params.miss_ms_per_block if params.miss_ms_per_block else float("nan"),
        None if fast_capacity + slow_capacity == 0 else len(trace) / max(seconds, 1e-9),
    )


@dataclass(frozen=True)
class TiersReport:
    trace: str
    requests: int
    lookups: int
    distinct_blocks: int
    counted_lookups: int
    params: TiersParams
    runs: tuple[TierRun, ...]

    def overall_lookups_per_s(self) -> float:
        """All simulated lookups / all simulation time (the no-cache configuration is not simulated)."""
        speeds = [r.lookups_per_s for r in self.runs if r.lookups_per_s]
        return len(speeds) / sum(1 / s for s in speeds) if speeds else float("nan")

    def to_json(self) -> dict[str, object]:
        p = asdict(self.params)
        p["out"] = str(self.params.out)
        return {
            "trace": self.trace,
            "requests": self.requests,
            "lookups": self.lookups,
            "distinct_blocks": self.distinct_blocks,
            "counted_lookups": self.counted_lookups,
            "capacity_unit": f"blocks of {self.params.block_tokens} tokens",
            "latency_unit": "ms per block lookup (illustrative assumptions, see caching/tiers.py)",
            "params": p,
            "overall_lookups_per_s": self.overall_lookups_per_s(),
            "runs": [asdict(r) for r in self.runs],
        }


def simulate_tiers(
    frame: pd.DataFrame, params: TiersParams, name: str = "trace", log: Callable[[str], None] = lambda _s: None
) -> TiersReport:
    """Pure: every (fast, slow) capacity pair of `params` on `frame`'s block lookups."""
    if min(params.fast_capacities + params.slow_capacities, default=0) < 0:
        raise ValueError("cache-tiers: capacities must be >= 0")
    frame = select_rows(frame)
    if frame.empty:
        raise ValueError("cache-tiers: no rows with prefix_blocks in the trace")
    trace = block_trace(frame, params.eval_from, params.block_tokens)
    runs = []
    for fast in params.fast_capacities:
        for slow in params.slow_capacities:
            run = tier_run(trace, fast, slow, params)
            log(
                f"  fast {fast:>6,} slow {slow:>7,}: hit ratio {run.hit_ratio:.4f} (fast {run.fast_hit_ratio:.4f}, slow {run.slow_hit_ratio:.4f}), {run.expected_ms:.2f} ms/lookup ({run.lookups_per_s or 0:,.0f} lookups/s)"
            )
            runs.append(run)
    return TiersReport(
        name,
        int(frame.shape[0]),
        len(trace),
        int(len(np.unique(trace.block))),
        int(trace.counted.sum()),
        params,
        tuple(runs),
    )


def plot(report: TiersReport, path: Path) -> Path:
    """Latency saved per lookup vs slow-tier capacity, one line per fast-tier capacity, in one PNG."""
    from core.plots import plt, save_figure  # Agg backend: no display needed

    p = report.params
    slows = list(p.slow_capacities)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for fast in p.fast_capacities:
        saved = {r.slow_capacity: r.saved_ms for r in report.runs if r.fast_capacity == fast}
        ax.plot(range(len(slows)), [saved[s] for s in slows], marker="o", label=f"fast tier {fast:,} blocks")
    ax.set_xticks(range(len(slows)), [f"{s:,}" for s in slows])
    ax.set_xlabel(f"slow-tier capacity (blocks of {p.block_tokens} tokens)")
    ax.set_ylabel("latency saved vs no cache (ms per block lookup)")
    ax.set_title(
        f"{report.trace}\nillustrative latencies: fast {p.fast_ms:g} ms, slow {p.slow_ms:g} ms, miss {p.miss_ms_per_block:g} ms per block",
        fontsize=10,
    )
    ax.grid(True, alpha=0.3)
    ax.legend()
    return save_figure(fig, path)


def summary(report: TiersReport) -> str:
    """Markdown table, one row per configuration."""
    lines = [
        "| fast | slow | fast hit | slow hit | hit ratio | ms / lookup | saved ms / lookup | saved | lookups/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report.runs:
        lines.append(
            f"| {r.fast_capacity:,} | {r.slow_capacity:,} | {r.fast_hit_ratio:.4f} | {r.slow_hit_ratio:.4f} | {r.hit_ratio:.4f} "
            f"| {r.expected_ms:.2f} | {r.saved_ms:.2f} | {r.saved_share:.1%} | {'-' if r.lookups_per_s is None else f'{r.lookups_per_s:,.0f}'} |"
        )
    return "\n".join(lines)


def main(
    traces: Sequence[Path],
    params_file: Path | None = None,
    out: Path | None = None,
    fast_capacities: Sequence[int] | None = None,
    slow_capacities: Sequence[int] | None = None,
    eval_from: float | None = None,
    limit_rows: int | None = None,
) -> TiersReport:
    """`beast cache tiers`: read the traces, simulate, write tiers_report.json and cache_tiers.png to `out`."""
    from core.config import load_params, with_overrides

    params = load_params(params_file, "cache_tiers", TiersParams)
    overrides = {
        "fast_capacities": tuple(fast_capacities) if fast_capacities else None,
        "slow_capacities": tuple(slow_capacities) if slow_capacities else None,
        "eval_from": eval_from,
        "out": out,
    }
    params = with_overrides(params, **overrides)
    frame, name = read_block_trace(traces, params_file, limit_rows, log=print)
    print(
        f"cache-tiers on {name}: fast {', '.join(map(str, params.fast_capacities))} x slow {', '.join(map(str, params.slow_capacities))} "
        f"blocks of {params.block_tokens} tokens; ms per block: fast {params.fast_ms:g}, slow {params.slow_ms:g}, miss {params.miss_ms_per_block:g} (illustrative)"
    )
    report = run_study(simulate_tiers, frame, params, name)
    json_path, png = save_study(
        report, params.out, "tiers_report.json", plot, "cache_tiers.png", summary, params.eval_from
    )
    print(f"\nspeed: {report.overall_lookups_per_s():,.0f} block lookups/s over the simulated configurations")
    print(f"wrote {json_path} and {png}")
    return report
