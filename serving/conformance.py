"""Conformance vectors: raw request -> expected features -> expected predictions -> expected decision.

The exporter records them with the reference router into `conformance.jsonl`; a router in any language
replays them and must reproduce every number (within float tolerance) and every decision. NaN is
written as null so that the file is strict JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from features.prompt import WINDOW_HEAD, WINDOW_TAIL
from serving.router import Router, RouteRequest

EDGE_PROMPTS = (
    "",
    "!!!",
    "User: hi\nAssistant: hello\nuser: what is 2+2?",
    "```py\ndef f(x):\n    return x\n```\nWhy does this fail?",
    "什么是机器学习？",
    "Объясни квантовую запутанность.",
    # long prompts: features read a window of the first and last code points (features/prompt.py); its cuts
    # fall inside astral characters' UTF-16 pairs and next to lone surrogates; one is 40,000 characters
    "😀" * (WINDOW_HEAD + WINDOW_TAIL + 1),
    "Why? " + "x" * (WINDOW_HEAD - 5) + "\ud83d" + "y" * 600 + "😀" + "z" * (WINDOW_TAIL - 1),
    "Fix this:\n```js\n" + "const x = () => { return x++; };\n" * 1200 + "```\nUser: what is wrong?",
)


def _floats(values: Iterable[float] | None) -> list[float | None] | None:
    return None if values is None else [None if math.isnan(v) else float(v) for v in values]


def record(router: Router, request: Mapping[str, object]) -> dict:
    """One vector: the request as given, the shared features, per-candidate predictions, the decision."""
    req = RouteRequest.from_dict(request)
    tokens, prompt, text = router.request_features(req)
    embed = router.embed_features(req)
    quality, cost = router.predict(req)
    decision = router.route(req)
    return {
        "request": dict(request),
        "features": {"input_tokens": tokens, "prompt": _floats(prompt), "text": _floats(text), "embed": _floats(embed)},
        "candidates": list(router.models),
        "quality": _floats(quality),
        "cost_usd": _floats(cost),
        "decision": {"model": decision.model, "code": decision.code.value},
    }


def default_requests(prompts: Sequence[str], tasks: Sequence[str | None]) -> list[dict]:
    """Requests over the given prompts plus edge cases, with fixed timestamps (the cost features use the hour)."""
    out = []
    for i, prompt in enumerate([*prompts, *EDGE_PROMPTS, None]):
        req: dict[str, object] = {
            "prompt": prompt,
            "timestamp": f"2025-01-01T{i % 24:02d}:00:00Z",
            "task": tasks[i % len(tasks)] if tasks else None,
        }
        if i % 3 == 0:
            req["input_tokens"] = 17 + 13 * i
        out.append(req)
    return out


def check(router: Router, vectors: Iterable[Mapping], rtol: float = 1e-6, atol: float = 1e-9) -> list[str]:
    """Replay `vectors`; one message per disagreement (empty list = conformant)."""
    problems = []
    for n, vec in enumerate(vectors, 1):
        got = record(router, vec["request"])
        for key in ("prompt", "text", "embed"):
            a, b = vec["features"].get(key), got["features"][key]
            if (a is None) != (b is None) or (
                a is not None
                and not np.allclose(
                    np.array(a, dtype=float), np.array(b, dtype=float), rtol=rtol, atol=atol, equal_nan=True
                )
            ):
                problems.append(f"vector {n}: features.{key} differ")
        for key in ("quality", "cost_usd"):
            if not np.allclose(
                np.array(vec[key], dtype=float), np.array(got[key], dtype=float), rtol=rtol, atol=atol, equal_nan=True
            ):
                problems.append(f"vector {n}: {key} differ")
        if vec["decision"] != got["decision"]:
            problems.append(f"vector {n}: decision {got['decision']} != expected {vec['decision']}")
    return problems


def dumps(vectors: Iterable[Mapping]) -> bytes:
    """JSON lines, ASCII only: non-ASCII text as \\u escapes, so even a lone surrogate (legal in a JSON string,
    not encodable as UTF-8) round-trips."""
    return "".join(json.dumps(v, allow_nan=False, ensure_ascii=True, sort_keys=True) + "\n" for v in vectors).encode()
