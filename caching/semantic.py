"""Semantic (nearest-neighbour) response cache on real prompts: how many rewordings hit, how many answers are wrong.

Experiment (`run_experiment`, all seeded):

1. The distinct prompts are split at random: `cached_share` of them have a cached answer, the rest are the
   held-out (novel) queries. The representation is fitted on the cached prompts only.
2. Queries: `rewrites_per_prompt` rewrites of every cached prompt, which must count as the SAME request,
   plus every held-out prompt, which must miss. Rewrite kinds (`REWRITES`, cycled over the prompts from a
   seeded offset so each kind gets an equal share):
   - `case`: the whole prompt lower-cased;
   - `whitespace`: every whitespace run becomes one space, plus two leading and two trailing spaces;
   - `punctuation`: every character of ``,.;:!?"'`` deleted;
   - `polite`: a prefix, one of "Please ", "Can you ", "Could you ", "Hey, " (seeded), before the prompt
     with its first character lower-cased;
   - `drop_word`: one whitespace-separated word deleted (a seeded one, never the first; prompts of < 4
     words are left as they are);
   - `swap_words`: one seeded pair of adjacent words swapped;
   - `combo`: `polite`, then `drop_word`, then `punctuation`, then `case`.
3. Each query is looked up against the cached prompts by cosine similarity; the nearest cached prompt
   answers when similarity >= threshold. A true hit: a rewrite answered by its own source. A false hit: a
   cached answer served for a different prompt (a held-out query that hits, or a rewrite that hits
   another cached prompt).

Representations (`REPRESENTATIONS`), both from `features/text.py` fitted on the cached prompts:
`tfidf` = steps 1-6 of its recipe (hashed word, word-pair and char-3-gram keys, TF-IDF, unit length; case
and punctuation never reach it), `svd` = step 7 (the k SVD components the router computes with
`text_vector`). `exact` is the baseline: equal normalised text (`normalise`: NFKC, lower case, whitespace
runs as one space, trimmed), the usual cache key (AlpacaEval rows carry no `cache_key`).

Rates per (representation, threshold) (`ThresholdRow`): `hit_rate` = true hits / rewrite queries;
`false_hit_share` = false hits / all hits (0 without hits): the share of served cached answers that are
for another prompt; `false_hit_rate` = false hits / all queries; `novel_false_rate` = held-out queries
that hit / held-out queries. The first two depend on the mix of rewrites and novel queries (default about
1:1; with 7 rewrites per cached prompt a looser threshold passes the same share budget), the last does not.
The chosen threshold (`pick_threshold`) has the highest hit rate among those whose `budget_on` rate
(default `false_hit_share`) is <= `false_hit_budget` (ties: the higher threshold).
"""

from __future__ import annotations

import functools
import json
import random
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from core.config import Count, Fraction, NonNegativeInt, Share
from features.text import TextParams, TextSpec, bucket_counts, fit_text, text_vector, tfidf_matrix, transform_text

POLITE_PREFIXES = ("Please ", "Can you ", "Could you ", "Hey, ")
PUNCTUATION = ",.;:!?\"'"
REPRESENTATIONS = ("tfidf", "svd")


@dataclass(frozen=True)
class SemanticParams:
    """Mirrors params.yaml -> semantic_cache."""

    data: Path = Path("data/sample/alpaca_eval.parquet")  # prompts (column `prompt`); distinct ones are used
    cached_share: Fraction = 0.5  # share of distinct prompts with a cached answer; the rest are novel queries
    rewrites_per_prompt: Count = 1  # rewrites of each cached prompt (kinds cycled)
    thresholds: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.99)
    false_hit_budget: Share = 0.01  # max value of `budget_on` for the chosen threshold
    budget_on: str = (
        "false_hit_share"  # or "false_hit_rate" / "novel_false_rate" (the one independent of the query mix)
    )
    seed: NonNegativeInt = 0
    text: TextParams = field(default_factory=TextParams)  # the features.text representation, fitted on the cache
    out: Path = Path("data/semantic_cache")


# --- rewrites -----------------------------------------------------------------------------------------


def normalise(prompt: str) -> str:
    """The exact-match cache key: NFKC, lower case, whitespace runs as one space, trimmed."""
    return " ".join(unicodedata.normalize("NFKC", prompt).lower().split())


def _case(p: str, _r: random.Random) -> str:
    return p.lower()


def _whitespace(p: str, _r: random.Random) -> str:
    return "  " + " ".join(p.split()) + "  "


def _punctuation(p: str, _r: random.Random) -> str:
    return p.translate({ord(c): None for c in PUNCTUATION})


def _polite(p: str, r: random.Random) -> str:
    return r.choice(POLITE_PREFIXES) + p[:1].lower() + p[1:]


def _drop_word(p: str, r: random.Random) -> str:
    words = p.split()
    if len(words) < 4:
        return p
    del words[r.randrange(1, len(words))]
    return " ".join(words)


def _swap_words(p: str, r: random.Random) -> str:
    words = p.split()
    if len(words) < 2:
        return p
    j = r.randrange(len(words) - 1)
    words[j], words[j + 1] = words[j + 1], words[j]
    return " ".join(words)


def _combo(p: str, r: random.Random) -> str:
    return _case(_punctuation(_drop_word(_polite(p, r), r), r), r)


REWRITES: dict[str, Callable[[str, random.Random], str]] = {
    "case": _case,
    "whitespace": _whitespace,
    "punctuation": _punctuation,
    "polite": _polite,
    "drop_word": _drop_word,
    "swap_words": _swap_words,
    "combo": _combo,
}


@dataclass(frozen=True)
class Queries:
    text: tuple[str, ...]
    source: np.ndarray  # index of the cached prompt a rewrite comes from; -1 for a held-out query
    kind: tuple[str, ...]  # rewrite kind, or "novel"


def make_queries(cached: Sequence[str], held_out: Sequence[str], rewrites_per_prompt: int, seed: int) -> Queries:
    """Rewrites of every cached prompt (kinds cycled from a seeded offset), then the held-out prompts."""
    r = random.Random(seed)
    kinds = list(REWRITES)
    offset = r.randrange(len(kinds))
    text, source, kind = [], [], []
    for i, prompt in enumerate(cached):
        for j in range(rewrites_per_prompt):
            name = kinds[(offset + i * rewrites_per_prompt + j) % len(kinds)]
            text.append(REWRITES[name](prompt, r))
            source.append(i)
            kind.append(name)
    text += list(held_out)
    source += [-1] * len(held_out)
    kind += ["novel"] * len(held_out)
    return Queries(tuple(text), np.array(source, dtype=np.int64), tuple(kind))


# --- lookup -------------------------------------------------------------------------------------------


def svd_matrix(spec: TextSpec, prompts: Sequence[str]) -> np.ndarray:
    """Step 7: the spec's k components, rescaled to unit length for cosine similarity (zero rows stay 0)."""
    x = transform_text(spec, pd.Series(list(prompts), dtype=object)).astype(np.float64)
    return unit_rows(x)


def unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


EMBEDDERS: dict[str, Callable[[TextSpec, Sequence[str]], np.ndarray | sp.csr_matrix]] = {
    "tfidf": tfidf_matrix,
    "svd": svd_matrix,
}


def tfidf_entries(spec: TextSpec, prompt: str) -> tuple[np.ndarray, np.ndarray]:
    """One prompt's `tfidf_matrix` row as (buckets, weights), from `bucket_counts` (the C kernel or memoised
    hashing): the per-request path, tested equal to the batch one."""
    cols, tf = bucket_counts(prompt, spec.params.n_features)
    w = ((1.0 + np.log(tf)) if spec.params.sublinear_tf else tf.astype(np.float64)) * spec.idf[cols]
    norm = np.sqrt(np.dot(w, w))
    return cols, (w / norm if norm > 0 else w)


@dataclass(frozen=True, eq=False)
class SemanticIndex:
    """A cache's lookup state for one representation: the cached prompts' unit vectors as a dense matrix
    (a brute-force scan; fine for thousands of entries, an ANN index beyond)."""

    spec: TextSpec
    representation: str
    vectors: np.ndarray  # n_cached x n_features ("tfidf") or x k ("svd"), float64, unit (or zero) rows

    @staticmethod
    def build(spec: TextSpec, representation: str, cached: Sequence[str]) -> SemanticIndex:
        x = EMBEDDERS[representation](spec, cached)
        return SemanticIndex(spec, representation, x.toarray() if sp.issparse(x) else np.asarray(x))

    @functools.cached_property
    def by_feature(self) -> np.ndarray:
        """`vectors` transposed, contiguous: a request gathers the rows of its few buckets."""
        return np.ascontiguousarray(self.vectors.T)

    def lookup(self, prompt: str) -> tuple[int, float]:
        """The nearest cached prompt of one request and its cosine similarity (first on ties)."""
        if self.representation == "tfidf":
            cols, w = tfidf_entries(self.spec, prompt)
            sims = w @ self.by_feature[cols]
        else:
            sims = self.vectors @ unit_rows(text_vector(self.spec, prompt).astype(np.float64)[None, :])[0]
        i = int(sims.argmax())
        return i, float(sims[i])


def nearest(queries: np.ndarray | sp.spmatrix, cached: np.ndarray | sp.spmatrix) -> tuple[np.ndarray, np.ndarray]:
    """Per query row: index of the most cosine-similar cached row (first on ties) and that similarity.
    Rows must be unit length (or zero)."""
    sims = queries @ cached.T
    sims = sims.toarray() if sp.issparse(sims) else np.asarray(sims)
    idx = sims.argmax(axis=1)
    return idx.astype(np.int64), sims[np.arange(sims.shape[0]), idx].astype(np.float64)


def exact_nearest(cached: Sequence[str], queries: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The baseline as a lookup: the first cached prompt with the same `normalise` key, similarity 1 (else 0)."""
    keys: dict[str, int] = {}
    for i, p in enumerate(cached):
        keys.setdefault(normalise(p), i)
    found = [keys.get(normalise(q), -1) for q in queries]
    idx = np.array(found, dtype=np.int64)
    return np.maximum(idx, 0), (idx >= 0).astype(np.float64)


# --- scoring ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThresholdRow:
    representation: str  # "exact", "tfidf" or "svd"
    threshold: float  # similarity >= threshold hits ("exact": 1.0)
    hit_rate: float  # true hits / rewrite queries
    false_hit_share: float  # false hits / all hits (0 without hits)
    false_hit_rate: float  # false hits / all queries
    novel_false_rate: float  # held-out queries that hit / held-out queries
    true_hits: int
    false_hits: int
    queries: int
    hit_rate_by_kind: Mapping[str, float]  # true hit rate per rewrite kind


def score(representation: str, threshold: float, idx: np.ndarray, sim: np.ndarray, queries: Queries) -> ThresholdRow:
    """Rates of one threshold from each query's nearest cached prompt and its similarity."""
    hit = sim >= threshold
    rewrite = queries.source >= 0
    true = hit & rewrite & (idx == queries.source)
    false = hit & ~true
    kinds = np.array(queries.kind)
    n_hits, n_false = int(hit.sum()), int(false.sum())
    by_kind = {k: float(true[kinds == k].mean()) for k in dict.fromkeys(queries.kind) if k != "novel"}
    return ThresholdRow(
        representation,
        float(threshold),
        float(true[rewrite].mean()) if rewrite.any() else float("nan"),
        n_false / n_hits if n_hits else 0.0,
        n_false / len(hit) if len(hit) else float("nan"),
        float(hit[~rewrite].mean()) if (~rewrite).any() else float("nan"),
        int(true.sum()),
        n_false,
        len(hit),
        by_kind,
    )


BUDGET_RATES = ("false_hit_share", "false_hit_rate", "novel_false_rate")  # ThresholdRow fields a budget can cap


def pick_threshold(
    rows: Sequence[ThresholdRow], budget: float, budget_on: str = "false_hit_share"
) -> ThresholdRow | None:
    """Highest hit rate with `budget_on` <= budget; ties go to the higher threshold; None if none fits."""
    if budget_on not in BUDGET_RATES:
        raise ValueError(f"budget_on must be one of {', '.join(BUDGET_RATES)}, got {budget_on!r}")
    ok = [r for r in rows if getattr(r, budget_on) <= budget]
    return max(ok, key=lambda r: (r.hit_rate, r.threshold)) if ok else None


# --- the experiment -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LookupSpeed:
    representation: str
    one_by_one_per_s: float  # queries/s, one query at a time (`SemanticIndex.lookup`), the router's path
    batch_per_s: float  # queries/s, all queries in one batch


@dataclass(frozen=True)
class SemanticReport:
    prompts: int  # distinct prompts
    cached: int
    held_out: int
    rewrites: int
    params: SemanticParams
    rows: tuple[ThresholdRow, ...]
    chosen: Mapping[str, ThresholdRow | None]  # per representation
    best: ThresholdRow | None  # the chosen row with the highest hit rate over the representations
    speed: tuple[LookupSpeed, ...]

    def to_json(self) -> dict[str, object]:
        p = asdict(self.params)
        p["data"], p["out"] = str(self.params.data), str(self.params.out)
        return {
            "prompts": self.prompts,
            "cached": self.cached,
            "held_out": self.held_out,
            "rewrites": self.rewrites,
            "rewrite_kinds": list(REWRITES),
            "definitions": {
                "hit_rate": "true hits / rewrite queries (true hit: nearest cached prompt is the rewrite's source, similarity >= threshold)",
                "false_hit_share": "false hits / all hits (a false hit serves a cached answer for a different prompt)",
                "false_hit_rate": "false hits / all queries (rewrites + held-out)",
                "novel_false_rate": "held-out queries that hit / held-out queries",
                "chosen": f"highest hit_rate with {self.params.budget_on} <= {self.params.false_hit_budget}",
            },
            "params": p,
            "rows": [asdict(r) for r in self.rows],
            "chosen": {k: None if v is None else asdict(v) for k, v in self.chosen.items()},
            "best": None if self.best is None else asdict(self.best),
            "lookup_speed": [asdict(s) for s in self.speed],
        }


def split_prompts(prompts: Sequence[str], cached_share: float, seed: int) -> tuple[list[str], list[str]]:
    """Distinct prompts (first-seen order) shuffled with `seed`: the first `cached_share` are cached."""
    if not 0.0 < cached_share < 1.0:
        raise ValueError(f"cached_share must be in (0, 1), got {cached_share}")
    distinct = list(dict.fromkeys(prompts))
    order = np.random.default_rng(seed).permutation(len(distinct))
    n = int(round(cached_share * len(distinct)))
    return [distinct[i] for i in order[:n]], [distinct[i] for i in order[n:]]


def lookup_speed(
    spec: TextSpec, cached: Sequence[str], queries: Sequence[str], seconds: float = 0.5
) -> tuple[LookupSpeed, ...]:
    """Queries per second of each representation: one at a time (`SemanticIndex.lookup`, up to `seconds`)
    and all in one batch (embed + `nearest`)."""
    out = []
    for name in REPRESENTATIONS:
        index = SemanticIndex.build(spec, name, cached)
        started = time.perf_counter()
        nearest(EMBEDDERS[name](spec, queries), EMBEDDERS[name](spec, cached))
        batch = len(queries) / max(time.perf_counter() - started, 1e-9)
        index.lookup(queries[0])  # warm-up: builds `by_feature` once
        started, n = time.perf_counter(), 0
        while n < len(queries) and time.perf_counter() - started < seconds:
            index.lookup(queries[n])
            n += 1
        out.append(LookupSpeed(name, n / max(time.perf_counter() - started, 1e-9), batch))
    return tuple(out)


def run_experiment(prompts: Sequence[str], params: SemanticParams, speed_seconds: float = 0.5) -> SemanticReport:
    """Pure: split, rewrite, fit on the cached prompts, look every query up, score every threshold."""
    cached, held_out = split_prompts(prompts, params.cached_share, params.seed)
    queries = make_queries(cached, held_out, params.rewrites_per_prompt, params.seed)
    spec = fit_text(pd.Series(cached, dtype=object), params.text)
    idx, sim = exact_nearest(cached, queries.text)
    rows = [score("exact", 1.0, idx, sim, queries)]
    chosen: dict[str, ThresholdRow | None] = {}
    for name in REPRESENTATIONS:
        idx, sim = nearest(EMBEDDERS[name](spec, queries.text), EMBEDDERS[name](spec, cached))
        mine = [score(name, t, idx, sim, queries) for t in sorted(params.thresholds)]
        rows += mine
        chosen[name] = pick_threshold(mine, params.false_hit_budget, params.budget_on)
    picks = [r for r in chosen.values() if r is not None]
    best = max(picks, key=lambda r: r.hit_rate) if picks else None
    speed = lookup_speed(spec, cached, list(queries.text), speed_seconds)
    n_rewrites = int((queries.source >= 0).sum())
    return SemanticReport(
        len(cached) + len(held_out), len(cached), len(held_out), n_rewrites, params, tuple(rows), chosen, best, speed
    )


# --- output -------------------------------------------------------------------------------------------


def plot(report: SemanticReport, path: Path) -> Path:
    """Hit rate and false-hit share vs threshold per representation; chosen thresholds marked."""
    from core.plots import plt, save_figure  # Agg backend: no display needed

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colors = {"tfidf": "tab:blue", "svd": "tab:orange"}
    for name in REPRESENTATIONS:
        rows = [r for r in report.rows if r.representation == name]
        t = [r.threshold for r in rows]
        ax.plot(t, [r.hit_rate for r in rows], marker="o", color=colors[name], label=f"{name}: hit rate (rewrites)")
        ax.plot(
            t,
            [r.false_hit_share for r in rows],
            marker="x",
            linestyle="--",
            color=colors[name],
            label=f"{name}: false hits / hits",
        )
        pick = report.chosen.get(name)
        if pick is not None:
            ax.axvline(pick.threshold, color=colors[name], alpha=0.4, linewidth=3)
            ax.annotate(
                f"{name} chosen {pick.threshold:g}",
                (pick.threshold, pick.hit_rate),
                textcoords="offset points",
                xytext=(-90, -18),
                fontsize=8,
                color=colors[name],
            )
    exact = next(r for r in report.rows if r.representation == "exact")
    ax.axhline(exact.hit_rate, color="gray", linestyle=":", label=f"exact match: hit rate {exact.hit_rate:.2f}")
    ax.axhline(
        report.params.false_hit_budget,
        color="red",
        linestyle=":",
        label=f"false-hit budget {report.params.false_hit_budget:g}",
    )
    ax.set_xlabel("cosine similarity threshold")
    ax.set_ylabel("rate")
    ax.set_title(
        f"semantic cache: {report.cached} cached prompts, {report.rewrites} rewrites, {report.held_out} novel prompts",
        fontsize=10,
    )
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="center left")
    return save_figure(fig, path)


def summary(report: SemanticReport) -> str:
    """Markdown table, one row per (representation, threshold), the chosen ones in bold."""
    kinds = list(REWRITES)
    chosen = {(r.representation, r.threshold) for r in report.chosen.values() if r is not None}
    lines = [
        "| representation | threshold | hit rate | false hits / hits | false hits / queries | novel false | "
        + " | ".join(kinds)
        + " |",
        "|---|---:|---:|---:|---:|---:|" + "---:|" * len(kinds),
    ]
    for r in report.rows:
        mark = "**" if (r.representation, r.threshold) in chosen else ""
        thr = "exact" if r.representation == "exact" else f"{r.threshold:g}"
        by_kind = " | ".join(f"{r.hit_rate_by_kind.get(k, float('nan')):.2f}" for k in kinds)
        lines.append(
            f"| {mark}{r.representation}{mark} | {mark}{thr}{mark} | {r.hit_rate:.3f} | {r.false_hit_share:.4f} | {r.false_hit_rate:.4f} | {r.novel_false_rate:.4f} | {by_kind} |"
        )
    return "\n".join(lines)


def read_prompts(paths: Sequence[Path]) -> list[str]:
    """Non-null prompts of Parquet files (pandas) or other trace files (validated through `traces.load.load_traces`)."""
    from core.errors import BeastError
    from traces.ingest import IngestParams
    from traces.load import load_traces

    frames = {str(p): pd.read_parquet(p) for p in paths if p.suffix == ".parquet"}
    others = [p for p in paths if p.suffix != ".parquet"]
    if others:
        frames[", ".join(map(str, others))] = load_traces(others, IngestParams().prices)
    no_prompt = [name for name, f in frames.items() if "prompt" not in f.columns]
    if no_prompt:
        raise BeastError(f"semantic-cache: no `prompt` column in {', '.join(no_prompt)}")
    return [str(p) for f in frames.values() for p in f["prompt"].dropna()]


def main(
    params_file: Path | None = None, traces: Sequence[Path] | None = None, out: Path | None = None
) -> SemanticReport:
    """`beast cache semantic`: run the experiment, write semantic_report.json and semantic_cache.png to `out`."""
    from core.config import load_params
    from core.errors import BeastError

    params = load_params(params_file, "semantic_cache", SemanticParams)
    if out is not None:
        params = replace(params, out=out)
    paths = list(traces) if traces else [params.data]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise BeastError(f"semantic-cache: file not found: {', '.join(missing)}")
    prompts = read_prompts(paths)
    print(
        f"semantic-cache on {', '.join(p.name for p in paths)}: {len(set(prompts)):,} distinct prompts, budget {params.budget_on} <= {params.false_hit_budget:g}"
    )
    try:
        report = run_experiment(prompts, params)
    except ValueError as exc:
        raise BeastError(f"semantic-cache: {exc}") from None
    params.out.mkdir(parents=True, exist_ok=True)
    json_path = params.out / "semantic_report.json"
    from core.files import write_atomic

    write_atomic(json_path, (json.dumps(report.to_json(), indent=2) + "\n").encode())
    png = plot(report, params.out / "semantic_cache.png")
    print(f"\n{report.cached} cached prompts, {report.rewrites} rewrites, {report.held_out} held-out prompts\n")
    print(summary(report))
    for name, r in report.chosen.items():
        print(
            f"\n{name}: "
            + (
                "no threshold meets the budget"
                if r is None
                else f"chosen threshold {r.threshold:g}: hit rate {r.hit_rate:.3f}, false hits / hits {r.false_hit_share:.4f}, novel false {r.novel_false_rate:.4f}"
            )
        )
    print(
        "\nlookup speed: "
        + "; ".join(
            f"{s.representation} {s.one_by_one_per_s:,.0f} queries/s one by one, {s.batch_per_s:,.0f} in a batch"
            for s in report.speed
        )
    )
    print(f"wrote {json_path} and {png}")
    return report
