"""The prompt family's C kernel (`features/prompt_kernel.c`) gives the regexes' numbers bit for bit: on every
sample and hostile prompt, on edge cases of every pattern, and on random texts made of the patterns' own
characters; without it the regexes run, said once."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from conftest import assert_a_missing_kernel_is_said_once, needs_cc
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_feature_batches import EDGES, prompts  # noqa: F401 - `prompts` is a fixture

import features.prompt_kernel as pk
from core import native
from features.prompt import (
    _BIT_NAMES,
    _COMPILED,
    ASTRAL_SAMPLE,
    PROMPT_FEATURES,
    _built_kernel,
    _char_bits,
    prompt_matrix,
    prompt_vector,
    prompt_window,
)

# pieces the patterns look at: whitespace, code and math symbols, fences, list markers, roles, keywords, verbs,
# wh-words, LaTeX, identifiers around the 64-character limit, upper case (lowered patterns), a NUL byte
PIECES = [
    *" \t\n\r\x0b\x0c\x00`{}[]();=!<>-+&|:#*_\\^~$?,.\"'/",
    *"0123456789abcxyzABCXYZ",
    *["```", "```py\n", "def ", "class(", "import\t", "elif(", "Return ", "#include", "</div>", "<a1>", "</ >"],
    *["foo(bar)", "f(x\n)", "g(h(i))", "a" * 63 + "(x)", "b" * 64 + "(y)", "c" * 65 + "(z)", "9d(e)"],
    *["==", "=>", "->", "++", "+=", "&&", "||", "::", "!=", "<=", ">="],
    *["1. ", "- ", "* ", "123) ", "1234. ", "12.x", "\n  2)\t", "-x"],
    *["user:", "Human :", "assistant\t:", "users:", "\n user :"],
    *["What", "how ", "which", "WHY?", "whom", "somewhat", "when.", "where", "who"],
    *["please", "please, ", "Please write", "pleased", "write", "Explain", "act", "sorting", "rank."],
    *["solve", "Equations", "math2", "2math", "percent", "\\frac", "\\SQRT", "\\pix", "x = 2", "a^b", "1 * (", ") + 3"],
    *["?", "? \n", "?\r\n\t", '> "', "(#_-"],
    # lowercasing that changes the length ("İ") or makes ASCII (Kelvin sign -> "k": "make"), the patterns'
    # non-ASCII members, each class, whitespace that is not the word pattern's, a lone surrogate, astral
    *["İ", "\u212a", "ma\u212ae ", "ß", "×", "÷", "2 × 3", "？", "• ", "\n• x", "中文", "カナ", "한", "ΣΟΦΟΣ"],
    *["ﬁ", "مرحبا", "Привет", "Ｗｈａｔ", "é", "\u00a0", "\u2028", "\ud800", "\U0001f600", "\U00020000"],
]


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-for-bit equality (NaN rows included)."""
    return a.shape == b.shape and np.array_equal(a.view(np.uint64), b.view(np.uint64))


def _differences(prompt: str) -> list[tuple[str, float, float]]:
    fast, slow = prompt_vector(prompt, native=True), prompt_vector(prompt, native=False)
    return [
        (PROMPT_FEATURES[i], fast[i], slow[i]) for i in np.flatnonzero(fast.view(np.uint64) != slow.view(np.uint64))
    ]


@needs_cc
def test_the_kernel_is_built_and_reads_every_pattern_the_regexes_do() -> None:
    fast = _built_kernel()
    assert fast is not None and fast.width == len(PROMPT_FEATURES)
    text = "Please, write def f(x):\n1. a == b\n- c\nUser: what is 2 + 3?\n```py\nx;\n```"
    row = dict(zip(PROMPT_FEATURES, fast.row(text, float(len(text))), strict=True))
    # known answers: code tokens f(x), "==" and ";" (this "def" is not at a line start), list items "1. " and
    # "- ", one role line (turns 2), a fence, math (2 + 3), "please, write", the first wh-word "what"; not a
    # question: its "?" is followed by the fence, and it starts with "please"
    assert (row["code_tokens"], row["list_items"], row["turns"], row["lines"]) == (3.0, 2.0, 2.0, 7.0)
    assert (row["has_code"], row["math"], row["imperative"], row["q_what"], row["question"]) == (
        1.0,
        1.0,
        1.0,
        1.0,
        0.0,
    )
    assert row["code_ratio"] == pytest.approx(len("```py\nx;\n```") / len(text))
    assert _differences(text) == []


@needs_cc
def test_every_sample_and_hostile_prompt_and_window_gives_the_regexes_numbers(prompts) -> None:  # noqa: F811
    texts = [p for p in prompts if p is not None]
    texts += [prompt_window(p) for p in texts if len(p) > 385]
    assert sum(not prompt_window(p).isascii() for p in texts) > 300  # many take the code point paths
    bad = [(p[:60], d) for p in texts if (d := _differences(p))]
    assert bad == []
    assert _same(prompt_matrix(prompts, native=True), prompt_matrix(prompts, native=False))


@needs_cc
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(PIECES), max_size=40).map("".join))
@example("\ndef f():\n  return 1")
@example("\n1. a")
@example("a" * 64 + "(x) " + "b" * 65 + "(y)")
@example("please,\t,explain")
@example("x\\FRAC")
@example("ma\u212ae a list")  # lowercased: "make a list", an instruction
@example("İİ what?")  # lowercased: 4 code points before "what", the window has 2
def test_random_texts_of_the_patterns_characters_give_the_regexes_numbers(text: str) -> None:
    assert _differences(text) == []


@needs_cc
def test_a_batch_is_its_prompts_one_by_one() -> None:
    batch = list(EDGES) + ["x" * 1000 + "\n1. What?", None, "", "中文 what"]
    np.testing.assert_array_equal(
        prompt_matrix(batch, native=True).view(np.uint64),
        np.vstack([prompt_vector(p, native=True) for p in batch]).view(np.uint64),
    )


@needs_cc
def test_a_kernel_that_disagrees_with_the_module_is_not_used() -> None:
    library = native.shared_library(pk.SOURCE).library
    assert isinstance(library, ctypes.CDLL)
    words, bmp = (("what",),) * len(pk.LISTS), np.zeros(0x10000, np.uint16)
    with pytest.warns(UserWarning, match=r"counting with regexes: prompt_kernel.c writes"):
        assert pk.load_kernel(pk.PromptSetup(PROMPT_FEATURES[::-1], words, pk.CLASSES, bmp, 0)) is None
    with pytest.raises(ValueError, match="reads classes"):
        pk.PromptKernel(library, pk.PromptSetup(PROMPT_FEATURES, words, pk.CLASSES[1:], bmp, 0))
    with pytest.raises(ValueError, match="not 7 wh-words"):
        pk.PromptKernel(library, pk.PromptSetup(PROMPT_FEATURES, words, pk.CLASSES, bmp, 0))
    other = pk.PromptKernel(
        library, pk.PromptSetup(PROMPT_FEATURES, (tuple("abcdefg"),) * len(pk.LISTS), pk.CLASSES, bmp, 0)
    )
    assert other.row("b", 1.0)[PROMPT_FEATURES.index("q_how")] == 1.0  # its own lists ...
    assert _differences("How to write math") == []  # ... and the module's kernel keeps its own


def test_every_astral_code_point_is_in_the_classes_of_the_one_the_kernel_is_told() -> None:
    astral = "".join(map(chr, range(0x10000, 0x110000)))
    for j, name in enumerate(_BIT_NAMES):
        members = sum(m.end() - m.start() for m in _COMPILED[name][0].finditer(astral))
        assert members == (len(astral) if _char_bits(ASTRAL_SAMPLE) >> j & 1 else 0), name


def test_a_missing_kernel_is_said_once_unless_disabled(monkeypatch) -> None:
    setup = pk.PromptSetup(PROMPT_FEATURES, (), pk.CLASSES, np.zeros(0x10000, np.uint16), 0)
    assert_a_missing_kernel_is_said_once(monkeypatch, lambda: pk.load_kernel(setup), "counting with regexes")
