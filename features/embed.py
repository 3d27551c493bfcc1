"""Prompt text as k dense numbers from a pretrained static embedding (WordLlama), with no download at run time.

Why: TF-IDF fitted on a few hundred training prompts carries almost no meaning; a token-embedding table
trained on a large corpus does, and it ships inside a package wheel (`wordllama`, MIT: the Llama-2
tokenizer config and a 32,000 x 256 table distilled from Llama-2-70B's token embeddings), so training
reads it from site-packages and nothing is fetched.

The recipe, for a port (serving/js/tokenizer.mjs is one):

0. The text embedded is the prompt's window (`features.prompt.prompt_window`, applied by the callers:
   `features.build` and the routers), like every other prompt feature.
1. prompt None -> k NaN. Otherwise make the text well formed (a lone surrogate becomes U+FFFD; Python
   `s.encode("utf-16", "surrogatepass").decode("utf-16", "replace")`, JS `s.toWellFormed()`), then keep its
   first `max_chars` code points (the cost is bounded for any prompt length).
2. ids = the Llama-2 BPE tokenizer (HF `tokenizers` JSON, added tokens removed so "<s>" in text is text)
   `encode(text, add_special_tokens=False).ids`.
3. v = mean over ids of `table[id]` (accumulated in float64), minus `offset`; no ids: v = -offset.
   `table` is the package's table projected on the k principal directions of the training prompts'
   mean embeddings (`table = float32(T @ components.T)`, vocab x k) and `offset = mean @ components.T`:
   averaging is linear, so projecting the table once equals projecting every prompt's 256-d mean.
4. Features `emb_0 .. emb_{k-1}` as float32.

The fitted spec (`EmbedSpec`) holds the k x 256 components and the offset (plain JSON); the projected table
and the tokenizer travel in the export bundle as files whose sha256 the spec records, so a router needs
neither this package nor the wheel.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import re
import string
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from core.config import Count
from core.errors import BeastError
from features.embed_kernel import EmbedKernel, EmbedSetup, load_kernel
from features.text import floats_from_json, matrix_from_json, matrix_json

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no Rust thread pool to poison forked workers

SPEC_KIND = "beast.features.embed"
SPEC_VERSION = "1"
PACKAGE = "wordllama"
TABLE_FILE = "weights/l2_supercat_256.safetensors"
TOKENIZER_FILE = "tokenizers/l2_supercat_tokenizer_config.json"
BUNDLE_TABLE = "embedding/table.f32"  # float32 little-endian, row-major, vocab x k
BUNDLE_TOKENIZER = "embedding/tokenizer.json"
DIM = 256  # width of the package's table


@dataclass(frozen=True)
class EmbedParams:
    """Mirrors params.yaml -> features.embed."""

    k: Count = 32  # principal directions kept (fitted on the training prompts)
    max_chars: Count = 1024  # code points of the prompt that are embedded (cost ~0.17 us each)


@dataclass(frozen=True)
class Source:
    """The package's table (float32, vocab x 256) and tokenizer JSON (added tokens removed), with hashes."""

    table: np.ndarray
    tokenizer_json: str
    table_sha256: str  # of the package file
    version: str


def _package_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BeastError(
            f"features.embed: the `{PACKAGE}` package is not installed (uv sync installs it); or set features.use_embed: false"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def plain_tokenizer_json(config_text: str) -> str:
    """The tokenizer config with its added (special) tokens removed, compact and key-sorted (stable bytes)."""
    config = json.loads(config_text)
    config["added_tokens"] = []
    return json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@functools.cache
def load_source() -> Source:
    """Read the wheel's table and tokenizer from site-packages (no network; once per process)."""
    from importlib.metadata import version

    from safetensors.numpy import load_file

    root = _package_dir()
    table_path = root / TABLE_FILE
    try:
        raw = table_path.read_bytes()
        tensors = load_file(str(table_path))
        tokenizer = plain_tokenizer_json((root / TOKENIZER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BeastError(f"features.embed: cannot read {PACKAGE}'s files under {root} ({exc})") from None
    table = np.ascontiguousarray(next(iter(tensors.values())), dtype=np.float32)
    table.setflags(write=False)
    return Source(table, tokenizer, hashlib.sha256(raw).hexdigest(), version(PACKAGE))


def well_formed(prompt: str, max_chars: int) -> str:
    """Step 1: lone surrogates -> U+FFFD, then the first `max_chars` code points. Work is bounded by the
    window: fixing can only join surrogate pairs, so 2 x max_chars code points are enough to start from."""
    head = prompt[: 2 * max_chars]
    try:
        head.encode("utf-8")
    except UnicodeEncodeError:
        head = head.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return head[:max_chars]


SPACE = "\u2581"  # the Llama-2 normaliser's word marker: prepended to a non-empty text, and every " " becomes it
_PIECES = re.compile(SPACE + "*[^" + SPACE + "]+|" + SPACE + "+")  # runs of markers, each with the text up to the next
_MEMO_MAX = 1_000_000  # pieces memoised per encoder (cleared when full: bounded memory under hostile input)


def _merge_pairs(model: dict) -> list[list[str]]:
    """The model's merges as [left, right] (a tokenizer JSON holds "a b" strings or [a, b] lists)."""
    return [m.split(" ") if isinstance(m, str) else m for m in model.get("merges") or []]


def _piece_proof(config: dict) -> bool:
    """Whether encoding the pieces of a normalised text (`_PIECES`) one by one provably gives the ids of the whole
    text. Proof: the normaliser is exactly prepend SPACE + replace " " by SPACE (so the normalised text is known)
    and there is no pre-tokenizer (BPE runs on the whole text); the model is a plain BPE (no dropout, affixes or
    ignore_merges) with byte fallback and all 256 byte tokens (never an unknown token to fuse); and no merge joins
    a symbol whose last character is not SPACE to one starting with SPACE. Then no symbol ever spans a cut between
    a non-SPACE character and a SPACE, every merge happens inside one piece, and BPE (merges by rank, then
    position) applies the same merges to a piece alone as inside the text."""
    model = config.get("model") or {}
    normalizer = {
        "type": "Sequence",
        "normalizers": [
            {"type": "Prepend", "prepend": SPACE},
            {"type": "Replace", "pattern": {"String": " "}, "content": SPACE},
        ],
    }
    vocab = model.get("vocab") or {}
    return not (
        config.get("normalizer") != normalizer
        or config.get("pre_tokenizer") is not None
        or config.get("added_tokens")
        or model.get("type") != "BPE"
        or model.get("dropout") is not None
        or model.get("continuing_subword_prefix")
        or model.get("end_of_word_suffix")
        or model.get("ignore_merges")
        or not model.get("byte_fallback")
        or any(f"<0x{b:02X}>" not in vocab for b in range(256))
        or any(len(p) != 2 or (p[0][-1:] != SPACE and p[1][:1] == SPACE) for p in _merge_pairs(model))
    )


def piece_tokenizer_json(tokenizer_json: str) -> str | None:
    """The tokenizer that encodes one piece of a normalised text (`_PIECES`) when `_piece_proof` holds (the same
    model without normaliser), else None."""
    config = json.loads(tokenizer_json)
    if not _piece_proof(config):
        return None
    config["normalizer"] = None
    return json.dumps(config)


_WORD_CHARS = string.ascii_letters + string.digits
_CUT_CANDIDATES = string.punctuation  # cut next to a word character when no merge joins them
_ISOLATED_CANDIDATES = "\n\t\r"  # cut on both sides when no merge involves them at all


def safe_cuts(tokenizer_json: str) -> re.Pattern[str] | None:
    """The points inside a piece where it may be cut into parts tokenised alone (`Encoder._ids_bytes`' memos), for
    a tokenizer that passes `piece_tokenizer_json`'s proof; None when there are none. BPE merges two adjacent
    symbols only through a merge (a, b); the symbols on either side of a point between characters x and y
    always end in x and start with y, so when no merge has a ending in x and b starting with y, no symbol ever
    spans the point and the merges on each side are those of that side alone (and by rank, then position,
    in the same order). Cut points: between an ASCII letter or digit and a punctuation character no merge
    joins to any of them (either order), and on both sides of a newline, tab or carriage return that no merge
    holds. For Llama-2: every ASCII punctuation character and all three, so "prices:" reuses "prices" and ":"."""
    pairs = _merge_pairs(json.loads(tokenizer_json).get("model") or {})
    joined = {(a[-1:], b[:1]) for a, b in pairs}
    held = set("".join(a + b for a, b in pairs))
    cut = [c for c in _CUT_CANDIDATES if not any((w, c) in joined or (c, w) in joined for w in _WORD_CHARS)]
    isolated = [c for c in _ISOLATED_CANDIDATES if c not in held]
    alternatives = []
    if cut:
        words, marks = re.escape(_WORD_CHARS), "".join(map(re.escape, cut))
        alternatives += [f"(?<=[{words}])(?=[{marks}])", f"(?<=[{marks}])(?=[{words}])"]
    if isolated:
        alone = "".join(map(re.escape, isolated))
        alternatives += [f"(?=[{alone}])", f"(?<=[{alone}])"]
    return re.compile("|".join(alternatives)) if alternatives else None


def kernel_setup(tokenizer_json: str, table: np.ndarray, offset: np.ndarray) -> EmbedSetup | None:
    """What `embed_kernel.c` is told about a tokenizer that passes `piece_tokenizer_json`'s proof (the C runs only
    that recipe: else None): its one-character tokens, byte tokens and merges in rank order, read off its JSON."""
    config = json.loads(tokenizer_json)
    if not _piece_proof(config):
        return None
    model = config["model"]
    vocab: dict[str, int] = model["vocab"]
    single = [(ord(t), i) for t, i in vocab.items() if len(t) == 1]
    return EmbedSetup(
        chars=np.array([c for c, _ in single], dtype=np.uint32),
        char_ids=np.array([i for _, i in single], dtype=np.int32),
        byte_ids=np.array([vocab[f"<0x{b:02X}>"] for b in range(256)], dtype=np.int32),
        merges=np.array([(vocab[a], vocab[b], vocab[a + b]) for a, b in _merge_pairs(model)], np.int32).reshape(-1, 3),
        table=table,
        offset=offset,
    )


class _Pieces:
    """The piece tokenizer, its cut points and two memos of int32 id bytes: `bare` (a word w of a simple text ->
    the ids of SPACE + w) and `whole` (a piece or part -> its ids as it is)."""

    def __init__(self, tokenizer: object, cuts: re.Pattern[str] | None):
        self.tokenizer, self.cuts = tokenizer, cuts
        self.bare: dict[str, bytes] = {}
        self.whole: dict[str, bytes] = {}

    def memoise(self, memo: dict[str, bytes], keys: Iterable[str], spaced: bool) -> None:
        """memo[key] = the ids of key (of SPACE + key if `spaced`) for every key not in it yet: the parts it is
        cut into from `whole`, the parts not there tokenised in one call, each a pre-tokenized word (far
        cheaper than one encoding per part)."""
        new = list(dict.fromkeys(k for k in keys if k not in memo))
        if not new:
            return
        texts = [SPACE + k if spaced else k for k in new]
        parts = [[p for p in self.cuts.split(t) if p] for t in texts] if self.cuts else [[t] for t in texts]
        missing = list(dict.fromkeys(p for ps in parts for p in ps if p not in self.whole))
        if missing:
            e = self.tokenizer.encode(missing, is_pretokenized=True, add_special_tokens=False)
            raw = np.array(e.ids, dtype="<i4").tobytes()
            ends = 4 * np.cumsum(np.bincount(np.array(e.word_ids, dtype=np.int64), minlength=len(missing)))
            starts = [0, *ends[:-1].tolist()]
            self.whole.update((p, raw[a:b]) for p, a, b in zip(missing, starts, ends.tolist(), strict=True))
        memo.update((k, b"".join(map(self.whole.__getitem__, ps))) for k, ps in zip(new, parts, strict=True))


class Encoder:
    """Tokenizer + projected table + offset: the per-request and batch transforms (router and training).
    `native`: `vector` / `vectors` run `embed_kernel.c` when it builds (else the piece memos, equal bit for bit)."""

    def __init__(self, tokenizer_json: str, table: np.ndarray, offset: np.ndarray, max_chars: int, native: bool = True):
        from tokenizers import Tokenizer

        try:
            self.tokenizer = Tokenizer.from_str(tokenizer_json)
        except Exception as exc:  # the Rust side raises plain Exception on a bad config
            raise BeastError(
                f"features.embed: not a tokenizer JSON ({str(exc).splitlines()[0] if str(exc) else exc})"
            ) from None
        self.table, self.offset, self.max_chars = table, np.asarray(offset, dtype=np.float64), max_chars
        self.k = table.shape[1]
        self.native = native
        self.tokenizer_json = tokenizer_json

    def _pooled(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        if len(ids) == 0:
            return (-self.offset).astype(np.float32)
        return (self.table[ids].sum(axis=0, dtype=np.float64) / len(ids) - self.offset).astype(np.float32)

    def ids(self, prompt: str) -> list[int]:
        """The tokenizer's ids of the prompt (the definition; `vector` reaches the same ids through memos)."""
        return self.tokenizer.encode(well_formed(prompt, self.max_chars), add_special_tokens=False).ids

    def vector(self, prompt: str | None) -> np.ndarray:
        """The k features of one prompt (float32; NaN for None): from the C kernel, else with the ids from the
        piece memos of `_ids_bytes` (a warm prompt's words cost a dict lookup each: ~18 us instead of ~66 us for
        a full tokenizer call on a 384-character window, but every new piece costs a tokenizer call), tested
        equal to `ids`."""
        if prompt is None:
            return np.full(self.k, np.nan, dtype=np.float32)
        text = well_formed(prompt, self.max_chars)
        if self._kernel is not None:
            return self._kernel.vector(text)
        return self._pooled(np.frombuffer(self._ids_bytes([text])[0], dtype="<i4"))

    def in_c(self) -> bool:
        """Whether `vector` / `vectors` run the C kernel (building it now if it was not yet)."""
        return self._kernel is not None

    @functools.cached_property
    def _kernel(self) -> EmbedKernel | None:
        """`embed_kernel.c` told this tokenizer, table and offset; None when `native` is off, the tokenizer fails
        the piece proof, or no kernel builds (`features.embed_kernel.load_kernel` warns)."""
        if not self.native:
            return None
        setup = kernel_setup(self.tokenizer_json, self.table, self.offset)
        return None if setup is None else load_kernel(setup)

    @functools.cached_property
    def _pieces(self) -> _Pieces | None:
        """The piece tokenizer (`piece_tokenizer_json`), its cut points and the memos of `_ids_bytes`, or None
        without proof."""
        from tokenizers import Tokenizer

        config = self.tokenizer.to_str()
        piece_json = piece_tokenizer_json(config)
        return None if piece_json is None else _Pieces(Tokenizer.from_str(piece_json), safe_cuts(config))

    @functools.cached_property
    def _table64(self) -> np.ndarray:
        return self.table.astype(np.float64)

    def _ids_bytes(self, texts: list[str]) -> list[bytes]:
        """The ids of each (well-formed) text as int32 bytes: each piece tokenised once per process (a text
        with single spaces only, none at its ends and no SPACE, is cut at its spaces, no regex needed), a new
        piece from the parts it is cut into (`safe_cuts`), so only never-seen parts reach the tokenizer."""
        if self._pieces is None:
            encoded = self.tokenizer.encode_batch(texts, add_special_tokens=False) if texts else []
            return [np.array(e.ids, dtype="<i4").tobytes() for e in encoded]
        pieces = self._pieces
        bare, whole = pieces.bare, pieces.whole
        if len(bare) + len(whole) >= _MEMO_MAX:
            bare.clear()
            whole.clear()
        out: list[bytes] = []
        failed: list[tuple[int, list[str], dict[str, bytes]]] = []
        for text in texts:
            simple = text != "" and SPACE not in text and "  " not in text and text[0] != " " and text[-1] != " "
            keys = text.split(" ") if simple else _PIECES.findall(SPACE + text.replace(" ", SPACE)) if text else []
            memo = bare if simple else whole
            try:
                out.append(b"".join(map(memo.__getitem__, keys)))
            except KeyError:  # a piece not seen yet: all of them tokenised together below
                failed.append((len(out), keys, memo))
                out.append(b"")
        for memo, spaced in ((bare, True), (whole, False)):
            pieces.memoise(memo, [k for _, keys, m in failed if m is memo for k in keys], spaced)
        for i, keys, memo in failed:
            out[i] = b"".join(map(memo.__getitem__, keys))
        return out

    def vocabulary_words(self) -> list[str]:
        """The tokenizer's whole-word tokens (its word marker followed by no other), without the marker, in id
        order: a fixed word list that owes nothing to any prompt, to warm the memos with (`warm`)."""
        vocab = self.tokenizer.get_vocab()
        return [
            t[1:] for t in sorted(vocab, key=vocab.__getitem__) if t[:1] == SPACE and len(t) > 1 and SPACE not in t[1:]
        ]

    def warm(self, words: Sequence[str]) -> None:
        """Pay at load what a first request would: build the C kernel, or without it memoise the ids of each word
        as a piece of a text (both memos of `_ids_bytes`), as its first sight in a prompt would."""
        if self._kernel is None and self._pieces is not None:
            self._pieces.memoise(self._pieces.bare, words, spaced=True)
            self._pieces.memoise(self._pieces.whole, [SPACE + w for w in words], spaced=False)

    def vectors(self, prompts: Sequence[str | None]) -> np.ndarray:
        """`vector` of every prompt (n x k float32, NaN rows for None), equal to it bit for bit: the C kernel's
        batch call, else memoised pieces for the ids, then one sparse product sums every prompt's table rows in id
        order in float64, the same additions as `_pooled`'s."""
        out = np.full((len(prompts), self.k), np.nan, dtype=np.float32)
        rows = [i for i, p in enumerate(prompts) if p is not None]
        if not rows:
            return out
        texts = [well_formed(prompts[i], self.max_chars) for i in rows]
        if self._kernel is not None:
            out[rows] = self._kernel.vectors(texts)
            return out
        chunks = self._ids_bytes(texts)
        counts = np.fromiter(map(len, chunks), dtype=np.int64, count=len(chunks)) // 4
        ids = np.frombuffer(b"".join(chunks), dtype="<i4")
        indptr = np.concatenate([[0], np.cumsum(counts)])
        x = sp.csr_matrix((np.ones(len(ids)), ids, indptr), shape=(len(rows), len(self.table)))
        sums = np.asarray(x @ self._table64)
        out[rows] = (sums / np.maximum(counts, 1)[:, None] - self.offset).astype(np.float32)
        return out

    def matrix(self, prompts: pd.Series) -> np.ndarray:
        """n x k float32, each distinct prompt tokenised once (a batch through the Rust tokenizer)."""
        codes, uniques = pd.factorize(prompts, use_na_sentinel=True)
        texts = [well_formed(str(u), self.max_chars) for u in uniques]
        encoded = self.tokenizer.encode_batch(texts, add_special_tokens=False) if texts else []
        distinct = np.stack([self._pooled(e.ids) for e in encoded]) if encoded else np.empty((0, self.k), np.float32)
        out = np.full((len(prompts), self.k), np.nan, dtype=np.float32)
        known = codes >= 0
        out[known] = distinct[codes[known]]
        return out


def table_bytes(table: np.ndarray) -> bytes:
    return np.ascontiguousarray(table, dtype="<f4").tobytes()


@dataclass(frozen=True, eq=False)
class EmbedSpec:
    """What the embedding family needs: fitted components and offset, and the hashes of the files derived
    from the package (compare specs by `to_dict()`)."""

    params: EmbedParams
    components: np.ndarray  # float32, k x 256
    offset: np.ndarray  # float64, k
    explained_variance_ratio: tuple[float, ...]
    vocab_size: int
    table_sha256: str  # of BUNDLE_TABLE's bytes (the projected table)
    tokenizer_sha256: str  # of BUNDLE_TOKENIZER's bytes
    source: dict  # package, version, file, sha256 of the package table

    def to_dict(self) -> dict:
        return {
            "kind": SPEC_KIND,
            "version": SPEC_VERSION,
            "params": asdict(self.params),
            "components": matrix_json(self.components),
            "offset": [float(v) for v in self.offset],
            "explained_variance_ratio": list(self.explained_variance_ratio),
            "vocab_size": self.vocab_size,
            "table": BUNDLE_TABLE,
            "table_sha256": self.table_sha256,
            "tokenizer": BUNDLE_TOKENIZER,
            "tokenizer_sha256": self.tokenizer_sha256,
            "source": dict(self.source),
        }

    @staticmethod
    def from_dict(raw: object) -> EmbedSpec:
        return _spec_from_dict(raw)

    def bundle_files(self) -> dict[str, bytes]:
        """The files a router needs (projected table, tokenizer), rebuilt from the package and checked
        against the hashes recorded at fit time: a different wheel cannot slip into a bundle."""
        src = load_source()
        files = {
            BUNDLE_TABLE: table_bytes(project(src.table, self.components)),
            BUNDLE_TOKENIZER: src.tokenizer_json.encode(),
        }
        for rel, want in ((BUNDLE_TABLE, self.table_sha256), (BUNDLE_TOKENIZER, self.tokenizer_sha256)):
            if hashlib.sha256(files[rel]).hexdigest() != want:
                raise BeastError(
                    f"features.embed: {rel} rebuilt from {PACKAGE} {src.version} does not match the spec's sha256: the package changed since training; retrain"
                )
        return files

    @functools.cached_property
    def encoder(self) -> Encoder:
        """Training-side encoder, from the installed package (the router builds its own from the bundle)."""
        src = load_source()
        if src.table.shape[0] != self.vocab_size:
            raise BeastError(
                f"features.embed: {PACKAGE} table has {src.table.shape[0]} rows, the spec {self.vocab_size}; retrain"
            )
        return Encoder(src.tokenizer_json, project(src.table, self.components), self.offset, self.params.max_chars)


def project(table: np.ndarray, components: np.ndarray) -> np.ndarray:
    """vocab x k float32: every token's embedding on the k directions (float64 product, then float32)."""
    return (table.astype(np.float64) @ components.astype(np.float64).T).astype(np.float32)


def fit_embed(prompts: pd.Series, params: EmbedParams) -> EmbedSpec:
    """Principal directions of the distinct training prompts' mean token embeddings (k is capped at the
    number of prompts - 1; the spec records the k used); pure but for reading the package's files once."""
    _check_params(params)
    src = load_source()
    corpus = list(pd.unique(prompts.dropna().astype(str)))
    if len(corpus) < 2:
        raise BeastError(f"features.embed: {len(corpus)} distinct prompt(s), need at least 2 to fit")
    params = replace(params, k=min(params.k, len(corpus) - 1))  # no more directions than the prompts span
    full = Encoder(src.tokenizer_json, src.table, np.zeros(src.table.shape[1]), params.max_chars)
    E = full.matrix(pd.Series(corpus, dtype=object)).astype(np.float64)
    mean = E.mean(axis=0)
    _, s, vt = np.linalg.svd(E - mean, full_matrices=False)
    comps = vt[: params.k]
    comps *= np.sign(comps[np.arange(params.k), np.abs(comps).argmax(axis=1)])[:, None]  # deterministic signs
    comps = comps.astype(np.float32)
    evr = (s**2 / max(float((s**2).sum()), 1e-300))[: params.k]
    offset = mean @ comps.astype(np.float64).T
    table_sha = hashlib.sha256(table_bytes(project(src.table, comps))).hexdigest()
    source = {"package": PACKAGE, "version": src.version, "file": TABLE_FILE, "sha256": src.table_sha256}
    return _frozen(
        params,
        comps,
        offset,
        tuple(float(v) for v in evr),
        src.table.shape[0],
        table_sha,
        hashlib.sha256(src.tokenizer_json.encode()).hexdigest(),
        source,
    )


def transform_embed(spec: EmbedSpec, prompts: pd.Series) -> np.ndarray:
    """n x k float32 embedding features (null prompt -> NaN row)."""
    return spec.encoder.matrix(prompts)


# ---------------------------------------------------------------------------------------- validation


def _check_params(p: EmbedParams) -> None:
    if not 1 <= p.k <= DIM or p.max_chars < 1:
        raise BeastError(f"features.embed: need 1 <= k <= 256 and max_chars >= 1; got {p}")


def _frozen(
    params: EmbedParams,
    comps: np.ndarray,
    offset: np.ndarray,
    evr: tuple[float, ...],
    vocab: int,
    table_sha: str,
    tok_sha: str,
    source: dict,
) -> EmbedSpec:
    comps, offset = np.array(comps, dtype=np.float32), np.array(offset, dtype=np.float64)
    comps.setflags(write=False)
    offset.setflags(write=False)
    return EmbedSpec(params, comps, offset, evr, vocab, table_sha, tok_sha, source)


def _bad(reason: str) -> BeastError:
    return BeastError(f"embed spec: {reason}")


def _spec_from_dict(raw: object) -> EmbedSpec:
    if not isinstance(raw, dict) or raw.get("kind") != SPEC_KIND:
        raise _bad(f"not a {SPEC_KIND} object")
    if raw.get("version") != SPEC_VERSION:
        raise _bad(f"version {raw.get('version')!r} is not supported (this code reads version {SPEC_VERSION!r})")
    need = {
        "params",
        "components",
        "offset",
        "explained_variance_ratio",
        "vocab_size",
        "table_sha256",
        "tokenizer_sha256",
        "source",
    }
    if need - raw.keys():
        raise _bad(f"missing field(s) {sorted(need - raw.keys())}")
    names = {f.name for f in fields(EmbedParams)}
    p = raw["params"]
    if not isinstance(p, dict) or set(p) != names or not all(type(v) is int for v in p.values()):
        raise _bad(f"params must be integers {sorted(names)}, got {p!r}")
    params = EmbedParams(**p)
    try:
        _check_params(params)
    except BeastError as exc:
        raise _bad(str(exc)) from None
    comps = matrix_from_json(raw["components"], [params.k, DIM], _bad)
    offset = floats_from_json(raw["offset"], "offset", params.k, _bad)
    evr = floats_from_json(raw["explained_variance_ratio"], "explained_variance_ratio", params.k, _bad)
    vocab = raw["vocab_size"]
    if type(vocab) is not int or vocab < 1:
        raise _bad(f"vocab_size must be a positive integer, got {vocab!r}")
    for key in ("table_sha256", "tokenizer_sha256"):
        if not isinstance(raw[key], str) or len(raw[key]) != 64:
            raise _bad(f"{key} must be a sha256 hex digest")
    if not isinstance(raw["source"], dict):
        raise _bad("source must be an object")
    return _frozen(
        params,
        comps,
        offset,
        tuple(float(v) for v in evr),
        vocab,
        raw["table_sha256"],
        raw["tokenizer_sha256"],
        raw["source"],
    )
