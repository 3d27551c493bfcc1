"""The text family's C kernel (`features/text_kernel.c`) counts exactly the buckets of the Python definition,
and `core.native` builds, caches, rebuilds and refuses kernels as documented."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, needs_cc

import features.text_kernel as tk
from core import native
from features.prompt import prompt_window
from features.text import (
    TextParams,
    bucket,
    bucket_counts,
    fit_text,
    kernel_bytes,
    text_keys,
    text_matrix,
    text_vector,
)

EDGES = [
    "",
    "   ",
    "a",
    "A-B",
    "ab cd",  # one-letter and two-letter grams
    "x" * 1000,  # one long word: a 1,002-byte key
    "12 34 5",
    "Ｈｅｌｌｏ ｗｏｒｌｄ ①",  # NFKC makes ASCII words
    "İstanbul straße ΣΟΦΟΣ",
    "\ud800abc def",  # a lone surrogate
    "a\x00b\x7fc\td\ne",
    "  leading, trailing! ",
]


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    alpaca = pd.read_parquet(ROOT / "data" / "sample" / "alpaca_eval.parquet", columns=["prompt"])["prompt"]
    mmlu = pd.read_parquet(ROOT / "data" / "sample" / "routellm_mmlu.parquet", columns=["prompt"])["prompt"]
    whole = [*alpaca.drop_duplicates(), *mmlu.drop_duplicates().head(300)]
    return [*whole, *map(prompt_window, whole), *EDGES]


def _definition(prompt: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """np.unique of the buckets of `text_keys` (steps 1-4 of features/text.py), key by key."""
    return np.unique(np.array([bucket(k, n) for k in text_keys(prompt)], dtype=np.int64), return_counts=True)


@needs_cc
@pytest.mark.parametrize("n", [2, 7, 1031, 4096])
def test_kernel_counts_the_definitions_buckets(prompts, n: int) -> None:
    fast = tk.kernel(n)
    assert fast is not None  # a compiler is here, so the kernel builds
    for prompt in prompts if n == 4096 else prompts[::7]:
        cols, tf = fast.one(kernel_bytes(prompt), n)
        want_cols, want_tf = _definition(prompt, n)
        assert cols.dtype == tf.dtype == np.int64
        np.testing.assert_array_equal(cols, want_cols, err_msg=prompt[:60])
        np.testing.assert_array_equal(tf, want_tf, err_msg=prompt[:60])


@needs_cc
def test_a_batch_is_its_texts_one_by_one(prompts) -> None:
    texts = [kernel_bytes(p) for p in prompts[:200]] + [b"", b"a", b"", b"!!"]
    nnz, cols, tf = tk.kernel(4096).many(texts, 4096)
    assert nnz.tolist()[-4:] == [0, 2, 0, 0]  # "a": "w:a" and "c: a ", the empty texts and "!!" none
    ends = np.cumsum(nnz)
    for text, end, count in zip(texts, ends, nnz, strict=True):
        one_cols, one_tf = tk.kernel(4096).one(text, 4096)
        np.testing.assert_array_equal(cols[end - count : end], one_cols)
        np.testing.assert_array_equal(tf[end - count : end], one_tf)
    assert [len(a) for a in tk.kernel(4096).many([], 4096)] == [0, 0, 0]


def test_without_the_kernel_python_counts_the_same(prompts, monkeypatch) -> None:
    """More buckets than MAX_BUCKETS (or no compiler) take the Python path: the same counts."""
    assert tk.kernel(tk.MAX_BUCKETS + 1) is None
    for prompt in prompts[::50] + EDGES:
        for got, want in zip(bucket_counts(prompt, 2**31 - 1), _definition(prompt, 2**31 - 1), strict=True):
            np.testing.assert_array_equal(got, want)
    monkeypatch.setattr("features.text.kernel", lambda n: None)
    for prompt in prompts[::50]:
        for got, want in zip(bucket_counts(prompt, 4096), _definition(prompt, 4096), strict=True):
            np.testing.assert_array_equal(got, want)


class _CountsOnly:
    """The kernel with its features step taken away: `features.text` then runs its numpy / scipy steps 5-7."""

    def __init__(self, fast: tk.TextKernel):
        self.one, self.many = fast.one, fast.many

    def vector(self, text, args):
        return None

    vectors = vector


@needs_cc
@pytest.mark.parametrize("params", [TextParams(k=8, n_features=1024), TextParams(sublinear_tf=False, min_df=1)])
def test_the_kernels_features_are_the_training_paths_bit_for_bit(prompts, params: TextParams, monkeypatch) -> None:
    """Steps 5-7 in C (`beast_text_vectors`) give text_matrix's scipy numbers exactly, one text or many."""
    spec = fit_text(pd.Series(prompts[:400]), params)
    texts = [*prompts, "a " * 5000]  # "w:a" 5,000 times: beyond the log table, so numpy computes that row
    fast = tk.kernel(params.n_features)
    c_many, c_one = text_matrix(spec, texts), np.vstack([text_vector(spec, t) for t in texts])
    assert (fast.vector(kernel_bytes(texts[-1]), spec.kernel_args) is None) == params.sublinear_tf
    monkeypatch.setattr("features.text.kernel", lambda n: _CountsOnly(fast))
    scipy_many = text_matrix(spec, texts)
    for got in (c_many, c_one):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got.view(np.uint32), scipy_many.view(np.uint32))
    assert (np.abs(c_one).sum(axis=1) > 0.1).mean() > 0.95  # real features, not zeros


def test_a_missing_kernel_is_said_once_unless_disabled(monkeypatch) -> None:
    monkeypatch.setattr(
        native, "shared_library", lambda source: native.NativeLibrary(None, "no C compiler (cc not on PATH)")
    )
    with pytest.warns(UserWarning, match=r"hashing in Python: no C kernel \(no C compiler \(cc not on PATH\)\)"):
        assert tk._loaded.__wrapped__() is None
    monkeypatch.setattr(
        native, "shared_library", lambda source: native.NativeLibrary(None, "BEAST_NATIVE=0", disabled=True)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tk._loaded.__wrapped__() is None


# ------------------------------------------------------------------------------------------ core.native

ADD = "int add(int a, int b) { return a + b; }\n"


def _source(tmp_path: Path, code: str = ADD) -> Path:
    path = tmp_path / "kernel.c"
    path.write_text(code)
    return path


@needs_cc
def test_a_kernel_is_built_once_then_loaded_from_the_cache(tmp_path: Path, monkeypatch) -> None:
    source, cache = _source(tmp_path), tmp_path / "cache"
    built = native.shared_library.__wrapped__(source, cache)
    assert built.library is not None and built.library.add(2, 3) == 5
    assert len(list(cache.glob("kernel-*.so"))) == 1

    def no_build(*args):
        raise AssertionError("rebuilt although cached")

    monkeypatch.setattr(native, "_build", no_build)
    assert native.shared_library.__wrapped__(source, cache).library.add(40, 2) == 42
    source.write_text(ADD.replace("a + b", "a * b"))  # another source: another entry, built
    monkeypatch.undo()
    assert native.shared_library.__wrapped__(source, cache).library.add(6, 7) == 42
    assert len(list(cache.glob("kernel-*.so"))) == 2


@needs_cc
def test_a_corrupt_cache_entry_is_rebuilt(tmp_path: Path) -> None:
    source, cache = _source(tmp_path), tmp_path / "cache"
    # built by another process: overwriting a library this process has mapped would crash it, not test it
    build = f"from pathlib import Path; from core import native; native.shared_library(Path({str(source)!r}), Path({str(cache)!r}))"
    subprocess.run([sys.executable, "-c", build], cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    (entry,) = cache.glob("kernel-*.so")
    entry.write_bytes(b"not a shared library")
    assert native.shared_library.__wrapped__(source, cache).library.add(1, 1) == 2
    assert entry.read_bytes()[:4] == b"\x7fELF"


@needs_cc
def test_a_build_error_is_one_line_and_no_library(tmp_path: Path) -> None:
    got = native.shared_library.__wrapped__(_source(tmp_path, "int add(int a, int b) { return a + ; }\n"), tmp_path)
    assert got.library is None and not got.disabled
    assert re.match(r"\S+ exited 1: ", got.reason) and "error" in got.reason and "\n" not in got.reason
    assert not list(tmp_path.glob("*.so"))


def test_no_compiler_or_disabled(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CC", "no-such-compiler-here")
    got = native.shared_library.__wrapped__(_source(tmp_path), tmp_path)
    assert (got.library, got.reason, got.disabled) == (None, "no C compiler (no-such-compiler-here not on PATH)", False)
    monkeypatch.setenv("BEAST_NATIVE", "0")
    got = native.shared_library.__wrapped__(_source(tmp_path), tmp_path)
    assert (got.library, got.reason, got.disabled) == (None, "BEAST_NATIVE=0", True)
