"""Offline A/B: replay two bundles on the same held-out prompts and score each choice with the logged answer.

Where a trace file holds several models' answers to one prompt (AlpacaEval: 14 models x 805 prompts, each
with a judged quality and a cost), a router's choice for that prompt can be scored without serving it: the
logged quality and cost of the model it picked. Both bundles route every prompt, so the two arms are
paired by ``prompt_id`` and the gate (`abtest.gate.decide`) uses paired tests on them.

Only prompts whose chosen model was logged for *both* arms are kept (otherwise the pairs would not be the
same prompts); how many were dropped is reported, never hidden. By default only the quality predictor's
held-out prompts are replayed (the same `group_split` as `beast train quality`), so neither bundle is
scored on prompts it was trained on when both were trained with the same split settings.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from serving.router import Router, RouteRequest

VARIANTS = ("champion", "challenger")


@dataclass(frozen=True)
class ReplayResult:
    experiment: (
        pd.DataFrame
    )  # contract-v1 rows, one per (variant, prompt): variant, prompt_id, model, quality, cost_usd
    prompts: int  # prompts replayed (before dropping)
    dropped: Mapping[str, int]  # variant -> prompts dropped because its chosen model had no logged answer
    chosen: Mapping[str, Mapping[str, int]]  # variant -> model -> prompts routed to it


def _answers(traces: pd.DataFrame) -> pd.DataFrame:
    """Logged answers per (prompt_id, model): mean quality, cost, tokens; only prompts with >= 2 models."""
    rows = traces[traces["prompt_id"].notna() & traces["quality"].notna() & (traces["status"] == "ok")]
    rows = rows[rows.groupby("prompt_id")["model"].transform("nunique") >= 2]
    agg = {
        "quality": "mean",
        "cost_usd": "mean",
        "input_tokens": "first",
        "output_tokens": "mean",
        "timestamp": "first",
    }
    return rows.groupby(["prompt_id", "model"], sort=True).agg({k: v for k, v in agg.items() if k in rows})


def _requests(traces: pd.DataFrame, prompt_ids: list[str]) -> list[RouteRequest]:
    first = traces.drop_duplicates("prompt_id").set_index("prompt_id").loc[prompt_ids]
    tasks = first["task"] if "task" in first else pd.Series([None] * len(first), index=first.index)
    return [
        RouteRequest(prompt=p if isinstance(p, str) else None, input_tokens=int(t) if pd.notna(t) else None, task=k if isinstance(k, str) else None, timestamp=pd.Timestamp(ts).to_pydatetime() if pd.notna(ts) else None)
        for p, t, k, ts in zip(first["prompt"], first["input_tokens"], tasks, first["timestamp"], strict=True)
    ]  # fmt: skip


def replay(routers: Mapping[str, Router], traces: pd.DataFrame, prompt_ids: list[str] | None = None) -> ReplayResult:
    """Pure apart from the routers' own state: both arms route the same prompts (in one batch each, with the
    same clock), and every choice is scored with the logged answer of the model it chose."""
    traces = traces[traces["prompt_id"].notna()].assign(prompt_id=lambda f: f["prompt_id"].astype(str))
    answers = _answers(traces)
    ids = sorted(
        set(answers.index.get_level_values("prompt_id"))
        & set(prompt_ids if prompt_ids is not None else answers.index.get_level_values("prompt_id"))
    )
    requests = _requests(traces[traces["prompt_id"].isin(ids)], ids)
    picks = {v: [d.model for d in routers[v].route_many(requests, now=0.0)] for v in routers}
    logged = {v: [(pid, m) in answers.index for pid, m in zip(ids, picks[v], strict=True)] for v in routers}
    both = np.logical_and.reduce([np.array(logged[v], dtype=bool) for v in routers]) if ids else np.zeros(0, dtype=bool)
    frames = []
    for v in routers:
        keep = [(pid, m) for (pid, m), ok in zip(zip(ids, picks[v], strict=True), both, strict=True) if ok]
        got = (
            answers.loc[keep].reset_index() if keep else pd.DataFrame(columns=["prompt_id", "model", *answers.columns])
        )
        got.insert(0, "variant", v)
        got.insert(0, "request_id", [f"replay-{v}-{pid}" for pid in got["prompt_id"]])
        got["status"] = "ok"
        frames.append(got)
    experiment = pd.concat(frames, ignore_index=True)
    dropped = {v: int(len(ids) - sum(logged[v])) for v in routers}
    chosen = {v: dict(pd.Series(picks[v], dtype=object).value_counts().sort_index().astype(int)) for v in routers}
    return ReplayResult(experiment, len(ids), dropped, chosen)


def write_experiment(result: ReplayResult, path: Path) -> Path:
    """The experiment as contract-v1 JSON lines (what `beast gate --experiment` reads), written atomically."""
    from core.files import write_atomic

    def row(r: Mapping[str, object]) -> dict:
        out = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()}
        ts = out.get("timestamp")
        out["timestamp"] = (
            pd.Timestamp(ts).isoformat()
            if ts is not None and not pd.isna(ts)
            else dt.datetime(2025, 1, 1, tzinfo=dt.UTC).isoformat()
        )
        for key in ("input_tokens", "output_tokens"):
            if out.get(key) is not None:
                out[key] = int(round(float(out[key])))
        return out

    lines = [json.dumps(row(r), default=str) for r in result.experiment.to_dict("records")]
    return write_atomic(Path(path), ("\n".join(lines) + "\n").encode())


def main(
    champion: Path,
    challenger: Path,
    traces: Path,
    out: Path,
    params_file: Path | None = None,
    all_prompts: bool = False,
) -> ReplayResult:
    """`beast eval replay`: load both bundles, pick the held-out prompts, replay, write the experiment file."""
    from core.config import load_params
    from models.common import group_split
    from models.quality import quality_rows
    from models.train import TrainParams
    from traces.load import load_traces

    train = load_params(params_file, "train", TrainParams)
    frame = load_traces([Path(traces)], train.prices)
    ids = None
    if not all_prompts:
        rows = quality_rows(frame)
        q = train.quality
        split = group_split(rows["prompt_id"], q.test_fraction, salt=f"quality-test-{q.seed}")
        ids = sorted(rows.loc[split.test, "prompt_id"].astype(str).unique())
    routers = {"champion": Router.load(champion), "challenger": Router.load(challenger)}
    result = replay(routers, frame, ids)
    write_experiment(result, out)
    print(f"replayed {result.prompts} {'held-out ' if ids is not None else ''}prompts through both bundles -> {out}")
    for v in VARIANTS:
        top = ", ".join(f"{m} {n}" for m, n in sorted(result.chosen[v].items(), key=lambda kv: -kv[1])[:4])
        print(f"  {v}: {top}{' ...' if len(result.chosen[v]) > 4 else ''}")
    for v, n in result.dropped.items():
        if n:
            print(f"  {v}: {n} prompts routed to a model without a logged answer there (dropped from both arms)")
    print(f"next: uv run beast gate --experiment {out}")
    return result
