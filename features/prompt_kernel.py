"""The prompt features of windows in C (`prompt_kernel.c`): `features.prompt`'s counts and formulas.

`features.prompt` uses it when it builds (`core.native`) and otherwise counts with its regexes; the rows are
the same float64 bits (tested), so features, models and decisions do not depend on which ran. What the C does
not restate it is given here at load: the word lists and the members of each one-character class, from
`features.prompt`'s own definitions (`PromptSetup`); a kernel whose feature names differ is not used. Texts
reach it as UTF-32 code points (lone surrogates included), each with its `str.lower()`.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.native import configured_or_warn

SOURCE = Path(__file__).with_name("prompt_kernel.c")
_P = ctypes.c_void_p
LISTS = ("wh", "verbs", "math", "latex", "keywords", "roles", "please")  # the C's LIST_* order
CLASSES = (
    "word",
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
# ^ the C's class bits (C_*), in this order: features.prompt's one-character patterns (`word`: runs of one)


@dataclass(frozen=True, eq=False)
class PromptSetup:
    """What the kernel is told at load: the feature names it must write, each list's words (`LISTS` order),
    the class names whose bits the tables hold (must be `CLASSES`), the bit set of every BMP code point
    (65,536 entries) and the one every astral code point has."""

    names: tuple[str, ...]
    words: tuple[tuple[str, ...], ...]
    class_names: tuple[str, ...]
    bmp: np.ndarray
    astral: int


def _utf32(text: str) -> bytes:
    return text.encode("utf-32-le", "surrogatepass")


def _lengths(texts: Sequence[str]) -> np.ndarray:
    """Each text's end offset in the texts joined (code points)."""
    return np.cumsum(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)))


class PromptKernel:
    """Calls `beast_prompt_row` (one window) and `beast_prompt_rows` (a batch) with its own configuration (the C
    keeps no global state: kernels told different lists do not disturb each other)."""

    def __init__(self, library: ctypes.CDLL, setup: PromptSetup):
        library.beast_prompt_names.restype = ctypes.c_char_p
        names = tuple(library.beast_prompt_names().decode().split())
        if names != setup.names:
            raise ValueError(f"prompt_kernel.c writes {names}, features.prompt expects {setup.names}")
        if setup.class_names != CLASSES or setup.bmp.shape != (0x10000,) or len(setup.words) != len(LISTS):
            raise ValueError(f"prompt_kernel.c reads classes {CLASSES} of 65,536 code points and lists {LISTS}")
        words = (ctypes.c_char_p * len(LISTS))(*(" ".join(w).encode("ascii") for w in setup.words))
        table = np.ascontiguousarray(setup.bmp, dtype=np.uint16)
        make = library.beast_prompt_config
        make.argtypes, make.restype = [ctypes.c_char_p * len(LISTS), _P, ctypes.c_uint16], _P
        self._config = make(words, table.ctypes.data, setup.astral)
        if not self._config:
            raise ValueError("prompt_kernel.c refused the word lists (too long, or not 7 wh-words)")
        self._free = library.beast_prompt_free
        self._free.argtypes = [_P]
        rows = library.beast_prompt_rows
        rows.argtypes = [_P, ctypes.c_char_p, _P, ctypes.c_char_p, _P, ctypes.c_int64, _P, _P]
        rows.restype = ctypes.c_int64
        one = library.beast_prompt_row
        one.argtypes = [_P, ctypes.c_char_p, ctypes.c_int64, ctypes.c_char_p, ctypes.c_int64, ctypes.c_double, _P]
        one.restype = ctypes.c_int64
        self._rows, self._one = rows, one
        self.width = len(names)

    def __del__(self) -> None:
        config, self._config = getattr(self, "_config", None), None
        if config:
            self._free(config)

    def rows(self, windows: Sequence[str], chars: np.ndarray) -> np.ndarray:
        """len(windows) x width float64: the features of windows whose whole prompts have `chars` (capped)."""
        lowers = [w.lower() for w in windows]
        ends, lower_ends = _lengths(windows), _lengths(lowers)
        chars = np.ascontiguousarray(chars, dtype=np.float64)
        out = np.empty((len(windows), self.width))
        texts = (_utf32("".join(windows)), ends.ctypes.data, _utf32("".join(lowers)), lower_ends.ctypes.data)
        self._rows(self._config, *texts, len(windows), chars.ctypes.data, out.ctypes.data)
        return out

    def row(self, window: str, chars: float) -> np.ndarray:
        """One window's features (width float64), without the batch's offsets."""
        lower = window.lower()
        out = np.empty(self.width)
        self._one(self._config, _utf32(window), len(window), _utf32(lower), len(lower), chars, out.ctypes.data)
        return out


def load_kernel(setup: PromptSetup) -> PromptKernel | None:
    """The kernel configured by `setup` (built once per process, `core.native`); None with a warning without a
    compiler (none when BEAST_NATIVE=0) or when it disagrees with `setup`. The caller keeps the one it gets."""
    return configured_or_warn(
        SOURCE, "features.prompt: counting with regexes", lambda library: PromptKernel(library, setup)
    )
