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
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import numpy as np
import pandas as pd

CHARS_PER_TOKEN = 4  # same rule as traces.importers.estimate_tokens

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
_CODE_KEYWORDS = ("def", "class", "import", "return", "function", "const", "var", "public", "private", "void", "elif")


def _words(words: tuple[str, ...]) -> str:
    return "(?:" + "|".join(words) + ")"


# name -> (regex source, runs on lowercased text?)
PATTERNS: dict[str, tuple[str, bool]] = {
    "word": (r"[^ \t\n\r\x0b\x0c]+", False),
    "newline": (r"\n", False),
    "fence": (r"```", False),
    "fenced_block": (r"```[\s\S]*?```|```[\s\S]*", False),
    "code_token": (
        r"[A-Za-z_][A-Za-z0-9_]{0,63}\([^()\n]*\)|[{};]|==|!=|<=|>=|=>|->|\+\+|\+=|&&|\|\||::|</[A-Za-z][A-Za-z0-9]*>"
        r"|#include|(?:^|\n)[ \t]*" + _words(_CODE_KEYWORDS) + r"[ \t(]",
        False,
    ),
    "code_symbol": (r"[{}\[\]<>=;_\\|&^~`$#]", False),
    "digit": (r"[0-9]", False),
    "math": (
        r"[0-9a-z)][ \t]*[+*^=\u00d7\u00f7][ \t]*[0-9a-z(]"
        r"|\\(?:frac|sqrt|sum|int|prod|lim|cdot|times|div|pi|alpha|beta|theta|infty|leq|geq|neq)"
        r"|(?:^|[^a-z])" + _words(_MATH_WORDS) + r"(?:[^a-z]|$)",
        True,
    ),
    "list_item": (r"(?:^|\n)[ \t]*(?:[-*\u2022]|[0-9]{1,3}[.)])[ \t]+", False),
    "question_end": (r"[?\uff1f][ \t\n\r]*$", False),
    "wh_start": (_LEAD + _words(_WH) + r"(?:[^a-z]|$)", True),
    "wh_any": (r"(?:^|[^a-z])(" + "|".join(_WH) + r")(?:[^a-z]|$)", True),
    "imperative": (_LEAD + r"(?:please[ \t,]+)?" + _words(_IMPERATIVES) + r"(?:[^a-z]|$)", True),
    "non_ascii": (r"[^\x00-\x7f]", False),
    "latin": (r"[A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f]", False),
    "cjk": (r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]", False),
    "cyrillic": (r"[\u0400-\u04ff]", False),
    "arabic": (r"[\u0600-\u06ff\u0750-\u077f]", False),
    "upper": (r"[A-Z]", False),
    "letter": (r"[A-Za-z]", False),
    "turn": (r"(?:^|\n)[ \t]*(?:user|human|assistant)[ \t]*:", True),
}


def _c(name: str) -> str:
    source, lower = PATTERNS[name]
    return f"count(/{source}/gu{' on lower' if lower else ''})"


CODE_TOKENS_FOR_CODE = 3  # has_code: a fence, or at least this many code tokens

PROMPT_FEATURE_DOCS: dict[str, str] = {
    "chars": "length in Unicode code points",
    "words": f"{_c('word')} (whitespace-separated chunks)",
    "tokens_est": f"ceil(chars / {CHARS_PER_TOKEN}) (the importer's token estimate)",
    "lines": f"{_c('newline')} + 1",
    "has_code": f"1 if {_c('fence')} > 0 or code_tokens >= {CODE_TOKENS_FOR_CODE}, else 0",
    "code_tokens": _c("code_token"),
    "code_ratio": f"(chars - length after replacing every match of /{PATTERNS['fenced_block'][0]}/gu by '') / chars "
    "(share of characters inside ``` fences; an unclosed fence runs to the end)",
    "code_symbol_ratio": f"{_c('code_symbol')} / chars",
    "digit_ratio": f"{_c('digit')} / chars",
    "math": f"1 if {_c('math')} > 0, else 0 (operator between operands, LaTeX command, or math word)",
    "list_items": f"{_c('list_item')} (lines starting with a bullet or `1.` / `1)`)",
    "question": f"1 if {_c('question_end')} > 0 or {_c('wh_start')} > 0, else 0",
    **{
        f"q_{w}": f"1 if group 1 of the first match of /{PATTERNS['wh_any'][0]}/u on lower is '{w}', else 0"
        for w in _WH
    },
    "q_other": f"1 if /{PATTERNS['wh_any'][0]}/u does not match lower, else 0",
    "imperative": f"1 if {_c('imperative')} > 0, else 0 (starts with an instruction verb, optionally after 'please')",
    "non_ascii_ratio": f"{_c('non_ascii')} / chars",
    "latin_ratio": f"{_c('latin')} / chars",
    "cjk_ratio": f"{_c('cjk')} / chars (kana, CJK ideographs, hangul)",
    "cyrillic_ratio": f"{_c('cyrillic')} / chars",
    "arabic_ratio": f"{_c('arabic')} / chars",
    "upper_ratio": f"{_c('upper')} / {_c('letter')} (share of ASCII letters that are upper case)",
    "turns": f"{_c('turn')} + 1 (role-marked lines of an inlined conversation, plus the current turn)",
}

PROMPT_FEATURES: tuple[str, ...] = tuple(PROMPT_FEATURE_DOCS)

# ------------------------------------------------------------------------------------------ computing


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else 0.0


def _row(n: Mapping[str, float], chars: float, outside: float, wh: str) -> list[float]:
    """The feature formulas (PROMPT_FEATURE_DOCS) of one prompt from its pattern counts, its length, its length
    outside ``` fences and its first wh-word, in `PROMPT_FEATURES` order. Plain floats: both the batch and
    the per-request path use this one function, and it costs microseconds, not numpy call overheads."""
    feats = {
        "chars": chars,
        "words": n["word"],
        "tokens_est": float(math.ceil(chars / CHARS_PER_TOKEN)),
        "lines": n["newline"] + 1,
        "has_code": float(n["fence"] > 0 or n["code_token"] >= CODE_TOKENS_FOR_CODE),
        "code_tokens": n["code_token"],
        "code_ratio": _ratio(chars - outside, chars),
        "code_symbol_ratio": _ratio(n["code_symbol"], chars),
        "digit_ratio": _ratio(n["digit"], chars),
        "math": float(n["math"] > 0),
        "list_items": n["list_item"],
        "question": float(n["question_end"] > 0 or n["wh_start"] > 0),
        **{f"q_{w}": float(wh == w) for w in _WH},
        "q_other": float(wh == ""),
        "imperative": float(n["imperative"] > 0),
        "non_ascii_ratio": _ratio(n["non_ascii"], chars),
        "latin_ratio": _ratio(n["latin"], chars),
        "cjk_ratio": _ratio(n["cjk"], chars),
        "cyrillic_ratio": _ratio(n["cyrillic"], chars),
        "arabic_ratio": _ratio(n["arabic"], chars),
        "upper_ratio": _ratio(n["upper"], n["letter"]),
        "turns": n["turn"] + 1,
    }
    return [feats[name] for name in PROMPT_FEATURES]


_SKIPPED = {"fenced_block", "wh_any"}  # used for replacement / extraction, not counted


def _features_of_distinct(text: pd.Series) -> np.ndarray:
    """All features of non-null prompts (one float64 row per prompt): pattern counts with pandas string
    methods, then `_row` per prompt."""
    lower = text.str.lower()
    names = [name for name in PATTERNS if name not in _SKIPPED]
    counts = [
        (lower if PATTERNS[name][1] else text).str.count(PATTERNS[name][0]).to_numpy(dtype=np.float64).tolist()
        for name in names
    ]
    chars = text.str.len().to_numpy(dtype=np.float64).tolist()
    outside = (
        text.str.replace(PATTERNS["fenced_block"][0], "", regex=True).str.len().to_numpy(dtype=np.float64).tolist()
    )
    wh = lower.str.extract(PATTERNS["wh_any"][0], expand=False).fillna("").tolist()
    rows = [
        _row(dict(zip(names, vals, strict=True)), c, o, w)
        for *vals, c, o, w in zip(*counts, chars, outside, wh, strict=True)
    ]
    return np.array(rows, dtype=np.float64).reshape(len(rows), len(PROMPT_FEATURES))


_COMPILED = {name: (re.compile(src), lower) for name, (src, lower) in PATTERNS.items()}
_COUNTED = [(name, rx, lower) for name, (rx, lower) in _COMPILED.items() if name not in _SKIPPED]
_FLAGS = frozenset({"fence", "math", "question_end", "wh_start", "imperative"})  # `_row` only asks count > 0
_CHAR_CLASSES = (
    "newline",
    "code_symbol",
    "digit",
    "non_ascii",
    "latin",
    "cjk",
    "cyrillic",
    "arabic",
    "upper",
    "letter",
)
# For an ASCII prompt a one-character pattern's count is the number of bytes in the set it matches, which
# bytes.translate counts at C speed; the sets are read off the regexes themselves, so nothing is restated.
_ASCII_MATCHES = {name: bytes(c for c in range(128) if _COMPILED[name][0].fullmatch(chr(c))) for name in _CHAR_CLASSES}


def _count(name: str, rx: re.Pattern[str], text: str, ascii_bytes: bytes | None) -> float:
    """count(P) of `PROMPT_FEATURE_DOCS`, by the cheapest exact route (a flag needs only the first match)."""
    if ascii_bytes is not None and name in _ASCII_MATCHES:
        return float(len(ascii_bytes) - len(ascii_bytes.translate(None, _ASCII_MATCHES[name])))
    if name in _FLAGS:
        return 1.0 if rx.search(text) else 0.0
    return float(len(rx.findall(text)))


def prompt_vector(prompt: str | None) -> np.ndarray:
    """`PROMPT_FEATURES` of one prompt as float64 (NaN if None): the router's per-request path, the same
    regexes and `_row` as `prompt_features` without pandas (tens of microseconds, not milliseconds)."""
    if prompt is None:
        return np.full(len(PROMPT_FEATURES), np.nan)
    lower = prompt.lower()
    raw = prompt.encode("ascii") if prompt.isascii() else None
    n = {name: _count(name, rx, lower if is_lower else prompt, raw) for name, rx, is_lower in _COUNTED}
    first = _COMPILED["wh_any"][0].search(lower)
    outside = len(_COMPILED["fenced_block"][0].sub("", prompt))
    return np.array(_row(n, float(len(prompt)), float(outside), first.group(1) if first else ""), dtype=np.float64)


def prompt_features(prompts: pd.Series) -> pd.DataFrame:
    """One float32 row of `PROMPT_FEATURES` per prompt (same index); a null prompt gives a row of NaN.

    Each distinct prompt is computed once (traces repeat a prompt across models), with pandas string
    methods over the distinct values held as Python objects, so every regex runs in Python `re` (Arrow
    strings would run RE2, whose match counting treats `^` as the start of the not-yet-scanned rest).
    """
    codes, uniques = pd.factorize(prompts, use_na_sentinel=True)
    text = pd.Series(np.asarray(uniques, dtype=object), dtype=object)
    distinct = _features_of_distinct(text)
    out = np.full((len(prompts), len(PROMPT_FEATURES)), np.nan, dtype=np.float32)
    known = codes >= 0
    out[known] = distinct[codes[known]]
    return pd.DataFrame(out, index=prompts.index, columns=list(PROMPT_FEATURES))
