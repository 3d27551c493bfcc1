"""The README's result tables, generated from the committed metrics (`make docs`; checked by tests/test_readme_tables.py).

Each generated block sits between two HTML comments in README.md, on lines of their own:

    <!-- metrics:NAME -->
    ...generated Markdown...
    <!-- /metrics:NAME -->

`python -m evaluation.readme [README.md] [--check] [--metrics DIR]` rewrites what is between the markers (the
rest of the file is left alone, byte for byte) from `data/metrics/*.json`; `--check` writes nothing and exits 1
when a block is stale. Blocks (`BLOCKS`):

- `run-summary`: the example end of `make run` (the Prefect flow's summary, `pipelines/flows.py`), numbers from
  quality / cost / cache / bench.json;
- `predictors`: held-out metrics of the three predictors beside their baselines (quality / cost / cache.json);
- `tuning`: default vs tuned parameters on the same test side (tune_<predictor>.json, `beast tune`);
- `routing-alpaca`: the routing benchmark on the committed AlpacaEval sample (bench.json, DVC stage `evaluate`).

Standard library only: `make docs` runs in a second, and the numbers shown are the committed ones, rounded here
and nowhere else. The wording around the numbers (which held-out side, which baseline) is fixed text below.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from core.files import PROJECT, write_atomic

METRICS = PROJECT / "data" / "metrics"
README = PROJECT / "README.md"
PREDICTORS = ("quality", "cost", "cache")

Metrics = Mapping[str, Any]


class ReadmeError(ValueError):
    """A marker is missing, repeated, unclosed or out of order, or a metrics file lacks a number a block shows."""


def load_metrics(folder: Path = METRICS) -> dict[str, Metrics]:
    """Every `*.json` of `folder` by stem (quality, cost, cache, bench, tune_quality, ...)."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(Path(folder).glob("*.json"))}


def _get(metrics: Mapping[str, Metrics], file: str, *path: str) -> Any:
    value: Any = metrics.get(file)
    if value is None:
        raise ReadmeError(f"data/metrics/{file}.json is missing")
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            raise ReadmeError(f"data/metrics/{file}.json has no {'.'.join(path)}")
        value = value[key]
    return value


def _f(v: float | None, digits: int = 3) -> str:
    return "-" if v is None else f"{round(float(v), digits) + 0.0:.{digits}f}"  # + 0.0: no "-0.000"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{float(v):.1%}"


def _ci(ci: Sequence[float | None] | None) -> str:
    return "" if not ci or None in ci else f" ({_f(ci[0])} .. {_f(ci[1])})"


def _row(cells: Sequence[str]) -> str:
    """A Markdown table row; an empty cell is `| |`."""
    return "|" + "|".join(f" {c} " if c else " " for c in cells) + "|"


def _bold(text: str, on: bool) -> str:
    return f"**{text}**" if on else text


# ------------------------------------------------------------------------------------------------ blocks


def run_summary(m: Mapping[str, Metrics]) -> str:
    """What `make run` ends with on a fresh clone (version 1 of each predictor, first gate), as the flow formats
    it (`pipelines/flows.py` `summary_markdown`: same picks, same rounding), shortened to three routers."""
    picks = {
        "quality": ("auc_vs_strongest", "auc", "brier"),
        "cost": ("azure.mdape", "alpaca.mdape"),
        "cache": ("auc",),
    }
    lines = ["```", "| predictor | version | key metrics |", "|---|---|---|"]
    for p in PREDICTORS:
        got = _get(m, p, "metrics")
        lines.append(f"| {p} | 1 | {', '.join(f'{k} {got[k]:.3f}' for k in picks[p] if k in got)} |")
    pair = _get(m, "bench", "pair")
    learned = _get(m, "bench", "pair", "routers", "pair/learned")
    ci = learned.get("apgr_ci") or (None, None)
    ci_text = f" (95% CI {ci[0]:.3f} .. {ci[1]:.3f})" if None not in ci else ""
    p95 = pair.get("random_apgr_p95")
    p95_text = f", random's 95th percentile {p95:.3f}" if p95 is not None else ""
    lines += [
        "",
        f"Routing benchmark (strong model {_get(m, 'bench', 'strong')}; pair/learned APGR {learned['apgr']:.3f}{ci_text}{p95_text}):",
        "| router | AIQ / oracle | cost saved vs always-strong at >= 95% of its quality | at 100% |",
    ]
    routers = _get(m, "bench", "routers")

    def saved(v: float | None) -> str:
        return "never reaches it" if v is None else f"{v:.1%}"

    shown = ("learned/tradeoff", "knn/tradeoff", "oracle")
    for i, name in enumerate(n for n in shown if n in routers):
        r = routers[name]
        more = "   ..." if i == len(shown) - 1 else ""
        lines.append(
            f"| {name} | {r['aiq_vs_oracle']:.3f} | {saved(r.get('cost_savings_95'))} | {saved(r.get('cost_savings'))} |{more}"
        )
    lines += [
        "",
        "Gate: **KEEP CHAMPION** (first version: the challenger already is the champion)",
        "Bundle: `data/bundle` (versions {'cache': '1', 'cost': '1', 'quality': '1'})",
        "```",
    ]
    return "\n".join(lines)


def predictors(m: Mapping[str, Metrics]) -> str:
    """Held-out numbers of each predictor beside its honest baselines."""
    q, qb = _get(m, "quality", "metrics"), _get(m, "quality", "baselines")
    pm, knn = qb["per_model_mean"], qb["knn_text"]
    c, cb = _get(m, "cost", "metrics"), _get(m, "cost", "baselines", "per_model")
    k, kb = _get(m, "cache", "metrics"), _get(m, "cache", "baselines", "recency_frequency")
    rows = [
        ("quality", "20% of AlpacaEval prompts (by prompt_id)", 'AUC "as good as the strongest model"',
         _f(q["auc_vs_strongest"]),
         f"{_f(pm['auc_vs_strongest'])} per-model mean, {_f(knn['auc_vs_strongest'])} kNN (text + embedding)"),
        ("", "", "Spearman / ECE", f"{_f(q['spearman'])} / {_f(q['ece'])}",
         f"{_f(pm['spearman'])} / {_f(pm['ece'])} per-model mean"),
        ("cost", "last 30 min of Azure traces", "MdAPE output tokens", _f(c["azure.mdape"]),
         f"{_f(cb['azure.mdape'])} per-model median"),
        ("", "", "summed tokens error / P90 coverage", f"{_pct(c['azure.sum_error_mean'])} / {_f(c['azure.p90_coverage'])}",
         f"{_pct(cb['azure.sum_error_mean'])} / {_f(cb['azure.p90_coverage'])}"),
        ("", "20% of AlpacaEval prompts", "summed USD error / P90 coverage",
         f"{_pct(c['alpaca.cost_sum_error_mean'])} / {_f(c['alpaca.p90_coverage'])}",
         f"{_pct(cb['alpaca.cost_sum_error_mean'])} / {_f(cb['alpaca.p90_coverage'])}"),
        ("cache", "last 25% of the Mooncake trace (time)", "AUC / PR-AUC of prefix reuse within 300 s",
         f"{_f(k['auc'])} / {_f(k['pr_auc'])}", f"{_f(kb['auc'])} / {_f(kb['pr_auc'])} recency"),
    ]  # fmt: skip
    head = ["| predictor | held-out data | metric | ours | baseline |", "|---|---|---|---|---|"]
    return "\n".join(head + [_row(r) for r in rows])


def tuning(m: Mapping[str, Metrics]) -> str:
    """`beast tune`: the test-side metric with default and with tuned parameters (improvement > 0 = better)."""
    lines = [
        "| predictor | test-side metric | default | tuned | trials (complete / pruned) | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for p in PREDICTORS:
        name = f"tune_{p}"
        if name not in m:
            continue
        t = m[name]
        digits = 4 if t["metric"] == "logloss" else 3
        verdict = "tuned is better" if t["improvement"] > 0 else "tuning did not help"
        lines.append(
            f"| {p} | {t['metric']} | {_f(t['default_test'], digits)} | {_f(t['tuned_test'], digits)} | "
            f"{t['trials']} ({t['complete']} / {t['pruned']}) | {verdict} |"
        )
    if len(lines) == 2:
        raise ReadmeError("no data/metrics/tune_<predictor>.json: run `beast tune all`")
    return "\n".join(lines)


def routing_alpaca(m: Mapping[str, Metrics]) -> str:
    """The AlpacaEval rows of the routing table: pair routers (APGR, CPT) and the policies (cost saved at >= 95%
    of always-strong's quality, with its bootstrap CI), beside random; bold = best of the non-random routers
    (AIQ only where it beats random's)."""
    b = _get(m, "bench", "routers")
    pair = _get(m, "bench", "pair")
    strong, weak = _get(m, "bench", "strong"), _get(m, "bench", "weak")
    pairs = {n: pair["routers"][n] for n in ("pair/learned", "pair/knn") if n in pair["routers"]}
    policies = [n for n in ("learned/tradeoff", "knn/tradeoff") if n in b]
    order = [n for n in ("pair/learned", "learned/tradeoff", "pair/knn", "knn/tradeoff") if n in b]
    best_apgr = max((c["apgr"] for c in pairs.values()), default=None)
    best_saved = max((b[n]["cost_savings_95"] for n in order if b[n]["cost_savings_95"] is not None), default=None)
    random_aiq = b["random"]["aiq"] if "random" in b else None
    best_aiq = max(b[n]["aiq"] for n in order)
    models = _get(m, "bench", "models") if "models" in m["bench"] else None
    title = (
        f"AlpacaEval, {_get(m, 'bench', 'prompts'):,} prompts{f' x {models} models' if models else ''} (judge pref.)"
    )
    lines = [
        "AlpacaEval is the committed sample: its rows are the DVC `evaluate` stage's `data/metrics/bench.json`",
        "(`make docs` writes them; MMLU and MT-Bench above are runs of the imported RouteLLM sets, not in a clone):",
        "",
        "| data set (k-fold by prompt) | router | APGR (95% CI) | CPT(50%) | CPT(80%) | saved at >= 95% (CI) | AIQ |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, name in enumerate(order):
        r = b[name]
        first = title if i == 0 else ""
        label = f"{name} ({strong} vs {weak})" if name == "pair/learned" else name
        saved = _bold(_f(r["cost_savings_95"]), r["cost_savings_95"] is not None and r["cost_savings_95"] == best_saved)
        aiq = _bold(_f(r["aiq"]), r["aiq"] == best_aiq and (random_aiq is None or r["aiq"] > random_aiq))
        if name in pairs:
            c = pairs[name]
            apgr = f"{_bold(_f(c['apgr']), c['apgr'] == best_apgr)}{_ci(c.get('apgr_ci'))}"
            lines.append(_row([first, label, apgr, _f(c["cpt50"]), _f(c["cpt80"]), saved, aiq]))
        else:
            ci = _ci(r.get("cost_savings_95_ci")) if name in policies else ""
            lines.append(_row([first, label, "", "", "", f"{saved}{ci}", aiq]))
    if "random" in b:
        seeds = pair.get("random_seed_count")
        spread = (
            f"mean {_f(pair['random_apgr_mean'])}, 95th pct {_f(pair['random_apgr_p95'])}"
            if pair.get("random_apgr_mean") is not None
            else _f(pair["random_apgr"])
        )
        cpt50 = pair.get("random_cpt50_mean", pair["random_cpt50"])
        cpt80 = pair.get("random_cpt80_mean", pair["random_cpt80"])
        lines.append(
            f"| | random{f', {seeds} seeds' if seeds else ''} | {spread} | {_f(cpt50)} | {_f(cpt80)} | "
            f"{_f(b['random']['cost_savings_95'])} (one seed) | {_f(random_aiq)} |"
        )
    return "\n".join(lines)


BLOCKS: dict[str, Callable[[Mapping[str, Metrics]], str]] = {
    "run-summary": run_summary,
    "predictors": predictors,
    "tuning": tuning,
    "routing-alpaca": routing_alpaca,
}


# ------------------------------------------------------------------------------------------------ markers


def _marker(name: str, closing: bool = False) -> str:
    return f"<!-- {'/' if closing else ''}metrics:{name} -->"


_MARKER = re.compile(r"^<!-- (/?)metrics:([a-z0-9-]+) -->$", re.MULTILINE)


def blocks_in(text: str) -> dict[str, str]:
    """The body of every block in `text` (between its two marker lines, without them), by name."""
    found: dict[str, str] = {}
    open_name, body_start = None, 0
    for match in _MARKER.finditer(text):
        closing, name = match.group(1) == "/", match.group(2)
        if not closing:
            if open_name is not None:
                raise ReadmeError(f"{_marker(name)} inside the block {open_name!r}")
            if name in found:
                raise ReadmeError(f"{_marker(name)} appears twice")
            open_name, body_start = name, match.end() + 1
        else:
            if open_name != name:
                raise ReadmeError(f"{_marker(name, True)} closes {'nothing' if open_name is None else repr(open_name)}")
            found[name] = text[body_start : match.start()].removesuffix("\n")
            open_name = None
    if open_name is not None:
        raise ReadmeError(f"{_marker(open_name)} is never closed ({_marker(open_name, True)})")
    return found


def render(metrics: Mapping[str, Metrics], names: Sequence[str] = tuple(BLOCKS)) -> dict[str, str]:
    """Each block's Markdown from the metrics."""
    return {name: BLOCKS[name](metrics) for name in names}


def rewrite(text: str, rendered: Mapping[str, str]) -> str:
    """`text` with the body of each block in `rendered` replaced; every one of them must be in `text` once."""
    present = blocks_in(text)
    missing = [n for n in rendered if n not in present]
    if missing:
        raise ReadmeError(
            "no block " + ", ".join(f"{_marker(n)} ... {_marker(n, True)}" for n in missing) + ": add the markers"
        )
    for name, body in rendered.items():
        start, end = _marker(name), _marker(name, True)
        i = text.index(start + "\n") + len(start) + 1
        j = text.index(end, i)
        text = text[:i] + body + "\n" + text[j:]
    return text


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m evaluation.readme", description="Rewrite the README's generated result tables."
    )
    ap.add_argument("readme", nargs="?", type=Path, default=README, help="Markdown file (default: README.md)")
    ap.add_argument("--metrics", type=Path, default=METRICS, help="folder of the metrics JSON (default: data/metrics)")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a block is stale")
    args = ap.parse_args(argv)
    try:
        text = args.readme.read_text()
        new = rewrite(text, render(load_metrics(args.metrics)))
    except (OSError, ReadmeError, KeyError, TypeError, ValueError) as exc:
        print(f"{args.readme}: {exc}", file=sys.stderr)
        return 2
    stale = [n for n, body in blocks_in(new).items() if blocks_in(text).get(n) != body]
    if args.check:
        if stale:
            print(f"{args.readme}: stale blocks {', '.join(stale)}: run `make docs`", file=sys.stderr)
            return 1
        return 0
    if new != text:
        write_atomic(args.readme, new.encode())
    print(f"{args.readme}: {', '.join(stale) if stale else 'no block'} changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
