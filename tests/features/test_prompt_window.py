"""The prompt window: every prompt feature reads a bounded part of the prompt, so its cost is bounded too.

Proved by equality rather than by timing: two prompts that share their first WINDOW_HEAD and last
WINDOW_TAIL code points get identical features (but `chars` / `tokens_est`) however long and whatever
lies between, so the work cannot depend on the middle.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from features.prompt import (
    CHARS_CAP,
    PROMPT_FEATURES,
    WINDOW_HEAD,
    WINDOW_JOIN,
    WINDOW_TAIL,
    prompt_features,
    prompt_vector,
    prompt_window,
)
from features.text import TextParams, fit_text, text_vector, transform_text

LENGTH_ONLY = [PROMPT_FEATURES.index("chars"), PROMPT_FEATURES.index("tokens_est")]
HEAD = "Explain this code, please:\n```py\ndef f(x):\n    return x + 1\n```\n" + "a" * WINDOW_HEAD
TAIL = "b" * WINDOW_TAIL + "\nWhat does it print for 3?"


def test_window_known_answers() -> None:
    fits = "é" * (WINDOW_HEAD + WINDOW_TAIL)
    assert prompt_window(fits) is fits
    assert prompt_window("") == ""
    longer = "h" * WINDOW_HEAD + "MIDDLE" + "t" * WINDOW_TAIL
    assert prompt_window(longer) == "h" * WINDOW_HEAD + WINDOW_JOIN + "t" * WINDOW_TAIL
    astral = "😀" * (WINDOW_HEAD + WINDOW_TAIL + 1)  # code points, not UTF-16 units
    assert prompt_window(astral) == "😀" * WINDOW_HEAD + WINDOW_JOIN + "😀" * WINDOW_TAIL


@pytest.mark.parametrize("middle", ["", "x" * 10, "```" * 5000, "\n1. item\nUser: hi\n" * 60_000, "中文" * 500_000])
def test_features_of_a_long_prompt_depend_only_on_its_head_and_tail(middle: str) -> None:
    short = HEAD + "-" * 100 + TAIL
    long = HEAD + middle + "-" * 100 + TAIL
    a, b = prompt_vector(short), prompt_vector(long)
    rest = [i for i in range(len(PROMPT_FEATURES)) if i not in LENGTH_ONLY]
    np.testing.assert_array_equal(a[rest], b[rest])
    assert b[PROMPT_FEATURES.index("chars")] == min(len(long), CHARS_CAP)
    assert b[PROMPT_FEATURES.index("tokens_est")] == math.ceil(min(len(long), CHARS_CAP) / 4)


def test_chars_counts_code_points_up_to_its_cap_and_the_token_estimate_does_not_stop_there() -> None:
    from serving.router import RouteRequest, input_tokens

    for n, want in ((0, 0), (CHARS_CAP - 1, CHARS_CAP - 1), (CHARS_CAP, CHARS_CAP), (CHARS_CAP + 1, CHARS_CAP)):
        assert prompt_vector("😀" * n)[PROMPT_FEATURES.index("chars")] == want
        assert prompt_features(pd.Series(["😀" * n]))["chars"].iloc[0] == want
    assert input_tokens(RouteRequest(prompt="😀" * 1_000_000)) == 250_000  # the whole prompt, in code points


def test_ratios_divide_by_the_window_and_batch_equals_single() -> None:
    prompt = "1" * WINDOW_HEAD + "z" * 10_000 + "2" * WINDOW_TAIL
    v = prompt_vector(prompt)
    wchars = WINDOW_HEAD + len(WINDOW_JOIN) + WINDOW_TAIL
    assert v[PROMPT_FEATURES.index("digit_ratio")] == (WINDOW_HEAD + WINDOW_TAIL) / wchars
    assert v[PROMPT_FEATURES.index("lines")] == 2  # the join is one newline
    prompts = pd.Series([prompt, HEAD + "m" * 3000 + TAIL, "short one?", None], dtype=object)
    batch = prompt_features(prompts).to_numpy()
    single = np.stack([prompt_vector(p) for p in prompts]).astype(np.float32)
    np.testing.assert_array_equal(batch, single)


def test_text_features_of_the_window_match_between_batch_and_single() -> None:
    corpus = pd.Series([f"prompt number {i} about topic {i % 7} and code {i % 3}" for i in range(60)])
    spec = fit_text(corpus, TextParams(n_features=256, k=4, min_df=1))
    long = "topic 1 " * 200 + "code 2 " * 300
    window = prompt_window(long)
    np.testing.assert_allclose(
        transform_text(spec, pd.Series([window]))[0], text_vector(spec, window), rtol=0, atol=1e-6
    )
    assert not np.array_equal(text_vector(spec, window), text_vector(spec, long))
