"""`beast eval routing` smoke run on a small synthetic contract-v1 file where routing visibly pays: a cheap model is
the best on one kind of prompt (poems) and useless on the other (arithmetic), which the prompt text shows."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import write_jsonl

from beast.cli import main
from evaluation.metrics import aiq, hull, hull_value
from evaluation.routing import OUTPUTS, pick_pair

PRICES = {
    "gemma-2b-it": (0.10, 0.10),
    "FuseChat-Llama-3.1-8B-Instruct": (0.20, 0.20),
    "gpt4_1106_preview": (10.0, 30.0),
}
# mean quality per (model, kind of prompt): gemma is best on poems and bad at sums, gpt4 good everywhere
QUALITY = {
    "gemma-2b-it": {"poem": 0.9, "sum": 0.1},
    "FuseChat-Llama-3.1-8B-Instruct": {"poem": 0.5, "sum": 0.5},
    "gpt4_1106_preview": {"poem": 0.8, "sum": 0.8},
}
WORDS = ["river", "winter", "lantern", "harbour", "meadow", "comet", "violin", "orchard", "glacier", "sparrow"]


def synthetic_rows(prompts: int = 60, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(prompts):
        kind = "poem" if i % 2 == 0 else "sum"
        if kind == "poem":
            text = f"Write a short poem about a {WORDS[i % 10]} and a {WORDS[(i * 3 + 1) % 10]}, with rhymes and gentle imagery."
        else:
            a, b, c = rng.integers(100, 9999, 3)
            text = f"Compute {a} + {b} and then multiply the result by {c}. Show every step of the arithmetic: {a}+{b}={a + b}?"
        for j, (model, (p_in, p_out)) in enumerate(PRICES.items()):
            inp, out = len(text) // 4, int(rng.integers(150, 250)) * (2 if model.startswith("gpt4") else 1)
            q = float(np.clip(QUALITY[model][kind] + rng.normal(0, 0.05), 0, 1))
            rows.append(
                {
                    "request_id": f"r{i}-{j}",
                    "timestamp": f"2024-01-01T{i // 60:02d}:{i % 60:02d}:{j:02d}Z",
                    "model": model,
                    "input_tokens": inp,
                    "output_tokens": out,
                    "status": "ok",
                    "prompt": text,
                    "prompt_id": f"p{i:03d}",
                    "quality": q,
                    "cost_usd": (inp * p_in + out * p_out) / 1e6,
                    "task": kind,
                }
            )
    return rows


PARAMS = {
    "features": {"use_context": False, "text": {"n_features": 512, "k": 4, "min_df": 1}},
    "train": {
        "quality": {
            "heads": "auto",
            "num_leaves": 4,
            "min_data_in_leaf": 5,
            "num_boost_round": 120,
            "early_stopping_rounds": 15,
            "learning_rate": 0.1,
            "knn_k": 5,
        },
        "cost": {"num_boost_round": 30, "min_data_in_leaf": 5},
    },
    "evaluate": {"folds": 4, "seed": 0, "bootstrap": 200, "grid": 61, "random_seeds": 50},
}


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    tmp = tmp_path_factory.mktemp("bench")
    traces = write_jsonl(tmp / "traces.jsonl", synthetic_rows())
    params = tmp / "params.yaml"
    params.write_text(yaml.safe_dump(PARAMS))
    out = tmp / "out"
    assert main(["eval", "routing", "--traces", str(traces), "--out", str(out), "--params", str(params)]) == 0
    return traces, out, json.loads((out / "report.json").read_text())


def test_outputs_have_the_fixed_names_and_fields(bench_run) -> None:
    _, out, report = bench_run
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUTS)
    for name, r in report["routers"].items():
        assert {"aiq", "aiq_vs_oracle", "cost_savings", "savings_vs_oracle", "points", "regret"} <= set(r), name
    assert {"strong", "weak", "apgr", "cpt50", "cpt80"} <= set(report["pair"])
    first = json.loads((out / "decisions.jsonl").open().readline())
    assert list(first)[:4] == ["router", "knob", "prompt_id", "model"]
    for png in ("cost_quality.png", "pgr.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_default_pair_is_best_quality_and_cheapest(bench_run) -> None:
    pair = bench_run[2]["pair"]
    assert (pair["strong"], pair["weak"]) == ("gpt4_1106_preview", "gemma-2b-it")
    assert pair["apgr"] > 0.7 and pair["apgr"] > pair["random"]["apgr"] + 0.2  # the learned pair router finds the sums
    assert pair["cpt50"] < pair["random"]["cpt50"] and pair["cpt80"] < pair["random"]["cpt80"]


def test_learned_router_beats_random_and_the_oracle_dominates(bench_run) -> None:
    routers = bench_run[2]["routers"]
    for name in ("learned/threshold", "learned/tradeoff", "pair/learned"):
        assert routers[name]["aiq"] > routers["random"]["aiq"] + 0.05, name
        assert routers[name]["cost_savings"] is not None and routers[name]["cost_savings"] > 0.3, name
    oracle = routers["oracle"]
    assert oracle["aiq_vs_oracle"] == 1.0 and oracle["regret"] == 0.0
    vertices = np.array(sorted(oracle["points"]))
    for name, r in routers.items():
        assert r["aiq"] <= oracle["aiq"] + 1e-12, name
        pts = np.array(r["points"])  # no point above the oracle's curve (mixing with its neighbours)
        assert (pts[:, 1] <= hull_value(hull(vertices), pts[:, 0]) + 1e-9).all(), name


def test_every_number_is_recomputable_from_decisions_and_traces(bench_run) -> None:
    """decisions.jsonl + the trace file (plain pandas, no project code) give the report's points and AIQ."""
    traces, out, report = bench_run

    def jsonl(path: Path) -> pd.DataFrame:  # the json module: exact floats (pandas' fast parser rounds 0.3)
        return pd.DataFrame([json.loads(line) for line in path.read_text().splitlines()])

    logged = jsonl(traces).groupby(["prompt_id", "model"], as_index=False)[["quality", "cost_usd"]].mean()
    d = jsonl(out / "decisions.jsonl").merge(logged, on=["prompt_id", "model"], how="left")
    assert d["quality"].notna().all()
    assert d.groupby("prompt_id")["fold"].nunique().max() == 1  # a prompt sits in one test fold
    d["knob"] = d["knob"].fillna(-1.0)
    for name, r in report["routers"].items():
        means = d[d["router"] == name].groupby("knob", sort=False)[["cost_usd", "quality"]].mean()
        knobs = [-1.0 if k is None else k for k in r["knobs"]]
        assert np.allclose(means.loc[knobs].to_numpy(), np.array(r["points"]), rtol=1e-12, atol=0), name
    single = {
        m: logged[logged["model"] == m][["cost_usd", "quality"]].mean().to_numpy() for m in logged["model"].unique()
    }
    cheapest = min(single.values(), key=lambda v: v[0])
    lo, hi = cheapest[0], max(v[0] for v in single.values())
    r = report["routers"]["learned/tradeoff"]
    assert aiq(np.array(r["points"]), lo, hi, tuple(cheapest)) == pytest.approx(r["aiq"], rel=1e-12)


def test_pair_defaults_and_a_named_model_that_is_absent() -> None:
    rows = pd.DataFrame({"model": ["a", "b", "c"] * 2, "quality": [0.9, 0.5, 0.1] * 2, "cost_usd": [3.0, 2.0, 1.0] * 2})
    assert pick_pair(rows, None, None) == ("a", "c")
    assert pick_pair(rows, "b", None) == ("b", "c")
    with pytest.raises(Exception, match="--strong 'zz': no such model in the traces; models: a, b, c"):
        pick_pair(rows, "zz", None)


def test_bench_help_has_an_example(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["eval", "routing", "--help"])
    assert "example:\n  beast eval routing --traces" in capsys.readouterr().out


def test_calibrated_sweeps_run_from_the_cheapest_model_to_the_best_predicted(bench_run) -> None:
    """Knob grids come from the training folds' predictions: level 1 of tradeoff is cheapest everywhere,
    level 0 of threshold too, and every pair router's curve starts at always-weak and ends at always-strong."""
    _, out, report = bench_run
    d = pd.DataFrame([json.loads(line) for line in (out / "decisions.jsonl").read_text().splitlines()])
    cheapest = d[d["router"] == "learned/tradeoff"].groupby("knob")["model"].agg(lambda m: (m == "gemma-2b-it").mean())
    assert (
        cheapest.loc[1.0] == 1.0 and cheapest.loc[0.0] < 0.6
    )  # lambda 0 picks by quality: not the cheap model on sums
    assert (d[(d["router"] == "learned/threshold") & (d["knob"] == 0.0)]["model"] == "gemma-2b-it").all()
    for name, curve in report["pair"]["routers"].items():
        assert curve["shares"][0] == 0.0 and curve["shares"][-1] == 1.0, name
        assert curve["pgr"][0] == pytest.approx(0.0) and curve["pgr"][-1] == pytest.approx(1.0), name
        lo, hi = curve["apgr_ci"]
        assert lo <= curve["apgr"] <= hi, name
    rnd = report["pair"]["random_seeds"]
    assert rnd["seeds"] == 50 and 0.45 < rnd["apgr_mean"] < 0.55 and rnd["apgr_p95"] > rnd["apgr_mean"]
    assert report["pair"]["apgr"] > rnd["apgr_p95"]  # the learned pair router beats 95% of random routers
    for name in ("learned/tradeoff", "knn/tradeoff"):
        assert report["routers"][name]["cost_savings_95"] >= report["routers"][name]["cost_savings"], name


def test_transfer_trains_on_one_file_and_tests_on_every_prompt_of_another(tmp_path: Path) -> None:
    def renamed(rows: list[dict], prefix: str) -> list[dict]:
        return [r | {"prompt_id": prefix + r["prompt_id"], "request_id": prefix + r["request_id"]} for r in rows]

    train = write_jsonl(tmp_path / "train.jsonl", renamed(synthetic_rows(60, seed=1), "a-"))
    test = write_jsonl(tmp_path / "test.jsonl", renamed(synthetic_rows(40, seed=2), "b-"))
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(PARAMS))
    out = tmp_path / "out"
    assert (
        main(
            [
                "eval",
                "routing",
                "--traces",
                str(test),
                "--train-traces",
                str(train),
                "--out",
                str(out),
                "--params",
                str(params),
            ]
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text())
    assert report["folds"] == 0 and report["train_traces"] == str(train) and report["prompts"] == 40
    assert {json.loads(line)["fold"] for line in (out / "decisions.jsonl").read_text().splitlines()} == {0}
    assert report["pair"]["apgr"] > 0.7  # the poem / sum split transfers to new prompts of the same kinds
    # the same prompts on both sides is not a transfer test
    assert (
        main(
            [
                "eval",
                "routing",
                "--traces",
                str(train),
                "--train-traces",
                str(train),
                "--out",
                str(tmp_path / "o2"),
                "--params",
                str(params),
            ]
        )
        == 2
    )
