"""Realistic synthetic contract-v1 traces for tests and benchmarks.

Everything is vectorised numpy / pandas (no Python loop per row) and deterministic for a seed: one
`np.random.default_rng(seed)` drives every draw, in a fixed order. `synth_frame` builds clean rows;
`inject_malformed` corrupts a fraction of JSONL lines, each with exactly one problem whose quarantine
reason is known in advance; `write_trace` writes a frame as JSONL / CSV (optionally gzipped) or Parquet.

The generative story, in the order it is drawn (each step's realism choice is documented where it is made):

1. arrivals   - a Markov-modulated Poisson process: runs of rows share a log-normal rate multiplier, so the
                gaps are exponential inside a run and bursty overall (`burstiness` = 0 gives plain Poisson).
2. sessions   - conversations of a few turns, owned by one tenant and one task, spread over the trace by a
                think time between turns; tenants have Zipf-like popularity.
3. models     - drawn per row from the price table, cheap models more popular; a session mostly sticks
                to one model (the router's choice is sticky per conversation).
4. tokens     - input = system prompt + conversation history + new message (log-normal, heavy tail, capped
                at 128k); repeated prompts (`prompt_id`) have a fixed size; output depends on task and model.
5. cache      - `cache_key` is the prompt for repeated prompts and unique otherwise; `cache_hit` is true
                exactly when the key was seen earlier in the trace; prompt-cache `cached_input_tokens`
                covers the reused prefix of later turns and repeated prompts.
6. outcomes   - errors with structure: context_length when the input exceeds a small model's window,
                rate limits inside bursts, timeouts for slow models producing long outputs, 5xx spread
                evenly; the overall failure rate is calibrated to `error_rate`.
7. latency    - log-normal body (time to first token + per-token time, by model size) with a Pareto tail;
                timeouts sit just above the timeout value, rate limits are fast, cache hits are fast.
8. labels     - judge `quality` on a share of successful rows (higher for pricier models, noisy),
                A/B `variant` on a share of sessions, `prefix_blocks` on a share of sessions, and a logged
                `cost_usd` on ~5% of rows (the rest is costed by the ingest from the price table).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from core.config import Count, NonNegativeInt, Positive, Share, load_params, with_overrides
from core.errors import BeastError
from core.files import atomic_path, gzip_writer
from traces.contract import FIELD_BY_NAME, FIELDS, STATUS_ERROR, STATUS_OK, Kind, Reason
from traces.prices import PriceTable, load_prices, price_rows

TASKS = ("chat", "code", "summarise", "extract", "math")
ERROR_TYPES = ("timeout", "rate_limit", "server_error", "context_length")
VARIANTS = ("champion", "challenger")

MAX_INPUT_TOKENS = 128_000
MAX_OUTPUT_TOKENS = 8_192
TIMEOUT_MS = 60_000.0
BLOCK_TOKENS = 256  # tokens per prefix block
MAX_BLOCKS = 32  # longest prefix_blocks list written (keeps rows small)
LOGGED_COST_SHARE = 0.05

# Per task: share of traffic, median new-message tokens, median output tokens, share of repeated prompts,
# and a quality offset (math is harder, extraction easier).
_TASK_MIX = np.array([0.40, 0.25, 0.15, 0.12, 0.08])
_TASK_IN = np.array([300.0, 900.0, 3000.0, 1500.0, 250.0])
_TASK_OUT = np.array([250.0, 450.0, 220.0, 90.0, 400.0])
_TASK_PROMPT_SHARE = np.array([0.15, 0.10, 0.30, 0.55, 0.25])
_TASK_QUALITY = np.array([0.0, -0.02, 0.02, 0.05, -0.06])

# Columns of a synthetic frame, in contract order (`prompt` text is never generated).
COLUMNS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.name != "prompt")

JSONL_SUFFIXES = (".jsonl", ".ndjson")
CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet",)


@dataclass(frozen=True)
class SynthParams:
    """Mirrors params.yaml -> synth."""

    rows: Count = 10_000
    seed: NonNegativeInt = 0
    start: str = "2025-01-01T00:00:00Z"
    tenants: Count = 8
    mean_rps: Positive = 20.0  # average arrivals per second (exact: the trace spans rows / mean_rps seconds)
    burstiness: Share = 0.5  # 0 = Poisson; sd of the log arrival rate is 1.5 x burstiness
    error_rate: Share = 0.03  # overall failure probability; rises inside bursts and for slow models
    malformed: Share = 0.0  # fraction of rows to corrupt when written (for ingest tests)
    prefix_regime: str = "none"  # "none": the story above; else a PREFIX_REGIMES generator (prefix blocks only)


@dataclass(frozen=True)
class SynthResult:
    path: Path
    rows: int  # rows written (lines for JSONL, records for CSV / Parquet)
    malformed: int  # how many of them were corrupted
    malformed_by_reason: Mapping[str, int] = field(default_factory=dict)  # expected quarantine reason -> count


# ---------------------------------------------------------------------------------------------- helpers


def _check_params(p: SynthParams) -> pd.Timestamp:
    if isinstance(p.rows, bool) or not isinstance(p.rows, (int, np.integer)) or p.rows < 0:
        raise BeastError(f"synth.rows: expected an integer >= 0, got {p.rows!r}")
    if isinstance(p.seed, bool) or not isinstance(p.seed, (int, np.integer)) or p.seed < 0:
        raise BeastError(f"synth.seed: expected an integer >= 0, got {p.seed!r}")
    if isinstance(p.tenants, bool) or not isinstance(p.tenants, (int, np.integer)) or p.tenants < 1:
        raise BeastError(f"synth.tenants: expected an integer >= 1, got {p.tenants!r}")
    if not np.isfinite(p.mean_rps) or p.mean_rps <= 0:
        raise BeastError(f"synth.mean_rps: expected a number > 0, got {p.mean_rps!r}")
    if not np.isfinite(p.burstiness) or p.burstiness < 0:
        raise BeastError(f"synth.burstiness: expected a number >= 0, got {p.burstiness!r}")
    if not 0 <= p.error_rate < 1:
        raise BeastError(f"synth.error_rate: expected a number in [0, 1), got {p.error_rate!r}")
    _check_fraction(p.malformed, "synth.malformed")
    try:
        start = pd.Timestamp(p.start)
    except (ValueError, TypeError):
        start = None
    if start is None or pd.isna(start):
        raise BeastError(f"synth.start: expected an RFC 3339 timestamp, got {p.start!r}")
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")
    if not 2000 <= start.year < 2100:
        raise BeastError(f"synth.start: must fall in [2000, 2100), got {p.start!r}")
    return start


def _check_fraction(value: float, where: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise BeastError(f"{where}: expected a fraction in [0, 1), got {value!r}")


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a well-spread 64-bit hash of uint64 values (wraps modulo 2**64 on purpose)."""
    x = np.asarray(x, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _combine(*parts: np.ndarray | int) -> np.ndarray:
    """Hash several integer arrays (broadcast) into one uint64 array."""
    h = np.uint64(0x9E3779B97F4A7C15)
    out: np.ndarray = np.asarray(h)
    for part in parts:
        with np.errstate(over="ignore"):
            out = _mix64(out ^ (np.asarray(part).astype(np.uint64) + h))
    return out


_HEX_PAIRS = np.array([f"{i:02x}".encode() for i in range(256)], dtype="S2")


def _hex(values: np.ndarray, width: int = 16) -> pa.Array:
    """Vectorised lowercase hex of uint64 values: the last `width` of 16 zero-padded digits."""
    v = np.ascontiguousarray(np.asarray(values, dtype=np.uint64).astype(">u8"))
    text = _HEX_PAIRS[v.view(np.uint8).reshape(-1, 8)].view("S16").ravel()
    out = pa.array(text, type=pa.binary(16)).cast(pa.string())
    return out if width == 16 else pc.utf8_slice_codeunits(out, 16 - width)


def _label(prefix: str, values: np.ndarray, width: int) -> pa.Array:
    """prefix + zero-padded decimal, built in Arrow (no Python per row)."""
    digits = pc.utf8_lpad(pc.cast(pa.array(np.asarray(values, dtype=np.int64)), pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _pick(labels: tuple[str, ...] | np.ndarray, index: np.ndarray, present: np.ndarray | None = None) -> pa.Array:
    """labels[index] as an Arrow string array, null where `present` is False."""
    idx = pa.array(np.asarray(index, dtype=np.int64), mask=None if present is None else ~present)
    return pc.take(pa.array(list(labels), type=pa.string()), idx)


def _null_unless(values: pa.Array, present: np.ndarray) -> pa.Array:
    return pc.if_else(pa.array(present), values, pa.scalar(None, type=values.type))


def _rfc3339_ms(t_ms: np.ndarray) -> pa.Array:
    """Epoch milliseconds (non-decreasing) -> "YYYY-MM-DDTHH:MM:SS.mmmZ": each distinct second is formatted
    once and the milliseconds appended in Arrow, so 1M rows cost a few tens of milliseconds."""
    sec = t_ms // 1000
    change = np.ones(sec.size, dtype=bool)
    change[1:] = sec[1:] != sec[:-1]
    uniq = np.datetime_as_string(sec[change].astype("datetime64[s]"), unit="s")
    whole = pc.take(pa.array(uniq.astype(str).tolist(), type=pa.string()), pa.array(np.cumsum(change) - 1))
    ms = pc.utf8_lpad(pc.cast(pa.array(t_ms - sec * 1000), pa.string()), 3, "0")
    return pc.binary_join_element_wise(whole, ".", ms, "Z", "")


def _str(values: pa.Array | pa.ChunkedArray) -> pd.Series:
    return pd.Series(values, dtype="str")


# ---------------------------------------------------------------------------------------------- frame


def synth_frame(params: SynthParams, prices: PriceTable) -> pd.DataFrame:
    """Clean contract-v1 rows, ordered by arrival; the same params and prices give the same frame."""
    start = _check_params(params)
    models = prices.models
    if not models:
        raise BeastError("synth: the price table has no models")
    n = int(params.rows)
    if params.prefix_regime != "none":
        return prefix_regime_frame(params.prefix_regime, n, params.seed, params.start, params.mean_rps, models[0])
    rng = np.random.default_rng(params.seed)
    if n == 0:
        return _empty_frame()

    # 1. Arrivals: a Markov-modulated Poisson process. Runs of rows (geometric lengths, mean 100) share a
    # log-normal rate multiplier m; inside a run gaps are Exp(rate x m). Overall the gaps are a mixture of
    # exponentials, whose coefficient of variation is sqrt(2 exp(sigma^2) - 1) > 1 (= 1 when burstiness is 0).
    # Gaps are rescaled so the trace spans exactly rows / mean_rps seconds.
    sigma = 1.5 * float(params.burstiness)
    run_len = rng.geometric(1 / 100, size=n // 50 + 2)
    run_of_row = np.minimum(np.searchsorted(np.cumsum(run_len), np.arange(n), side="right"), run_len.size - 1)
    log_m = rng.normal(0.0, 1.0, size=run_len.size) * sigma
    burst = np.maximum(log_m[run_of_row], 0.0)  # how far above the average rate this row's run is
    gaps = rng.exponential(1.0, size=n) / np.exp(log_m[run_of_row])
    gaps[0] = 0.0
    gaps *= (n / params.mean_rps) / max(gaps.sum(), 1e-12)
    t_ms = int(start.value // 1_000_000) + np.floor(np.cumsum(gaps) * 1000.0).astype(np.int64)

    # 2. Sessions: 1 + geometric turns (mean 4, capped at 40), each owned by one tenant (Zipf-like
    # popularity) with one task. A session starts at a uniform position and its turns follow after a
    # log-normal think time (median 30 s, converted to positions at mean_rps); sorting all turns by position
    # interleaves sessions while keeping every session's turns in order.
    turns = np.minimum(rng.geometric(0.25, size=n), 40)
    n_sess = int(np.searchsorted(np.cumsum(turns), n) + 1)
    turns = turns[:n_sess]
    turns[-1] -= int(turns.sum()) - n
    first = np.cumsum(turns) - turns
    sess_of_item = np.repeat(np.arange(n_sess), turns)
    turn_of_item = np.arange(n) - first[sess_of_item]
    think = rng.lognormal(np.log(30.0), 1.0, size=n) * params.mean_rps
    think[first] = 0.0
    cum = np.cumsum(think)
    key = rng.uniform(0, n, size=n_sess)[sess_of_item] + cum - cum[first][sess_of_item]
    order = np.argsort(key, kind="stable")
    sess = sess_of_item[order]
    turn = turn_of_item[order]
    # Conversation history grows turn by turn (each earlier exchange adds ~350 tokens, log-normal).
    grow = rng.lognormal(np.log(350.0), 0.5, size=n)
    grow[first] = 0.0
    cg = np.cumsum(grow)
    history = np.floor(cg - cg[first][sess_of_item]).astype(np.int64)[order]

    tenant_w = 1.0 / np.arange(1, params.tenants + 1) ** 0.8
    sess_tenant = rng.choice(params.tenants, size=n_sess, p=tenant_w / tenant_w.sum())
    sess_task = rng.choice(len(TASKS), size=n_sess, p=_TASK_MIX)
    tenant_i = sess_tenant[sess]
    task_i = sess_task[sess]

    # 3. Models: popularity proportional to (price + 0.05)^-0.5 (cheap models more popular); "tier" in [0, 1]
    # is the model's log price, standing in for size: bigger models are slower, more verbose-ish, better.
    cur = [prices.current(m) for m in models]
    unit = np.array([(p.input + p.output) / 2 if p else 1.0 for p in cur])
    model_w = (unit + 0.05) ** -0.5
    model_p = model_w / model_w.sum()
    lp = np.log(unit + 0.05)
    tier_of_model = (lp - lp.min()) / (lp.max() - lp.min()) if lp.max() > lp.min() else np.zeros(len(models))
    verbosity = rng.lognormal(0.0, 0.25, size=len(models))
    sess_model = rng.choice(len(models), size=n_sess, p=model_p)
    row_model = rng.choice(len(models), size=n, p=model_p)
    model_i = np.where(rng.random(n) < 0.8, sess_model[sess], row_model)
    tier = tier_of_model[model_i]

    # 4. Tokens. Repeated prompts: per task a share of rows use a templated prompt drawn Zipf-like from a
    # pool (so prompt ids and cache keys repeat), with a fixed size per prompt. Other rows: system prompt
    # (fixed per tenant x task) + the session's history so far + a log-normal new message (sigma 1.2).
    prompted = rng.random(n) < _TASK_PROMPT_SHARE[task_i]
    pool = max(20, n // 40)
    rank_w = 1.0 / np.arange(1, pool + 1) ** 1.1
    prompt_k = rng.choice(pool, size=n, p=rank_w / rank_w.sum())
    prompt_hash = _combine(task_i, prompt_k, params.seed)
    pool_tokens = rng.lognormal(np.log(_TASK_IN[:, None] * 1.5), 0.9, size=(len(TASKS), pool))
    sys_tokens_tab = rng.lognormal(np.log(400.0), 0.6, size=(params.tenants, len(TASKS)))
    sys_tokens = np.floor(sys_tokens_tab[tenant_i, task_i]).astype(np.int64) + 20
    message = np.floor(rng.lognormal(np.log(_TASK_IN[task_i]), 1.2, size=n)).astype(np.int64) + 1
    input_tokens = np.where(
        prompted, np.floor(pool_tokens[task_i, prompt_k]).astype(np.int64) + 1, sys_tokens + history + message
    )
    input_tokens = np.minimum(input_tokens, MAX_INPUT_TOKENS)
    would_output = rng.lognormal(np.log(_TASK_OUT[task_i] * verbosity[model_i]), 0.8, size=n)
    would_output = np.clip(np.floor(would_output), 1, MAX_OUTPUT_TOKENS).astype(np.int64)

    # 5. Cache. Response cache keyed by the prompt for repeated prompts, unique otherwise; a hit is a key
    # seen earlier in the trace. Prompt cache: later turns reuse the system prompt + history (70-100% of it
    # cached, on 75% of them); repeated prompts reuse 50-80% of the prompt on half of their repeats; a few
    # first turns log an explicit 0. Elsewhere cached_input_tokens is absent.
    key_hash = np.where(prompted, prompt_hash, _combine(np.arange(n), params.seed, 0xCAC4E))
    cache_hit = pd.Series(key_hash).duplicated(keep="first").to_numpy()
    prompt_seen = pd.Series(np.where(prompted, prompt_hash, 0)).duplicated().to_numpy() & prompted
    reuse = rng.random(n)
    frac = rng.uniform(0.7, 1.0, size=n)
    cached = np.full(n, -1, dtype=np.int64)
    later = ~prompted & (turn > 0) & (reuse < 0.75)
    cached[later] = np.floor((sys_tokens + history)[later] * frac[later]).astype(np.int64)
    rep = prompt_seen & (reuse < 0.5)
    cached[rep] = np.floor(input_tokens[rep] * (frac[rep] - 0.2)).astype(np.int64)
    cached[~prompted & (turn == 0) & (reuse < 0.1)] = 0
    cached = np.where(cached >= 0, np.minimum(cached, input_tokens), -1)

    # 6. Outcomes. context_length: the input exceeds the window of a small model (32k below the median tier,
    # 128k+ above, so only small models hit it) -> fails with probability 0.95. Other failures come from a
    # hazard per row: rate_limit grows with how far the row's run is above the average rate (clusters in
    # bursts), timeout grows with the expected generation time relative to the timeout (slow models, long
    # outputs), server_error is flat. The hazard is scaled so the overall failure rate is error_rate; the type
    # is drawn proportionally to the components. Cache hits never fail (the cache answered).
    ms_per_token = 6.0 + 34.0 * tier
    ttft = 250.0 + 900.0 * tier
    expected_ms = ttft + would_output * ms_per_token
    window = np.where(tier < 0.5, 32_768, 1 << 30)
    too_long = (input_tokens > window) & ~cache_hit
    h_rl = 2.0 * burst + 0.05
    h_to = 8.0 * np.minimum(expected_ms / TIMEOUT_MS, 1.5) ** 2 + 0.01
    h_5xx = np.full(n, 0.5)
    hazard = np.where(cache_hit | too_long, 0.0, h_rl + h_to + h_5xx)
    p_fail = _calibrate(hazard, too_long, params.error_rate)
    failed = rng.random(n) < p_fail
    comp = np.stack([h_to, h_rl, h_5xx], axis=1) / np.maximum(h_rl + h_to + h_5xx, 1e-12)[:, None]
    etype = (rng.random(n)[:, None] > np.cumsum(comp, axis=1)).sum(axis=1).clip(0, 2)
    etype = np.where(too_long, 3, etype)
    output_tokens = np.where(failed, 0, would_output)

    # 7. Latency: log-normal time to first token + per-token time with log-normal noise, and a Pareto tail
    # (alpha 1.5) on 3% of rows; successes stay under the timeout. Timeouts: the timeout plus a little
    # (|N(0, 150)| ms); rate limits and context-length rejections are fast; 5xx anywhere up to the timeout.
    body = rng.lognormal(np.log(ttft), 0.5, size=n) + output_tokens * ms_per_token * rng.lognormal(0.0, 0.3, size=n)
    tail = np.where(rng.random(n) < 0.03, 1.0 + rng.pareto(1.5, size=n), 1.0)
    latency = np.minimum(body * tail, TIMEOUT_MS * 0.995)
    err_lat = np.select(
        [etype == 0, etype == 1, etype == 2],
        [
            TIMEOUT_MS + np.abs(rng.normal(0.0, 150.0, size=n)),
            rng.lognormal(np.log(60.0), 0.6, size=n),
            np.minimum(rng.lognormal(np.log(1500.0), 1.0, size=n), TIMEOUT_MS),
        ],
        rng.lognormal(np.log(120.0), 0.4, size=n),
    )
    latency = np.where(failed, err_lat, latency)
    latency = np.where(cache_hit, rng.lognormal(np.log(15.0), 0.5, size=n), latency)
    latency = np.round(latency, 1)

    # 8. Labels. Judge quality on 30% of successes: Beta with mean 0.5 + 0.35 x tier (+ task offset),
    # concentration 10. A/B variant on 25% of sessions (50/50 arms). prefix_blocks on 40% of sessions:
    # blocks of the system prompt (shared per tenant x task), then of the history (shared by the session's
    # turns, so consecutive turns share their leading blocks) or of the repeated prompt.
    mu = np.clip(0.5 + 0.35 * tier + _TASK_QUALITY[task_i], 0.05, 0.95)
    quality = rng.beta(mu * 10.0, (1.0 - mu) * 10.0)
    has_quality = ~failed & (rng.random(n) < 0.3)
    sess_ab = rng.random(n_sess) < 0.25
    sess_arm = rng.random(n_sess) < 0.5
    sess_blocks = rng.random(n_sess) < 0.4
    logged_cost = rng.random(n) < LOGGED_COST_SHARE

    # Identifiers: request ids unique per (seed, row); cache keys and prompt ids are hex hashes.
    tw = max(2, len(str(params.tenants - 1)))
    tenant_names = [f"tenant-{t:0{tw}d}" for t in range(params.tenants)]
    frame = pd.DataFrame(
        {
            "request_id": _str(_label(f"syn-{params.seed}-", np.arange(n), 9)),
            "timestamp": _str(_rfc3339_ms(t_ms)),
            "model": _str(_pick(models, model_i)),
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "status": _str(_pick((STATUS_OK, STATUS_ERROR), failed.astype(np.int64))),
            "prompt_id": _str(_null_unless(pc.binary_join_element_wise("p-", _hex(prompt_hash, 12), ""), prompted)),
            "latency_ms": latency,
            "cost_usd": np.nan,
            "cached_input_tokens": pd.arrays.IntegerArray(np.maximum(cached, 0), cached < 0),
            "error_type": _str(_pick(ERROR_TYPES, etype, failed)),
            "quality": np.where(has_quality, np.round(quality, 3), np.nan),
            "variant": _str(_pick(VARIANTS, sess_arm[sess].astype(np.int64), sess_ab[sess])),
            "tenant": _str(_pick(tenant_names, tenant_i)),
            "session_id": _str(_label(f"sess-{params.seed}-", sess, 8)),
            "task": _str(_pick(TASKS, task_i)),
            "prefix_blocks": _prefix_blocks(
                sess_blocks[sess],
                prompted,
                tenant_i,
                task_i,
                sess,
                prompt_hash,
                sys_tokens,
                history,
                input_tokens,
                params.seed,
            ),
            "cache_hit": cache_hit,
            "cache_key": _str(_hex(key_hash)),
        }
    )

    # Logged cost on ~5% of rows, as billed at the price in force at the row's time (absent when the table
    # has no price then): the ingest keeps it and marks cost_source = logged.
    if logged_cost.any():
        sub = frame.loc[logged_cost]
        when = pd.Series(pd.to_datetime(t_ms[logged_cost], unit="ms", utc=True), index=sub.index)
        p = price_rows(prices, sub["model"], when)
        c = sub["cached_input_tokens"].fillna(0).to_numpy(dtype=float)
        cost = (
            (sub["input_tokens"].to_numpy() - c) * p["input"].to_numpy()
            + c * p["cached_input"].to_numpy()
            + sub["output_tokens"].to_numpy() * p["output"].to_numpy()
        ) / 1e6
        frame.loc[logged_cost, "cost_usd"] = np.round(cost, 10)  # 10 decimals: what the JSONL writer keeps
    return frame[list(COLUMNS)]


def _calibrate(hazard: np.ndarray, forced: np.ndarray, rate: float, cap: float = 0.95) -> np.ndarray:
    """Per-row failure probabilities: `forced` rows fail with `cap`, the rest in proportion to `hazard`,
    scaled so the mean is `rate` (forced rows are scaled down instead if they alone exceed it)."""
    p = np.zeros(hazard.size)
    if rate <= 0 or hazard.size == 0:
        return p
    forced_mass = cap * forced.mean()
    if forced_mass >= rate:
        p[forced] = rate / forced.mean()
        return p
    p[forced] = cap
    need = (rate - forced_mass) * hazard.size
    free = ~forced & (hazard > 0)
    h = hazard[free]
    if h.size == 0:
        return p
    c = need / h.sum()
    for _ in range(50):  # fixed point for the clipping at `cap`: a few iterations over the whole array
        got = np.minimum(c * h, cap).sum()
        if got >= need * (1 - 1e-9) or got >= cap * h.size:
            break
        c *= need / got
    p[free] = np.minimum(c * h, cap)
    return p


def _prefix_blocks(
    has: np.ndarray,
    prompted: np.ndarray,
    tenant: np.ndarray,
    task: np.ndarray,
    sess: np.ndarray,
    prompt_hash: np.ndarray,
    sys_tokens: np.ndarray,
    history: np.ndarray,
    input_tokens: np.ndarray,
    seed: int,
) -> pd.Series:
    """Lists of 48-bit block hashes (object column, None where absent), built flat + offsets in numpy."""
    n = has.size
    sys_b = np.maximum(sys_tokens // BLOCK_TOKENS, 1)
    rest_tokens = np.where(prompted, input_tokens, history)
    rest_b = rest_tokens // BLOCK_TOKENS
    total = np.where(
        has, np.minimum(np.minimum(sys_b + rest_b, np.maximum(input_tokens // BLOCK_TOKENS, 1)), MAX_BLOCKS), 0
    )
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(total, out=offsets[1:])
    row = np.repeat(np.arange(n), total)
    j = np.arange(offsets[-1]) - offsets[row]
    in_sys = j < sys_b[row]
    owner = np.where(prompted[row], prompt_hash[row], sess[row].astype(np.uint64))
    h_sys = _combine(tenant[row], task[row], j, seed, 1)
    h_rest = _combine(owner, prompted[row], j - sys_b[row], seed, 2)
    values = (np.where(in_sys, h_sys, h_rest) >> np.uint64(16)).astype(np.int64)
    arr = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values), mask=pa.array(~has))
    return pd.Series(arr.to_pandas(), dtype=object)


def _empty_frame() -> pd.DataFrame:
    dtypes = {
        Kind.STR: "str",
        Kind.ENUM: "str",
        Kind.TIMESTAMP: "str",
        Kind.INT: "int64",
        Kind.FLOAT: "float64",
        Kind.BOOL: "bool",
        Kind.INT_LIST: "object",
    }
    cols = {c: pd.Series([], dtype=dtypes[FIELD_BY_NAME[c].kind]) for c in COLUMNS}
    cols["cached_input_tokens"] = pd.Series([], dtype="Int64")
    return pd.DataFrame(cols)


# ---------------------------------------------------------------------------------------------- malformed

# Corruption kinds, each producing exactly one problem with a known quarantine reason. JSONL uses all of
# them; CSV replaces the two JSON-only kinds with a record of the wrong width (bad_csv_row).
_JSONL_KINDS: tuple[tuple[str, Reason], ...] = (
    ("truncate", Reason.BAD_JSON),
    ("not_object", Reason.NOT_AN_OBJECT),
    ("drop_model", Reason.MISSING_FIELD),
    ("tokens_text", Reason.BAD_TYPE),
    ("negative_output", Reason.OUT_OF_RANGE),
    ("status_maybe", Reason.BAD_VALUE),
    ("timestamp_text", Reason.BAD_TIMESTAMP),
    ("cached_gt_input", Reason.INCONSISTENT),
    ("error_no_type", Reason.MISSING_FIELD),
    ("duplicate", Reason.DUPLICATE_ID),
)
_CSV_KINDS: tuple[tuple[str, Reason], ...] = (("extra_cell", Reason.BAD_CSV_ROW),) + _JSONL_KINDS[2:]


def _mutate(row: dict[str, Any], kind: str, absent: Any) -> None:
    """Apply one field-level corruption to a parsed row; `absent` is how a missing value is written
    (the _DROP sentinel = delete the key, for JSON; "" for CSV)."""

    def drop(name: str) -> None:
        if absent is _DROP:
            row.pop(name, None)
        else:
            row[name] = absent

    if kind == "drop_model":
        drop("model")
    elif kind == "tokens_text":
        row["input_tokens"] = "many"
    elif kind == "negative_output":
        row["output_tokens"] = -(abs(int(row.get("output_tokens") or 0)) + 1)
    elif kind == "status_maybe":
        row["status"] = "maybe"
    elif kind == "timestamp_text":
        row["timestamp"] = "yesterday"
    elif kind == "cached_gt_input":
        row["cached_input_tokens"] = int(row["input_tokens"]) + 1 + int(row["input_tokens"]) // 10
    elif kind == "error_no_type":
        row["status"] = STATUS_ERROR
        drop("error_type")
    else:  # pragma: no cover - programming error
        raise ValueError(kind)


_DROP = object()


def _plan(n: int, frac: float, seed: int, n_kinds: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices to corrupt, kind index per corrupted line, source line for each) for `n` lines.

    Exactly round(frac x n) lines are corrupted (at most n - 1: line 0 is never corrupted, so every
    duplicate has a clean earlier original); kinds are spread as evenly as possible (counts differ by at
    most one) in a seeded random order. Duplicates copy a random clean line before them.
    """
    _check_fraction(frac, "malformed")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise BeastError(f"malformed seed: expected an integer >= 0, got {seed!r}")
    rng = np.random.default_rng(seed)
    k = min(int(np.floor(frac * n + 0.5)), max(n - 1, 0))
    idx = np.sort(rng.choice(np.arange(1, n), size=k, replace=False)) if k else np.zeros(0, dtype=np.int64)
    kinds = rng.permutation(np.arange(k) % n_kinds)
    clean = np.ones(n, dtype=bool)
    clean[idx] = False
    clean_idx = np.flatnonzero(clean)
    before = np.searchsorted(clean_idx, idx)  # clean lines strictly before each corrupted line (>= 1)
    source = clean_idx[np.floor(rng.random(k) * before).astype(np.int64)] if k else idx
    return idx, kinds, source


def _corrupt_json(kind: str, line: str, source: str) -> str:
    if kind == "truncate":  # the closing brace goes, so the line can never parse
        return line[: max(1, len(line) // 2)]
    if kind == "not_object":
        return "[1, 2]"
    if kind == "duplicate":
        return source
    row = json.loads(line)
    _mutate(row, kind, _DROP)
    return json.dumps(row, separators=(",", ":"), ensure_ascii=False)


def _corrupt_csv(kind: str, line: str, source: str, header: list[str]) -> str:
    if kind == "duplicate":
        return source
    cells = next(csv.reader([line]))
    if kind == "extra_cell":
        cells.append("surplus")
    else:
        row = dict(zip(header, cells, strict=True))
        _mutate(row, kind, "")
        cells = [str(row[h]) for h in header]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow(cells)
    return buf.getvalue()


def inject_malformed(lines: list[str] | np.ndarray, frac: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Corrupt `frac` of contract-v1 JSONL lines (one problem each); return (lines, expected reason per line).

    Exactly round(frac x len(lines)) lines are corrupted (line 0 never is, so at most len - 1), the kinds
    spread evenly: truncated line -> bad_json; `[1, 2]` -> not_an_object; `model` dropped -> missing_field;
    `input_tokens: "many"` -> bad_type; negative `output_tokens` -> out_of_range; `status: "maybe"` ->
    bad_value; `timestamp: "yesterday"` -> bad_timestamp; `cached_input_tokens` > `input_tokens` ->
    inconsistent; `status: "error"` without `error_type` -> missing_field; an exact copy of an earlier clean
    line -> duplicate_id. Reasons are `traces.contract.Reason` values, "" for clean lines (object arrays).
    Lines are expected without their newline. Deterministic for (lines, frac, seed); only the corrupted
    lines are touched in Python.
    """
    out = np.empty(len(lines), dtype=object)
    out[:] = list(lines)
    reasons = np.full(out.size, "", dtype=object)
    idx, kinds, source = _plan(out.size, frac, seed, len(_JSONL_KINDS))
    for i, k, src in zip(idx.tolist(), kinds.tolist(), source.tolist(), strict=True):
        kind, reason = _JSONL_KINDS[k]
        out[i] = _corrupt_json(kind, out[i], out[src])
        reasons[i] = reason.value
    return out, reasons


# ---------------------------------------------------------------------------------------------- writing

_CHUNK_ROWS = 100_000


def _format_of(path: Path) -> tuple[str, bool]:
    name = path.name.lower()
    gz = name.endswith(".gz")
    base = name[:-3] if gz else name
    for fmt, suffixes in (("jsonl", JSONL_SUFFIXES), ("csv", CSV_SUFFIXES), ("parquet", PARQUET_SUFFIXES)):
        if base.endswith(suffixes) and not (gz and fmt == "parquet"):
            return fmt, gz
    raise BeastError(
        f"{path}: unknown trace suffix; expected .jsonl, .jsonl.gz, .ndjson, .ndjson.gz, .csv, .csv.gz or .parquet"
    )


def _json_values(col: pa.Array) -> pa.Array | None:
    """One column as JSON value text (null where the value is absent), or None for a type not handled here."""
    t = col.type
    if pa.types.is_dictionary(t):
        col, t = col.cast(t.value_type), t.value_type
    if pa.types.is_null(t):
        return pa.nulls(len(col), pa.string())
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        col = col.cast(pa.string())  # a chunk of _CHUNK_ROWS values stays far below 2 GiB
        quoted = pc.binary_join_element_wise('"', col, '"', "")
        needs = pc.fill_null(pc.match_substring_regex(col, r'["\\\x00-\x1f]'), False)
        if pc.any(needs).as_py():  # rare: escape just those values in Python
            repl = [json.dumps(v, ensure_ascii=False) for v in pc.filter(col, needs).to_pylist()]
            quoted = pc.replace_with_mask(quoted, needs, pa.array(repl, type=quoted.type))
        return quoted
    if pa.types.is_integer(t) or pa.types.is_boolean(t):
        return pc.cast(col, pa.string())
    if pa.types.is_floating(t):  # NaN / inf are not JSON: written as absent
        return pc.cast(pc.if_else(pc.is_finite(col), col, pa.scalar(None, type=t)), pa.string())
    if (pa.types.is_list(t) or pa.types.is_large_list(t)) and pa.types.is_integer(t.value_type):
        return _list_text(col)
    return None


def _list_text(col: pa.Array) -> pa.Array:
    """list<int> -> "[1,2,3]" text (null stays null)."""
    joined = pc.binary_join(pc.cast(col, pa.list_(pa.string())), ",")
    return pc.binary_join_element_wise("[", joined, "]", "")


def _jsonl_lines(frame: pd.DataFrame) -> pa.ChunkedArray:
    """One JSON object per row, each ending in a newline, built column-wise in Arrow: absent values
    (null / NaN) are left out of their row. Frames with column types not handled fall back to pandas."""
    if any(pd.api.types.is_datetime64_any_dtype(t) for t in frame.dtypes):
        return _pandas_jsonl(frame)  # datetimes: pandas writes them as RFC 3339 text
    table = pa.Table.from_pandas(frame, preserve_index=False)
    keys = [json.dumps(str(c), ensure_ascii=False) + ":" for c in table.column_names]

    def rows(off: int) -> pa.Array | None:
        part = table.slice(off, _CHUNK_ROWS)
        cols = [c.combine_chunks() for c in part.columns]
        # The braces ride on the first / last fragment when those columns have no nulls (saves a full copy).
        opened = bool(cols) and cols[0].null_count == 0
        closed = bool(cols) and cols[-1].null_count == 0
        frags = []
        for i, (key, col) in enumerate(zip(keys, cols, strict=True)):
            vals = _json_values(col)
            if vals is None:
                return None
            head = "{" + key if i == 0 and opened else key
            tail = "}\n" if i == len(cols) - 1 and closed else ""
            frags.append(pc.binary_join_element_wise(head, vals, tail, ""))
        body = pc.binary_join_element_wise(*frags, ",", null_handling="skip") if frags else pa.array([""] * len(part))
        if opened and closed:
            return body
        return pc.binary_join_element_wise("" if opened else "{", body, "" if closed else "}\n", "")

    # Arrow kernels release the GIL: chunks are built on a few threads, and kept in order.
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        chunks = list(pool.map(rows, range(0, table.num_rows, _CHUNK_ROWS)))
    if any(c is None for c in chunks):
        return _pandas_jsonl(frame)
    return pa.chunked_array(chunks, type=pa.string())


def _pandas_jsonl(frame: pd.DataFrame) -> pa.ChunkedArray:
    text = frame.to_json(
        orient="records", lines=True, double_precision=10, force_ascii=False, date_format="iso", date_unit="ms"
    )
    text = text if text.endswith("\n") else text + "\n"
    return pa.chunked_array([_lines_from_bytes(pa.py_buffer(text.encode("utf-8")))])


def _lines_from_bytes(buf: pa.Buffer) -> pa.Array:
    """Split newline-terminated text into a (zero-copy) Arrow array of lines, each keeping its newline."""
    data = np.frombuffer(buf, dtype=np.uint8)
    offsets = np.zeros(1, dtype=np.int64)
    if data.size:
        offsets = np.concatenate([offsets, np.flatnonzero(data == 10) + 1])
    return pa.LargeStringArray.from_buffers(offsets.size - 1, pa.py_buffer(offsets), buf)


def _csv_lines(frame: pd.DataFrame) -> pa.ChunkedArray:
    """CSV via Arrow's writer (header first; lists as JSON arrays; booleans true/false; nulls empty;
    strings quoted), split into lines."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for i, col in enumerate(table.columns):
        if pa.types.is_list(col.type) or pa.types.is_large_list(col.type):
            table = table.set_column(i, table.field(i).name, _list_text(col.combine_chunks()))
    sink = pa.BufferOutputStream()
    pa_csv.write_csv(table, sink)
    return pa.chunked_array([_lines_from_bytes(sink.getvalue())])


def _corrupt_lines(
    lines: pa.ChunkedArray, first: int, frac: float, seed: int, kinds: tuple[tuple[str, Reason], ...], fix: Any
) -> tuple[pa.ChunkedArray, dict[str, int]]:
    """Apply the `_plan` for lines[first:] (newline-terminated) in place of the originals, chunk by chunk."""
    idx, kind_i, source = _plan(len(lines) - first, frac, seed, len(kinds))
    if idx.size == 0:
        return lines, {}
    idx, source = idx + first, source + first
    old = lines.take(pa.array(idx)).to_pylist()
    src = lines.take(pa.array(source)).to_pylist()
    new = np.array(
        [fix(kinds[k][0], o[:-1], s[:-1]) + "\n" for k, o, s in zip(kind_i.tolist(), old, src, strict=True)],
        dtype=object,
    )
    chunks, start = [], 0
    for chunk in lines.chunks:
        stop = start + len(chunk)
        lo, hi = np.searchsorted(idx, [start, stop])
        if hi > lo:
            mask = np.zeros(len(chunk), dtype=bool)
            mask[idx[lo:hi] - start] = True
            chunk = pc.replace_with_mask(chunk, pa.array(mask), pa.array(new[lo:hi].tolist(), type=chunk.type))
        chunks.append(chunk)
        start = stop
    reasons = np.array([kinds[k][1].value for k in kind_i.tolist()])
    names, counts = np.unique(reasons, return_counts=True)
    return pa.chunked_array(chunks, type=lines.type), {str(r): int(c) for r, c in zip(names, counts, strict=True)}


def _text_buffer(arr: pa.Array) -> pa.Buffer | None:
    """The contiguous UTF-8 bytes of a string array's values (no copy)."""
    if len(arr) == 0:
        return None
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=width)[arr.offset : arr.offset + len(arr) + 1]
    return arr.buffers()[2].slice(int(offsets[0]), int(offsets[-1] - offsets[0]))


def _write_lines(lines: pa.ChunkedArray, path: Path, gz: bool) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        # mtime=0 and no file name in the gzip header: the same frame gives byte-identical files;
        # level 1 because these files are rewritten often and read once
        out = gzip_writer(fh, level=1) if gz else fh
        for chunk in lines.chunks:
            buf = _text_buffer(chunk)
            if buf is not None:
                out.write(buf)
        if gz:
            out.close()


def write_trace(frame: pd.DataFrame, path: Path, malformed: float = 0.0, seed: int = 0) -> SynthResult:
    """Write `frame` by suffix (.jsonl / .ndjson / .csv, each optionally .gz, or .parquet), corrupting
    `malformed` of the rows (exactly round(malformed x rows); deterministic for `seed`).

    JSONL: absent values (null / NaN) are left out of the row; costs keep 10 decimals. CSV: header, nulls as
    empty cells, lists as JSON arrays, booleans true/false. Parquet: contract types, except `timestamp` stays
    RFC 3339 text (as in the other formats). Gzip output is byte-reproducible.

    Malformed rows: JSONL gets every kind of `inject_malformed`; CSV gets the same field-level kinds (a
    missing value is an empty cell) plus records with an extra cell (bad_csv_row) in place of the two
    JSON-only kinds; Parquet is typed and cannot carry them, so malformed > 0 with .parquet is an error.
    """
    path = Path(path)
    _check_fraction(malformed, "malformed")
    fmt, gz = _format_of(path)
    if fmt == "parquet" and malformed > 0:
        raise BeastError(f"{path}: malformed rows are only injected into JSONL and CSV, not Parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(frame)
    by_reason: dict[str, int] = {}

    if fmt == "jsonl":
        lines = _jsonl_lines(frame)
        if malformed > 0:
            lines, by_reason = _corrupt_lines(lines, 0, malformed, seed, _JSONL_KINDS, _corrupt_json)
        _write_lines(lines, path, gz)
    elif fmt == "csv":
        lines = _csv_lines(frame)
        if len(lines) != n + 1:
            if malformed > 0:
                raise BeastError(f"{path}: cannot inject malformed rows: some CSV values span several lines")
        elif malformed > 0:
            header = next(csv.reader([lines[0].as_py()]))
            fix = lambda kind, line, src: _corrupt_csv(kind, line, src, header)  # noqa: E731
            lines, by_reason = _corrupt_lines(lines, 1, malformed, seed, _CSV_KINDS, fix)
        _write_lines(lines, path, gz)
    else:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        for i, name in enumerate(table.column_names):
            spec = FIELD_BY_NAME.get(name)
            if spec is not None and spec.kind is not Kind.TIMESTAMP and table.column(i).type != spec.arrow_type:
                table = table.set_column(i, name, table.column(i).cast(spec.arrow_type))
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp)

    return SynthResult(path=path, rows=n, malformed=sum(by_reason.values()), malformed_by_reason=by_reason)


def main(
    out: Path,
    params_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    prices_file: Path = Path("data/prices.yaml"),
) -> SynthResult:
    """Stage entry (`beast traces synth`): params.yaml -> synth (None overrides are ignored), models from the price
    table, then write `out` with params.malformed corrupted rows (seeded by params.seed)."""
    params = load_params(params_file, "synth", SynthParams)
    params = with_overrides(params, **(overrides or {}))
    frame = synth_frame(params, load_prices(Path(prices_file)))
    return write_trace(frame, Path(out), malformed=params.malformed, seed=params.seed)


# ---------------------------------------------------------------------------------------------- prefix regimes

# Prefix-sharing regimes (`prefix_regime_frame`, `beast traces synth --prefix-regime R`): the reuse structure
# of prompt-prefix blocks, and nothing else, so a cache policy can be trained on one regime and tested on
# another. One request = one list of 512-token block ids (hash-chain style: equal ids = equal prefix).
# Time is drawn in "request slots" (mean gap 1 slot = 1 / mean_rps seconds), so a regime looks the same at
# any rate. Every id is a splitmix64 hash of a counter (and the seed), so ids carry no identity across
# regimes or seeds. Regimes (each documented at its generator):
#   system     - shared system prompts: few hot prefixes (Zipf over 200 prompts of 4-16 blocks) + one-off tails
#   multiturn  - multi-turn sessions: each turn re-sends the whole conversation and extends it by 1-3 blocks
#   toolloop   - agent tool loops: a long task prefix re-sent every ~60 slots, extended by one block per call
#   oneoff     - one-off prompts (scan pollution): 70 % unique 8-40-block prompts, 30 % popular templates
#   mixture    - the four above interleaved, a quarter of the requests each
PREFIX_BLOCK_TOKENS = 512
PREFIX_REGIMES = ("system", "multiturn", "toolloop", "oneoff", "mixture")


class _Ids:
    """Fresh block ids: a counter, hashed to 62 bits at the end (`_finish`)."""

    def __init__(self) -> None:
        self.next = 0

    def take(self, k: int) -> list[int]:
        out = list(range(self.next, self.next + k))
        self.next += k
        return out


def _regime_system(rng: np.random.Generator, rows: int, ids: _Ids) -> list[tuple[float, list[int]]]:
    """Shared system prompts: 200 prompts of 4-16 blocks, popularity Zipf (1 / rank), each request = one
    prompt + a one-off user tail of 1-12 new blocks; Poisson arrivals. Reuse: the system blocks only."""
    n_prompts = 200
    prompts = [ids.take(int(k)) for k in rng.integers(4, 17, n_prompts)]
    w = 1.0 / np.arange(1, n_prompts + 1)
    pick = rng.choice(n_prompts, size=rows, p=w / w.sum())
    tails = rng.integers(1, 13, rows)
    t = np.cumsum(rng.exponential(1.0, rows))
    return [(float(t[i]), prompts[pick[i]] + ids.take(int(tails[i]))) for i in range(rows)]


def _sessions(
    rng: np.random.Generator, rows: int, mean_turns: float, think: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A stationary stream of sessions: 1 + geometric turns (mean `mean_turns`) `think` slots apart on
    average (exponential), 3 rows + 100 think turns in all, sessions started uniformly over
    [-50 think, that many slots), so about one turn arrives per slot. Returns (time, session, turn, kept)
    by time for every turn up to the `rows`-th at t >= 0; `kept` marks the turns at t >= 0 (the earlier ones
    only build the history of sessions already running at 0, so the trace starts in the steady state)."""
    total = 3 * rows + int(100 * think)
    turns = rng.geometric(1.0 / mean_turns, size=total)
    n_sess = int(np.searchsorted(np.cumsum(turns), total) + 1)
    turns = turns[:n_sess].copy()
    turns[-1] -= int(turns.sum()) - total
    sess = np.repeat(np.arange(n_sess), turns)
    first = np.cumsum(turns) - turns
    turn = np.arange(total) - first[sess]
    gap = rng.exponential(think, total)
    gap[first] = 0.0
    cum = np.cumsum(gap)
    t = rng.uniform(-50.0 * think, total, n_sess)[sess] + cum - cum[first][sess]
    order = np.argsort(t, kind="stable")
    kept = t[order] >= 0
    last = np.flatnonzero(kept)[rows - 1] if kept.sum() >= rows else len(order) - 1
    order, kept = order[: last + 1], kept[: last + 1]
    return t[order], sess[order], turn[order], kept


def _regime_multiturn(rng: np.random.Generator, rows: int, ids: _Ids) -> list[tuple[float, list[int]]]:
    """Multi-turn sessions: a 2-block system prompt shared by all, then the conversation so far, extended
    by 1-3 new blocks per turn (the previous answer + the new message); mean 6 turns, 300 slots apart
    on average; a request holds at most 64 blocks (the first 64: later turns of a long session re-send
    the same capped prefix)."""
    system = ids.take(2)
    t, sess, turn, kept = _sessions(rng, rows, 6.0, 300.0)
    history: dict[int, list[int]] = {}
    out = []
    for ti, s, keep in zip(t.tolist(), sess.tolist(), kept.tolist()):
        h = history.setdefault(int(s), [])
        h += ids.take(int(rng.integers(1, 4)))
        if keep:
            out.append((ti, (system + h)[:64]))
    return out


def _regime_toolloop(rng: np.random.Generator, rows: int, ids: _Ids) -> list[tuple[float, list[int]]]:
    """Agent tool loops: a loop has a 1-block shared system prompt, its own task prefix of 10-40 blocks,
    then calls (1 + geometric, mean 12) about 60 slots apart (exponential), each call re-sending the
    prefix extended by one tool-result block (short-period, repeated, growing prefixes)."""
    system = ids.take(1)
    t, sess, turn, kept = _sessions(rng, rows, 12.0, 60.0)
    history: dict[int, list[int]] = {}
    out = []
    for ti, s, keep in zip(t.tolist(), sess.tolist(), kept.tolist()):
        s = int(s)
        if s not in history:
            history[s] = ids.take(int(rng.integers(10, 41)))
        else:
            history[s] += ids.take(1)
        if keep:
            out.append((ti, (system + history[s])[:64]))
    return out


def _regime_oneoff(rng: np.random.Generator, rows: int, ids: _Ids) -> list[tuple[float, list[int]]]:
    """One-off prompts (scan pollution): 70 % of requests are unique prompts of 8-40 new blocks; 30 % are
    one of 300 templates of 2-10 blocks, popularity Zipf (rank^-0.9); Poisson arrivals."""
    n_templates = 300
    templates = [ids.take(int(k)) for k in rng.integers(2, 11, n_templates)]
    w = 1.0 / np.arange(1, n_templates + 1) ** 0.9
    pick = rng.choice(n_templates, size=rows, p=w / w.sum())
    unique = rng.random(rows) < 0.7
    size = rng.integers(8, 41, rows)
    t = np.cumsum(rng.exponential(1.0, rows))
    return [(float(t[i]), ids.take(int(size[i])) if unique[i] else templates[pick[i]]) for i in range(rows)]


def _regime_mixture(rng: np.random.Generator, rows: int, ids: _Ids) -> list[tuple[float, list[int]]]:
    """The four regimes interleaved: a quarter of the requests each (the last takes the remainder), each on
    its own time line over the same span, then merged by time."""
    parts = []
    share = rows // 4
    for k, gen in enumerate((_regime_system, _regime_multiturn, _regime_toolloop, _regime_oneoff)):
        n = share if k < 3 else rows - 3 * share
        if n > 0:
            events = gen(rng, n, ids)
            scale = rows / max(max(e[0] for e in events), 1e-9)
            parts += [(e[0] * scale, e[1]) for e in events]
    return sorted(parts, key=lambda e: e[0])


_REGIME_GENERATORS = {
    "system": _regime_system,
    "multiturn": _regime_multiturn,
    "toolloop": _regime_toolloop,
    "oneoff": _regime_oneoff,
    "mixture": _regime_mixture,
}


def prefix_regime_frame(
    regime: str,
    rows: int,
    seed: int = 0,
    start: str = "2025-01-01T00:00:00Z",
    mean_rps: float = 20.0,
    model: str = "synthetic",
) -> pd.DataFrame:
    """Contract-v1 rows of one prefix regime (`PREFIX_REGIMES`), ordered by time: `prefix_blocks`
    (ids of 512-token blocks), `input_tokens` (full blocks + a partial last block of 1-512 tokens),
    `session_id` where the regime has sessions, ok status and 1-400 output tokens; seeded and deterministic."""
    if regime not in _REGIME_GENERATORS:
        raise BeastError(f"synth.prefix_regime: unknown regime {regime!r}; known: none, {', '.join(PREFIX_REGIMES)}")
    rng = np.random.default_rng(seed)
    ids = _Ids()
    events = sorted(_REGIME_GENERATORS[regime](rng, int(rows), ids), key=lambda e: e[0])
    n = len(events)
    slots = np.array([e[0] for e in events]) - (events[0][0] if n else 0.0)
    lengths = np.array([len(e[1]) for e in events], dtype=np.int64)
    flat = np.fromiter((b for e in events for b in e[1]), dtype=np.uint64, count=int(lengths.sum()))
    hashed = (_mix64(flat + np.uint64(seed) * np.uint64(1 << 40)) >> np.uint64(2)).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    blocks = pd.Series(pa.ListArray.from_arrays(pa.array(offsets), pa.array(hashed)).to_pandas(), dtype=object)
    t0 = pd.Timestamp(start)
    t0 = t0.tz_localize("UTC") if t0.tzinfo is None else t0.tz_convert("UTC")
    t_ms = int(t0.value // 1_000_000) + np.floor(slots / mean_rps * 1000.0).astype(np.int64)
    partial = rng.integers(1, PREFIX_BLOCK_TOKENS + 1, n)
    frame = pd.DataFrame(
        {
            "request_id": _str(_label(f"{regime}-{seed}-", np.arange(n), 9)),
            "timestamp": _str(_rfc3339_ms(t_ms)),
            "model": model,
            "input_tokens": np.maximum(lengths - 1, 0) * PREFIX_BLOCK_TOKENS + partial,
            "output_tokens": rng.integers(1, 401, n),
            "status": STATUS_OK,
            "prefix_blocks": blocks,
        }
    )
    return frame.reindex(columns=list(COLUMNS))
