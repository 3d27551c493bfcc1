"""Feature speed, one run (a measurement, not a test): microseconds per prompt of each feature family's
per-request path (`prompt_vector`, `text_vector`, `Encoder.vector`) against its batch path (`prompt_matrix`,
`text_matrix`, `Encoder.vectors`) on batches of real prompts, and of `Router.request_vector` per request
against `Router.request_vectors`, on one core.

`text-py`, `prompt-py` and `embed-py` are the families without their C kernels (`features/*_kernel.c`), the
same numbers from Python (the paths taken without a C compiler or with BEAST_NATIVE=0; for the embedding the
piece memos and the `tokenizers` library, warmed as a router warms them), timed in the same run: the ratio lines.

"first" is the first pass over prompts never seen (the word, pair and piece memos warmed on other prompts
only: new words, pairs and pieces are hashed / tokenised then); "again" the best of five interleaved
repeats of the same batch (memos warm: the steady state of a router whose memos hold its traffic's words).

    uv run python -m benchmarks.features [bundle] [batch]
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from core.files import PROJECT
from features.embed import Encoder
from features.prompt import prompt_matrix, prompt_vector, prompt_window
from features.text import text_matrix, text_vector
from features.text_kernel import kernel
from serving.router import Router, RouteRequest

SAMPLES = {"alpaca": "alpaca_eval.parquet", "mmlu": "routellm_mmlu.parquet"}


def _us(fn: Callable[[], object], n: int, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best / n * 1e6


def _row(t: list[float]) -> str:
    return f"first: single {t[0]:6.1f}  batch {t[1]:6.1f}   again: single {t[2]:6.1f}  batch {t[3]:6.1f}"


def _prompts(name: str) -> list[str]:
    frame = pd.read_parquet(PROJECT / "data" / "sample" / SAMPLES[name], columns=["prompt"])
    return list(frame["prompt"].dropna().drop_duplicates())


def _measure(name: str, router: Router, prompts: list[str], others: list[str]) -> None:
    text, embed = router.text, router.embed
    embed_py = Encoder(embed.tokenizer_json, embed.table, embed.offset, embed.max_chars, native=False)
    embed_py.warm(embed_py.vocabulary_words())
    windows = [prompt_window(p) for p in prompts]
    warm = [prompt_window(p) for p in others]
    text_matrix(text, warm), embed.vectors(warm), prompt_matrix(others[:50])  # memos and tables, other prompts
    embed_py.vectors(warm)
    for w in warm:
        text_vector(text, w)
        embed.vector(w)
        embed_py.vector(w)
    families = {
        "prompt": (lambda: [prompt_vector(p) for p in prompts], lambda: prompt_matrix(prompts)),
        "prompt-py": (  # the same family with its regexes (no C kernel): the ratio below
            lambda: [prompt_vector(p, native=False) for p in prompts],
            lambda: prompt_matrix(prompts, native=False),
        ),
        "text": (lambda: [text_vector(text, w) for w in windows], lambda: text_matrix(text, windows)),
        "text-py": (  # the same family without its C kernel: the ratio below
            lambda: [text_vector(text, w, native=False) for w in windows],
            lambda: text_matrix(text, windows, native=False),
        ),
        "embed": (lambda: [embed.vector(w) for w in windows], lambda: embed.vectors(windows)),
        "embed-py": (lambda: [embed_py.vector(w) for w in windows], lambda: embed_py.vectors(windows)),
    }
    n, total, measured = len(prompts), [0.0, 0.0, 0.0, 0.0], {}
    for family, (single, batched) in families.items():
        times = [_us(single, n), _us(batched, n), float("inf"), float("inf")]  # first passes
        for _ in range(5):  # then interleaved repeats (the machine is shared): the best of each
            times[2], times[3] = min(times[2], _us(single, n)), min(times[3], _us(batched, n))
        measured[family] = times
        total = [a + b for a, b in zip(total, times, strict=True)] if not family.endswith("-py") else total
        print(f"  {name:9s} {family:9s} " + _row(times))
    print(f"  {name:9s} {'sum':9s} " + _row(total) + "   (the -py rows not counted)")
    in_c = {
        "text": kernel(text.params.n_features) is not None,
        "prompt": router.prompt_counts_in_c,
        "embed": router.embeds_in_c,
    }
    for family in (f for f, built in in_c.items() if built):
        ratio = [c / p for c, p in zip(measured[family], measured[f"{family}-py"], strict=True)]
        first, again = (
            f"single {ratio[0]:.2f}x  batch {ratio[1]:.2f}x",
            f"single {ratio[2]:.2f}x  batch {ratio[3]:.2f}x",
        )
        print(f"  {name:9s} {family} in C / {family}-py (its time in Python): first: {first}   again: {again}")
    now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    requests = [RouteRequest(prompt=p, task="koala") for p in prompts]
    vec = [float("inf"), float("inf")]
    for _ in range(3):
        vec[0] = min(vec[0], _us(lambda: [router.request_vector(r, now) for r in requests], n))
        vec[1] = min(vec[1], _us(lambda: router.request_vectors(requests, now), n))
    print(f"  {name:9s} request_vector(s), again: single {vec[0]:6.1f}  batch {vec[1]:6.1f}   ({n} prompts)")


def main(bundle: Path = PROJECT / "data" / "bundle", batch: int = 1000) -> None:
    router = Router.load(bundle)
    mmlu = _prompts("mmlu")
    print(f"us per prompt, batches of up to {batch} prompts, one core (single: the per-request path)")
    _measure("alpaca", router, _prompts("alpaca")[:batch], mmlu[batch : 3 * batch])
    _measure("mmlu", router, mmlu[:batch], mmlu[batch:])


if __name__ == "__main__":
    main(*(Path(a) if i == 0 else int(a) for i, a in enumerate(sys.argv[1:])))
