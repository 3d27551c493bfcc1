"""Train on one trace, test on another (`beast cache transfer`): does the learned cache policy transfer,
and does the guard keep the shipped policy at the best classic policy when it does not?

For every ordered pair (train A, test B) of the traces: the learned model is fitted on A's lookups before
A's evaluation cut (`caching.sim.fit_learned`), then B is replayed (`caching.sim.simulate`, its later
half scored) with that model as `learned` and as the online expert's prior. A -> A is the time split of A
(`learned` fitted on its first half, scored on its later half) with the shipped prior
(`cache_sim.online.prior`) as the online expert's: what `beast cache sim` runs on a new trace. Per pair and capacity: LRU, ARC,
S3-FIFO, learned, online, guarded, Belady hit ratios, each policy's share of the LRU -> Belady gap closed,
and lookups/s. Traces: trace files given on the command line and/or the seeded prefix regimes of
`traces.synth.prefix_regime_frame`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pandas as pd

from caching.sim import CacheSimParams, LearnedModel, Replay, block_trace, online_prior, select_rows, simulate

TRANSFER_POLICIES = ("lru", "arc", "s3fifo", "learned", "online", "guarded", "belady")


def gap_closed(policy: Sequence[float], lru: Sequence[float], belady: Sequence[float]) -> list[float | None]:
    """(policy - lru) / (belady - lru) per capacity; None where Belady does not beat LRU."""
    return [None if b - r <= 1e-12 else (p - r) / (b - r) for p, r, b in zip(policy, lru, belady)]


def transfer(
    traces: Mapping[str, pd.DataFrame],
    params: CacheSimParams,
    log: Callable[[str], None] = lambda _s: None,
    prior: LearnedModel | None = None,
) -> dict[str, object]:
    """Pure: every train -> test pair of `traces` (name -> frame); a JSON-ready dict. A -> B: A's model is
    `learned` and the online expert's prior; A -> A: `learned` is fitted on A's first part and the online
    expert starts from `prior` (the shipped one: what `beast cache sim` runs on a new trace)."""
    params = replace(params, policies=TRANSFER_POLICIES)
    frames = {k: select_rows(v) for k, v in traces.items()}
    models = {}
    for name, frame in frames.items():
        replay = Replay(frame, block_trace(frame, params.eval_from, params.block_tokens), params)
        models[name] = replace(replay.learned_model(), source=f"{name} before its evaluation cut")
    pairs = []
    for a in frames:
        for b in frames:
            log(f"train {a} -> test {b}")
            report = simulate(
                frames[b], params, b, model=None if a == b else models[a], prior=prior if a == b else None
            )
            ratios = report.policies()
            pairs.append(
                {
                    "train": a,
                    "test": b,
                    "capacities": list(report.capacities),
                    "policies": ratios,
                    "gap_closed": {p: gap_closed(ratios[p], ratios["lru"], ratios["belady"]) for p in ratios},
                    "guarded_minus_best_classic": report.minus_best_classic("guarded"),
                    "lookups_per_s": report.lookups_per_s(),
                    "lookups": report.lookups,
                    "guard_switches": report.learned_info.get("guard_switches", {}),
                }
            )
    return {"traces": list(frames), "eval_from": params.eval_from, "pairs": pairs}


def predictor_transfer(traces: Mapping[str, pd.DataFrame], params) -> dict[str, list[dict[str, object]]]:
    """The cache-hit predictor (`beast-cache`, `models.cache`) on every train -> test pair: ROC AUC with all
    its features and with the scale-free `TRANSFER_FEATURES` only."""
    from models.cache import FEATURES, TRANSFER_FEATURES, transfer_auc

    return {
        "all_features": transfer_auc(dict(traces), params, FEATURES),
        "transfer_features": transfer_auc(dict(traces), params, TRANSFER_FEATURES),
    }


def summary(result: Mapping[str, object]) -> str:
    """Markdown: one table per pair (policies x capacities, hit ratio), gap closed of guarded and learned."""
    out = []
    for pair in result["pairs"]:
        caps = pair["capacities"]
        out.append(f"\n**train {pair['train']} -> test {pair['test']}** ({pair['lookups']:,} lookups)\n")
        out.append("| policy | " + " | ".join(f"{c:,}" for c in caps) + " | lookups/s |")
        out.append("|---" * (len(caps) + 2) + "|")
        for p, r in pair["policies"].items():
            out.append(f"| {p} | " + " | ".join(f"{x:.3f}" for x in r) + f" | {pair['lookups_per_s'][p]:,.0f} |")
        for p in ("learned", "online", "guarded"):
            g = pair["gap_closed"][p]
            out.append(f"| {p}: gap closed | " + " | ".join("-" if x is None else f"{x:.0%}" for x in g) + " | |")
        d = pair["guarded_minus_best_classic"]
        out.append("| guarded - best classic | " + " | ".join(f"{x:+.3f}" for x in d) + " | |")
    return "\n".join(out)


def plot(result: Mapping[str, object], path: Path) -> Path:
    """The shipped policy on each trace (its A -> A pair), per capacity: guarded - best classic (left, the
    -0.5-point line is the guard's target) and the share of the LRU -> Belady gap guarded closes (right, the
    50 % line), one line per trace, in one PNG."""
    from core.plots import plt, save_figure

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for pair in result["pairs"]:
        if pair["train"] != pair["test"]:
            continue
        caps, gap = pair["capacities"], pair["gap_closed"]["guarded"]
        left.plot(caps, [100 * d for d in pair["guarded_minus_best_classic"]], marker="o", label=pair["test"])
        right.plot(caps, [None if g is None else 100 * g for g in gap], marker="o", label=pair["test"])
    for ax, line, ylabel in (
        (left, -0.5, "guarded - best of LRU / ARC / S3-FIFO (points)"),
        (right, 50.0, "LRU -> Belady gap closed by guarded (%)"),
    ):
        ax.axhline(line, color="black", linestyle="--", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel("capacity (blocks)")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
    right.set_ylim(-25, 100)
    left.legend(fontsize=8)
    fig.suptitle(f"shipped cache policy per trace (later {1 - result['eval_from']:.0%} scored)", fontsize=10)
    return save_figure(fig, path)


def predictor_summary(result: Mapping[str, list[dict[str, object]]]) -> str:
    """Markdown: the cache-hit predictor's ROC AUC, train (rows) -> test (columns), per feature set."""
    out = []
    for kind, rows in result.items():
        names = list(dict.fromkeys(r["test"] for r in rows))
        out.append(
            f"\n**cache-hit predictor ROC AUC, {kind.replace('_', ' ')}** (rows: trained on; columns: tested on)\n"
        )
        out.append("| train \\ test | " + " | ".join(names) + " |")
        out.append("|---" * (len(names) + 1) + "|")
        for a in names:
            cells = {r["test"]: r["auc"] for r in rows if r["train"] == a}
            out.append(f"| {a} | " + " | ".join("-" if cells[b] is None else f"{cells[b]:.3f}" for b in names) + " |")
    return "\n".join(out)


def _cache_params(params_file: Path | None):
    """params.yaml train.cache (the cache-hit predictor's settings)."""
    import yaml

    from core.config import from_mapping
    from models.params import CacheParams

    path = params_file or Path("params.yaml")
    raw = yaml.safe_load(path.read_text()) if path.exists() else {}
    return from_mapping(CacheParams, ((raw or {}).get("train") or {}).get("cache") or {}, "train.cache")


def main(
    traces: Sequence[Path] = (),
    regimes: Sequence[str] = ("system", "multiturn", "toolloop", "oneoff"),
    rows: int = 3000,
    seed: int = 0,
    mean_rps: float = 2.0,
    params_file: Path | None = None,
    capacities: Sequence[int] | None = None,
    out: Path = Path("data/cache_transfer"),
    limit_rows: int | None = None,
) -> dict[str, object]:
    """`beast cache transfer`: read the traces, generate the regimes, run every pair, write
    transfer_report.json, transfer.md and transfer.png to `out`."""
    from core.config import load_params, with_overrides
    from core.files import write_atomic
    from traces.synth import prefix_regime_frame

    params = load_params(params_file, "cache_sim", CacheSimParams)
    params = with_overrides(params, capacities=tuple(capacities) if capacities else None)
    frames: dict[str, pd.DataFrame] = {}
    from caching.sim import read_block_trace

    for path in traces:
        frames[path.name.split(".")[0]], _ = read_block_trace([path], params_file, limit_rows, log=print)
    for regime in regimes:
        frames[regime] = prefix_regime_frame(regime, rows, seed, mean_rps=mean_rps)
    result = transfer(frames, params, log=print, prior=online_prior(params.online))
    result["cache_predictor"] = predictor_transfer(frames, _cache_params(params_file))
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "transfer_report.json", (json.dumps(result, indent=2) + "\n").encode())
    text = summary(result) + "\n\n" + predictor_summary(result["cache_predictor"])
    (out / "transfer.md").write_text(text + "\n")
    png = plot(result, out / "transfer.png")
    print(text)
    worst = min(min(p["guarded_minus_best_classic"]) for p in result["pairs"])
    print(f"\nworst guarded - best classic over all pairs and capacities: {worst:+.4f}")
    print(f"wrote {out / 'transfer_report.json'}, {out / 'transfer.md'} and {png}")
    return result
