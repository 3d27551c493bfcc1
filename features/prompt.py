"""Hand-made prompt features: cheap, explainable numbers a router in any language can recompute from text.

Every feature is a count of one regex (or a formula over such counts), listed with its exact regex in
`PROMPT_FEATURE_DOCS`, so a JavaScript port is one `match` per pattern. Portability rules the patterns keep:

- Regex sources read the same in Python `re` and a JS `new RegExp(source, "gu")`: `\\uXXXX` escapes, no
  `\\s`, `\\w`, `\\d` or `\\b` (their meaning differs between engines; only the idiom `[\\s\\S]`, "any
  character"), no look-arounds, and `$` only where Python's "before a final newline" quirk cannot change
  the result. A test runs every pattern through node (when installed) and compares the counts.
- "count(P)" is the number of non-overlapping matches of P scanning left to right (Python `re.findall`,
  JS `(s.match(/P/gu) || []).length`); no pattern can match the empty string.
- Repetition that could backtrack is bounded (code_token's identifier: at most 64 characters), so a
  hostile prompt costs linear time (200,000 characters: ~0.1 s), never quadratic.
- Lengths are Unicode code points (Python `len`, JS `[...s].length`), never UTF-16 units.
- "lower" means the prompt lowercased (Python `str.lower`, JS `toLowerCase`); only ASCII keywords are
  searched in it. Other patterns run on the raw prompt.
- A ratio with a zero denominator is 0. A null prompt gives a row of NaN (LightGBM reads it as missing);
  an empty prompt gives real numbers (chars 0, lines 1, turns 1, ...).
- Bounded work: every count reads the prompt's *window* (`prompt_window`): the whole prompt when it has at
  most WINDOW_HEAD + WINDOW_TAIL code points, else its first WINDOW_HEAD and last WINDOW_TAIL code points
  joined by one newline (the instruction of a long prompt is usually at its start or end). Only `chars`
  and `tokens_est` read the whole prompt's length, capped at CHARS_CAP code points: O(1) in Python (`len`)
  and in JS (a string of at least 2 x CHARS_CAP UTF-16 units holds at least CHARS_CAP code points, so
  only shorter ones are counted). The cap loses nothing: the request's input tokens are a feature of their
  own, and no training prompt comes near it. Ratios divide by the window's length.
  So a 1 MB prompt costs what a 385-character one does, in every language; text and embedding features
  read the same window (`features.build`, the routers).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features.prompt_kernel import CLASSES, PromptKernel, PromptSetup, load_kernel

CHARS_PER_TOKEN = 4  # same rule as traces.importers.estimate_tokens
WINDOW_HEAD = 192  # code points of a long prompt's start that its features read
WINDOW_TAIL = 192  # ... and of its end (serving/js/features.mjs holds the same numbers; tested)
WINDOW_JOIN = "\n"  # between head and tail: a word cut at either end stays a word of its own
CHARS_CAP = 65_536  # `chars` counts code points up to this (the longest sample prompt has 4,868)
ASTRAL_SAMPLE = "\U00010000"  # every code point above the BMP is in the classes this one is in (tested)


def capped_chars(prompt: str) -> float:
    """The `chars` feature: the prompt's code points, at most CHARS_CAP."""
    return float(min(len(prompt), CHARS_CAP))


def prompt_window(prompt: str) -> str:
    """What every prompt feature (counts, text, embedding) reads: the prompt itself up to WINDOW_HEAD +
    WINDOW_TAIL code points, else its first WINDOW_HEAD and last WINDOW_TAIL joined by WINDOW_JOIN."""
    n = len(prompt)
    if n <= WINDOW_HEAD + WINDOW_TAIL:
        return prompt
    return prompt[:WINDOW_HEAD] + WINDOW_JOIN + prompt[n - WINDOW_TAIL :]


# ------------------------------------------------------------------------------------------ patterns

_LEAD = r"""^[ \t\n\r"'(\[*#>_-]*"""  # leading whitespace / quote / markdown punctuation before the first word
_WH = ("what", "how", "why", "who", "when", "where", "which")
_IMPERATIVES = (
    "write", "explain", "list", "summarize", "summarise", "translate", "describe", "create", "generate",
    "give", "make", "tell", "provide", "find", "compare", "rewrite", "suggest", "classify", "identify",
    "edit", "convert", "design", "implement", "fix", "debug", "analyze", "analyse", "calculate", "solve",
    "name", "outline", "draft", "compose", "brainstorm", "plan", "recommend", "correct", "paraphrase",
    "define", "predict", "evaluate", "choose", "categorize", "extract", "answer", "help", "show", "imagine",
    "pretend", "act", "count", "sort", "rank", "rate", "complete", "continue", "check", "proofread", "improve",
)  # fmt: skip
_MATH_WORDS = (
    "solve", "solving", "calculate", "calculating", "calculation", "compute", "evaluate", "simplify",
    "equation", "equations", "integral", "derivative", "probability", "theorem", "prove", "proof",
    "arithmetic", "algebra", "geometry", "calculus", "math", "maths", "mathematics", "mathematical",
    "percent", "percentage",
)  # fmt: skip
_LATEX = ("frac", "sqrt", "sum", "int", "prod", "lim", "cdot", "times", "div", "pi", "alpha", "beta", "theta", "infty", "leq", "geq", "neq")  # fmt: skip
_ROLES = ("user", "human", "assistant")
_PLEASE = "please"
_CODE_KEYWORDS = ("def", "class", "import", "return", "function", "const", "var", "public", "private", "void", "elif")


def _words(words: tuple[str, ...]) -> str:
    return "(?:" + "|".join(words) + ")"


def _code_call(possessive: str = "") -> str:
    """An identifier called with arguments; with `possessive` "+" its quantifiers give nothing back (`_count`)."""
    return r"[A-Za-z_][A-Za-z0-9_]{0,63}" + possessive + r"\([^()\n]*" + possessive + r"\)"


# Two patterns in parts: `_count` tests some parts apart (the sources below are their exact concatenations).
_CODE_REST = (
    r"[{};]|==|!=|<=|>=|=>|->|\+\+|\+=|&&|\|\||::|</[A-Za-z][A-Za-z0-9]*>|#include|(?:^|\n)[ \t]*"
    + _words(_CODE_KEYWORDS)
    + r"[ \t(]"
)
_MATH_PARTS = (  # an operator between operands | a LaTeX command | a math word
    r"[0-9a-z)][ \t]*[+*^=\u00d7\u00f7][ \t]*[0-9a-z(]",
    r"\\" + _words(_LATEX),
    r"(?:^|[^a-z])" + _words(_MATH_WORDS) + r"(?:[^a-z]|$)",
)

# name -> (regex source, runs on lowercased text?)
PATTERNS: dict[str, tuple[str, bool]] = {
    "word": (r"[^ \t\n\r\x0b\x0c]+", False),
    "newline": (r"\n", False),
    "fence": (r"```", False),
    "fenced_block": (r"```[\s\S]*?```|```[\s\S]*", False),
    "code_token": (_code_call() + "|" + _CODE_REST, False),
    "code_symbol": (r"[{}\[\]<>=;_\\|&^~`$#]", False),
    "digit": (r"[0-9]", False),
    "math": ("|".join(_MATH_PARTS), True),
    "list_item": (r"(?:^|\n)[ \t]*(?:[-*\u2022]|[0-9]{1,3}[.)])[ \t]+", False),
    "question_end": (r"[?\uff1f][ \t\n\r]*$", False),
    "wh_start": (_LEAD + _words(_WH) + r"(?:[^a-z]|$)", True),
    "wh_any": (r"(?:^|[^a-z])(" + "|".join(_WH) + r")(?:[^a-z]|$)", True),
    "imperative": (_LEAD + r"(?:" + _PLEASE + r"[ \t,]+)?" + _words(_IMPERATIVES) + r"(?:[^a-z]|$)", True),
    "non_ascii": (r"[^\x00-\x7f]", False),
    "latin": (r"[A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f]", False),
    "cjk": (r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]", False),
    "cyrillic": (r"[\u0400-\u04ff]", False),
    "arabic": (r"[\u0600-\u06ff\u0750-\u077f]", False),
    "upper": (r"[A-Z]", False),
    "letter": (r"[A-Za-z]", False),
    "turn": (r"(?:^|\n)[ \t]*" + _words(_ROLES) + r"[ \t]*:", True),
}


def _c(name: str) -> str:
    source, lower = PATTERNS[name]
    return f"count(/{source}/gu{' on lower' if lower else ''})"


CODE_TOKENS_FOR_CODE = 3  # has_code: a fence, or at least this many code tokens

PROMPT_FEATURE_DOCS: dict[str, str] = {
    "chars": f"length of the whole prompt in Unicode code points, at most {CHARS_CAP:,} (every other count reads "
    "the window, `wchars` long)",
    "words": f"{_c('word')} (whitespace-separated chunks)",
    "tokens_est": f"ceil(chars / {CHARS_PER_TOKEN}) (the importer's token estimate)",
    "lines": f"{_c('newline')} + 1",
    "has_code": f"1 if {_c('fence')} > 0 or code_tokens >= {CODE_TOKENS_FOR_CODE}, else 0",
    "code_tokens": _c("code_token"),
    "code_ratio": f"(wchars - length after replacing every match of /{PATTERNS['fenced_block'][0]}/gu by '') / wchars "
    "(share of characters inside ``` fences; an unclosed fence runs to the end)",
    "code_symbol_ratio": f"{_c('code_symbol')} / wchars",
    "digit_ratio": f"{_c('digit')} / wchars",
    "math": f"1 if {_c('math')} > 0, else 0 (operator between operands, LaTeX command, or math word)",
    "list_items": f"{_c('list_item')} (lines starting with a bullet or `1.` / `1)`)",
    "question": f"1 if {_c('question_end')} > 0 or {_c('wh_start')} > 0, else 0",
    **{
        f"q_{w}": f"1 if group 1 of the first match of /{PATTERNS['wh_any'][0]}/u on lower is '{w}', else 0"
        for w in _WH
    },
    "q_other": f"1 if /{PATTERNS['wh_any'][0]}/u does not match lower, else 0",
    "imperative": f"1 if {_c('imperative')} > 0, else 0 (starts with an instruction verb, optionally after 'please')",
    "non_ascii_ratio": f"{_c('non_ascii')} / wchars",
    "latin_ratio": f"{_c('latin')} / wchars",
    "cjk_ratio": f"{_c('cjk')} / wchars (kana, CJK ideographs, hangul)",
    "cyrillic_ratio": f"{_c('cyrillic')} / wchars",
    "arabic_ratio": f"{_c('arabic')} / wchars",
    "upper_ratio": f"{_c('upper')} / {_c('letter')} (share of ASCII letters that are upper case)",
    "turns": f"{_c('turn')} + 1 (role-marked lines of an inlined conversation, plus the current turn)",
}

PROMPT_FEATURES: tuple[str, ...] = tuple(PROMPT_FEATURE_DOCS)

# ------------------------------------------------------------------------------------------ computing


class _Ops(NamedTuple):
    """The arithmetic `_row` needs, for plain floats (one prompt) or float64 arrays (a batch, one entry per prompt)."""

    ratio: Callable  # num / den, 0 where den is 0
    num: Callable  # a bool (array) as float
    ceil: Callable


def _array_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros(np.shape(num)), where=den > 0)


_SCALAR = _Ops(ratio=lambda num, den: num / den if den > 0 else 0.0, num=float, ceil=lambda x: float(math.ceil(x)))
_ARRAY = _Ops(ratio=_array_ratio, num=lambda x: np.asarray(x, dtype=np.float64), ceil=np.ceil)


def _row(n: Mapping[str, float], chars: float, wchars: float, outside: float, wh: str, ops: _Ops = _SCALAR) -> list:
    """The feature formulas (PROMPT_FEATURE_DOCS) of one prompt from its window's pattern counts, its length,
    its window's length and length outside ``` fences, and the window's first wh-word, in `PROMPT_FEATURES`
    order. Plain floats for one prompt (microseconds, not numpy call overheads); with `ops=_ARRAY` every
    argument is an array over a batch (`wh` an object array) and so is every entry: the same IEEE operations."""
    feats = {
        "chars": chars,
        "words": n["word"],
        "tokens_est": ops.ceil(chars / CHARS_PER_TOKEN),
        "lines": n["newline"] + 1,
        "has_code": ops.num((n["fence"] > 0) | (n["code_token"] >= CODE_TOKENS_FOR_CODE)),
        "code_tokens": n["code_token"],
        "code_ratio": ops.ratio(wchars - outside, wchars),
        "code_symbol_ratio": ops.ratio(n["code_symbol"], wchars),
        "digit_ratio": ops.ratio(n["digit"], wchars),
        "math": ops.num(n["math"] > 0),
        "list_items": n["list_item"],
        "question": ops.num((n["question_end"] > 0) | (n["wh_start"] > 0)),
        **{f"q_{w}": ops.num(wh == w) for w in _WH},
        "q_other": ops.num(wh == ""),
        "imperative": ops.num(n["imperative"] > 0),
        "non_ascii_ratio": ops.ratio(n["non_ascii"], wchars),
        "latin_ratio": ops.ratio(n["latin"], wchars),
        "cjk_ratio": ops.ratio(n["cjk"], wchars),
        "cyrillic_ratio": ops.ratio(n["cyrillic"], wchars),
        "arabic_ratio": ops.ratio(n["arabic"], wchars),
        "upper_ratio": ops.ratio(n["upper"], n["letter"]),
        "turns": n["turn"] + 1,
    }
    return [feats[name] for name in PROMPT_FEATURES]


_SKIPPED = {"fenced_block", "wh_any"}  # used for replacement / extraction, not counted


_COMPILED = {name: (re.compile(src), lower) for name, (src, lower) in PATTERNS.items()}
_COUNTED = [(name, rx, lower) for name, (rx, lower) in _COMPILED.items() if name not in _SKIPPED]
_FLAGS = frozenset({"fence", "math", "question_end", "wh_start", "imperative"})  # `_row` only asks count > 0
_CHAR_CLASSES = CLASSES[1:]  # the one-character patterns (CLASSES[0] is `word`, runs of one), in the kernel's bit order
# For an ASCII prompt a one-character pattern's count is the number of bytes in the set it matches, which
# bytes.translate counts at C speed; the sets are read off the regexes themselves, so nothing is restated.
_ASCII_MATCHES = {name: bytes(c for c in range(128) if _COMPILED[name][0].fullmatch(chr(c))) for name in _CHAR_CLASSES}


# Exact shortcuts where Python's backtracking `re` is slowest (each tested equal to its plain pattern on every
# sample and hostile prompt and on edge cases; the other engines run the plain patterns):
# - `word` of an ASCII window: bytes.split() separates at exactly the pattern's six whitespace bytes;
# - `math` is a flag, so its three parts are searched apart, each only when it can match: the operator part
#   needs an operator, the LaTeX part a backslash, and the math-word part matches exactly when a maximal run of
#   [a-z] is a math word (a set lookup instead of trying 26 words at every non-letter);
# - `code_token`: the other alternatives are tried only where one can start (at the text's start or before
#   one of their first characters: one class test instead of 15 failing branches at every letter); without a
#   "(" the call alternative never matches and is left out; with one, its quantifiers are possessive: giving
#   characters back could only put an identifier character before the "(" (or a non-")" before the ")")
#   that must follow, so no match is lost or added;
# - `turn` needs a ":".
_CODE_REST_GUARDED = r"(?:^|(?=[{};=!<>\-+&|:#\n]))(?:" + _CODE_REST + ")"
_CODE_WITH_CALLS = re.compile(_code_call(possessive="+") + "|" + _CODE_REST_GUARDED)
_CODE_WITHOUT_CALLS = re.compile(_CODE_REST_GUARDED)
_MATH_OPERATOR_RX, _MATH_LATEX_RX = re.compile(_MATH_PARTS[0]), re.compile(_MATH_PARTS[1])
_MATH_OPERATOR_CHARS = "+*^=\u00d7\u00f7"  # the operator part's middle class
_MATH_WORD_SET = frozenset(_MATH_WORDS)
_MATH_WORD_BYTES = frozenset(w.encode("ascii") for w in _MATH_WORDS)
_A_TO_Z_RUNS = bytes(c if 0x61 <= c <= 0x7A else 0x20 for c in range(256))  # bytes.translate: other bytes -> space
_A_TO_Z = re.compile(r"[a-z]+")


def _math_flag(lower: str) -> float:
    if "\\" in lower and _MATH_LATEX_RX.search(lower):
        return 1.0
    if any(op in lower for op in _MATH_OPERATOR_CHARS) and _MATH_OPERATOR_RX.search(lower):
        return 1.0
    if lower.isascii():
        runs = lower.encode("ascii").translate(_A_TO_Z_RUNS).split()
        return 0.0 if _MATH_WORD_BYTES.isdisjoint(runs) else 1.0
    return 0.0 if _MATH_WORD_SET.isdisjoint(_A_TO_Z.findall(lower)) else 1.0


def _count(name: str, rx: re.Pattern[str], text: str, ascii_bytes: bytes | None) -> float:
    """count(P) of `PROMPT_FEATURE_DOCS`, by the cheapest exact route (a flag needs only the first match;
    `ascii_bytes`: the window's bytes when it is ASCII)."""
    if ascii_bytes is not None and name in _ASCII_MATCHES:
        return float(len(ascii_bytes) - len(ascii_bytes.translate(None, _ASCII_MATCHES[name])))
    if name == "word" and ascii_bytes is not None:
        return float(len(ascii_bytes.split()))
    if name == "math":
        return _math_flag(text)
    if name == "code_token":
        return float(len((_CODE_WITH_CALLS if "(" in text else _CODE_WITHOUT_CALLS).findall(text)))
    if name == "turn" and ":" not in text:
        return 0.0
    if name in _FLAGS:
        return 1.0 if rx.search(text) else 0.0
    return float(len(rx.findall(text)))


def prompt_vector(prompt: str | None, native: bool = True) -> np.ndarray:
    """`PROMPT_FEATURES` of one prompt as float64 (NaN if None): the router's per-request path. Its window goes
    through the C kernel when it is built and `native` (microseconds), else the regexes and `_row` below (tens of
    microseconds; the reference the kernel is tested equal to, bit for bit)."""
    if prompt is None:
        return np.full(len(PROMPT_FEATURES), np.nan)
    text = prompt_window(prompt)
    fast = _kernel(native)
    if fast is not None:
        return fast.row(text, capped_chars(prompt))
    raw = text.encode("ascii") if text.isascii() else None
    lower = text.lower()
    n = {name: _count(name, rx, lower if is_lower else text, raw) for name, rx, is_lower in _COUNTED}
    first = _COMPILED["wh_any"][0].search(lower)
    outside = len(_COMPILED["fenced_block"][0].sub("", text))
    row = _row(n, capped_chars(prompt), float(len(text)), float(outside), first.group(1) if first else "")
    return np.array(row, dtype=np.float64)


# ------------------------------------------------------------------------------------------ batches
#
# `prompt_matrix` gives, row by row, exactly the float64 numbers of `prompt_vector` for a whole batch at once:
# - the one-character classes, and `word` (runs of its one-character class), from the windows' code points in
#   numpy; which classes a code point is in is read off the compiled regexes themselves (nothing restated);
# - the other patterns through pyarrow's RE2 over the batch, asked only *whether* a window holds a match: a
#   property of the pattern alone, the same in both engines for these patterns (no `\s`, `\w`, `\b` or
#   look-around, `^`/`$` on the whole text, and `$`'s final-newline quirk cannot change a result: module
#   docstring), whereas RE2's match *counting* differs at `^`. A flag is that answer; a count is then made by
#   Python `re` in the windows that match (few: code, lists, turns). `wh_any`'s first group comes from RE2's
#   leftmost-first `extract_regex`, which is Python's `search`;
# - `fence` and the text outside fences with str methods (the fence regex only where a fence is).
# A window RE2 cannot read (lone surrogates are not UTF-8) takes `prompt_vector`.

_BIT_NAMES = CLASSES  # one-character classes; `word` is the class its runs are made of
_RE2 = {name: re.sub(r"\\u([0-9a-fA-F]{4})", r"\\x{\1}", src) for name, (src, _) in PATTERNS.items()}
_RE2_FLAGS = ("math", "question_end", "wh_start", "imperative")
_RE2_COUNTS = ("code_token", "list_item", "turn")
_WH_GROUP = _RE2["wh_any"].replace("(" + "|".join(_WH) + ")", "(?P<wh>" + "|".join(_WH) + ")", 1)


def _char_bits(char: str) -> int:
    return sum(1 << j for j, name in enumerate(_BIT_NAMES) if _COMPILED[name][0].fullmatch(char))


@functools.cache
def _built_kernel() -> PromptKernel | None:
    """The C kernel (`features.prompt_kernel`) told this module's word lists and classes; once per process."""
    words = (_WH, _IMPERATIVES, _MATH_WORDS, _LATEX, _CODE_KEYWORDS, _ROLES, (_PLEASE,))
    bmp = _bmp_tables()[0].astype(np.uint16)
    return load_kernel(PromptSetup(PROMPT_FEATURES, words, _BIT_NAMES, bmp, _char_bits(ASTRAL_SAMPLE)))


def _kernel(native: bool) -> PromptKernel | None:
    return _built_kernel() if native else None


def counted_in_c() -> bool:
    """Whether this process counts prompt features in C; loads the kernel and its class tables (tens of
    milliseconds) now, so a router calls it at load rather than paying it on its first request."""
    return _built_kernel() is not None


@functools.cache
def _bmp_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The class bits of every BMP code point (bit j: `_BIT_NAMES[j]` matches it), the distinct bit patterns,
    and each possible pattern's index among them (-1: no BMP code point has it). Built once per process from
    the regexes: every match of a one-character class's runs (`word` is one already) covers members only, and
    runs make a few matches where single characters made 65,408 (non_ascii): ~30-60 ms here instead of ~175."""
    every = np.arange(0x10000, dtype="<u4").tobytes().decode("utf-32-le", "surrogatepass")
    bits = np.zeros(0x10000, dtype=np.int64)
    for j, name in enumerate(_BIT_NAMES):
        runs = _COMPILED[name][0] if name == "word" else re.compile(f"(?:{PATTERNS[name][0]})+")
        spans = np.array([m.span() for m in runs.finditer(every)], dtype=np.int64).reshape(-1, 2)
        cover = np.zeros(0x10001, dtype=np.int64)
        cover[spans[:, 0]] += 1
        cover[spans[:, 1]] -= 1
        bits[np.cumsum(cover[:-1]) > 0] |= 1 << j
    patterns = np.unique(bits)
    index = np.full(1 << len(_BIT_NAMES), -1, dtype=np.int64)
    index[patterns] = np.arange(len(patterns))
    return bits, patterns, index


@functools.cache
def _bmp_pattern_ids() -> np.ndarray:
    """Each BMP code point's bit pattern as its index in `_bmp_tables()[1]` (one small gather per character)."""
    bits, _, index = _bmp_tables()
    return index[bits].astype(np.int32)


def _class_counts(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per text (well-formed Unicode): its characters in each of `_BIT_NAMES` (n x bits) and its `word` runs."""
    bmp, patterns, index = _bmp_tables()
    lens = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    cps = np.frombuffer("".join(texts).encode("utf-32-le"), dtype="<u4")
    astral = np.flatnonzero(cps > 0xFFFF)
    ids = _bmp_pattern_ids()[np.minimum(cps, 0xFFFF)]
    if len(astral):
        values, where = np.unique(cps[astral], return_inverse=True)
        bits = np.array([_char_bits(chr(v)) for v in values], dtype=np.int64)[where]
        if (index[bits] < 0).any():  # a class pattern only astral characters have
            extra = np.unique(bits[index[bits] < 0])
            patterns, index = np.concatenate([patterns, extra]), index.copy()
            index[extra] = np.arange(len(patterns) - len(extra), len(patterns))
        ids[astral] = index[bits]
    row = np.repeat(np.arange(len(texts), dtype=np.int64) * len(patterns), lens)
    per_pattern = np.bincount(row + ids, minlength=len(texts) * len(patterns))
    counts = per_pattern.reshape(len(texts), len(patterns)) @ ((patterns[:, None] >> np.arange(len(_BIT_NAMES))) & 1)
    in_word = (patterns & 1).astype(bool)[ids]
    starts = in_word.copy()
    starts[1:] &= ~in_word[:-1]
    firsts = (np.cumsum(lens) - lens)[lens > 0]
    starts[firsts] = in_word[firsts]
    words = np.zeros(len(texts), dtype=np.int64)
    if len(firsts):
        words[lens > 0] = np.add.reduceat(starts, firsts, dtype=np.int64)
    return counts, words


def _window_rows(texts: list[str], chars: np.ndarray) -> np.ndarray:
    """`prompt_vector` of prompts of length `chars` whose windows are `texts` (well-formed Unicode), n x features."""
    lowers = [t.lower() for t in texts]
    counts, words = _class_counts(texts)
    n = dict(zip(_BIT_NAMES, counts.T.astype(np.float64), strict=True))
    n["word"] = words.astype(np.float64)
    n["fence"] = np.fromiter((t.count("```") for t in texts), dtype=np.float64, count=len(texts))
    arrays = {False: pa.array(texts, type=pa.string()), True: pa.array(lowers, type=pa.string())}
    for name in (*_RE2_FLAGS, *_RE2_COUNTS):
        rx, is_lower = _COMPILED[name]
        hit = pc.match_substring_regex(arrays[is_lower], _RE2[name]).to_numpy(zero_copy_only=False)
        n[name] = hit.astype(np.float64)
        if name not in _FLAGS:
            source = lowers if is_lower else texts
            for j in np.flatnonzero(hit):
                n[name][j] = _count(name, rx, source[j], None)
    wchars = np.fromiter(map(len, texts), dtype=np.float64, count=len(texts))
    outside = wchars.copy()
    for j in np.flatnonzero(n["fence"]):
        outside[j] = len(_COMPILED["fenced_block"][0].sub("", texts[j]))
    first = pc.extract_regex(arrays[True], _WH_GROUP).field("wh").to_pylist()
    wh = np.array(["" if w is None else w for w in first], dtype=object)
    return np.column_stack(_row(n, chars, wchars, outside, wh, _ARRAY))


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_CHUNK = 8192  # windows per numpy / RE2 pass (at most ~4 MB of code points each)


def prompt_matrix(
    prompts: Sequence[str | None], native: bool = True, windows: Sequence[str | None] | None = None
) -> np.ndarray:
    """`prompt_vector` of every prompt (n x `PROMPT_FEATURES`, float64; row i is bit for bit
    `prompt_vector(prompts[i])`): in one C kernel call when it is built and `native`, else over the whole batch
    at once with numpy and RE2 (see the comment above). `windows`: their `prompt_window`s when the caller has
    them already."""
    out = np.full((len(prompts), len(PROMPT_FEATURES)), np.nan)
    fast = _kernel(native)
    if fast is not None:
        rows = [i for i, prompt in enumerate(prompts) if prompt is not None]
        chars = np.array([capped_chars(prompts[i]) for i in rows], dtype=np.float64)
        for at in range(0, len(rows), _CHUNK):
            chunk = rows[at : at + _CHUNK]
            texts = [prompt_window(prompts[i]) for i in chunk] if windows is None else [windows[i] for i in chunk]
            out[chunk] = fast.rows(texts, chars[at : at + _CHUNK])
        return out
    rows, texts = [], []
    for i, prompt in enumerate(prompts):
        if prompt is None:
            continue
        text = prompt_window(prompt)
        if text.isascii() or _utf8(text):
            rows.append(i)
            texts.append(text)
        else:
            out[i] = prompt_vector(prompt, native)
    chars = np.array([capped_chars(prompts[i]) for i in rows], dtype=np.float64)
    for at in range(0, len(texts), _CHUNK):  # bounded memory for a training set's millions of prompts
        out[rows[at : at + _CHUNK]] = _window_rows(texts[at : at + _CHUNK], chars[at : at + _CHUNK])
    return out


def prompt_features(prompts: pd.Series) -> pd.DataFrame:
    """One float32 row of `PROMPT_FEATURES` per prompt (same index); a null prompt gives a row of NaN.

    Each distinct prompt is computed once (traces repeat a prompt across models), by `prompt_matrix`: the
    router's numbers, bit for bit, rounded to float32.
    """
    codes, uniques = pd.factorize(prompts, use_na_sentinel=True)
    distinct = prompt_matrix(list(np.asarray(uniques, dtype=object)))
    out = np.full((len(prompts), len(PROMPT_FEATURES)), np.nan, dtype=np.float32)
    known = codes >= 0
    out[known] = distinct[codes[known]]
    return pd.DataFrame(out, index=prompts.index, columns=list(PROMPT_FEATURES))
