// Byte-pair encoding as the Hugging Face `tokenizers` library (Rust, models/bpe) does it, for the tokenizer
// JSON the embedding family ships (the Llama-2 config of the `wordllama` package, added tokens removed), with
// no dependencies. `LlamaTokenizer.fromJSON(config).encode(text)` equals
// `Tokenizer.from_str(config).encode(text, add_special_tokens=False).ids` for every text (tests/test_js_tokenizer.py).
//
// What the port reproduces, step by step:
//
// 1. Normalizer: a Sequence of Prepend (only to a non-empty string) and Replace with a String pattern (every
//    non-overlapping occurrence, left to right). No pre-tokenizer: the whole normalised text is one BPE word.
// 2. Initial symbols: the word's code points; one absent from the vocab becomes its UTF-8 bytes as "<0xXX>"
//    tokens (byte_fallback), or else the unk token (consecutive unknowns fused into one with fuse_unk).
// 3. Merges (Word::merge_all): a min-heap of (rank, position) entries, one per adjacent pair that has a merge.
//    The smallest pops; it is skipped when its left symbol was absorbed, has no right neighbour, or the pair
//    now there does not merge into the entry's new token (an entry is checked by its new token only, exactly
//    as in Rust: many pairs merge into the same token); else the two symbols merge and the new pairs with the
//    left and right neighbours are pushed. The surviving symbols, left to right, are the ids. (A pair's span
//    only grows, so "same new token" means "same pair": this is the classic greedy, lowest rank first and
//    the leftmost of equal ranks; the equal-rank order does change ids, the tests show it.)
//    With ignore_merges, a word that is itself in the vocab is that one token.
//
// Refused (TokenizerError): added tokens, a pre-tokenizer, truncation or padding, other normalizers, a Regex
// Replace, BPE dropout, continuing_subword_prefix / end_of_word_suffix, merges whose tokens are not in the vocab.
// A text with lone surrogates (which no Rust string can hold) is first made well formed (U+FFFD), as the
// Python side does before tokenising.

/** A tokenizer JSON this port does not reproduce, or a malformed one. */
export class TokenizerError extends Error {
  constructor(message) {
    super(`tokenizer: ${message}`);
    this.name = "TokenizerError";
  }
}

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
const UTF8 = new TextEncoder();
const POS = 2 ** 32; // heap key = rank * POS + position (both < 2^21 and < 2^32: exact in a double)
const SPACE = "\u2581"; // the Llama-2 normaliser's word marker (features/embed.py SPACE)
const PIECES = /\u2581*[^\u2581]+|\u2581+/g; // runs of markers, each with the text up to the next (embed.py _PIECES)

function normalizerSteps(raw) {
  if (raw === null || raw === undefined) return [];
  if (!isObject(raw)) throw new TokenizerError("normalizer must be an object or null");
  if (raw.type === "Sequence") {
    if (!Array.isArray(raw.normalizers)) throw new TokenizerError("normalizer Sequence needs a normalizers list");
    return raw.normalizers.flatMap(normalizerSteps);
  }
  if (raw.type === "Prepend") {
    if (typeof raw.prepend !== "string") throw new TokenizerError("Prepend needs a prepend string");
    return [["prepend", raw.prepend]];
  }
  if (raw.type === "Replace") {
    const p = raw.pattern;
    if (!isObject(p) || Object.keys(p).length !== 1 || typeof p.String !== "string") throw new TokenizerError("Replace: only a {String: ...} pattern is supported");
    if (p.String === "") throw new TokenizerError("Replace: empty pattern");
    if (typeof raw.content !== "string") throw new TokenizerError("Replace needs a content string");
    return [["replace", p.String, raw.content]];
  }
  throw new TokenizerError(`normalizer ${JSON.stringify(raw.type)} is not supported (Sequence, Prepend, Replace are)`);
}

/** Pair of token ids -> merge rank: open addressing (linear probing) over typed arrays, faster than a Map. */
class PairTable {
  constructor(n) {
    let size = 16;
    while (size < 2 * n) size *= 2;
    this.mask = size - 1;
    this.left = new Int32Array(size).fill(-1);
    this.right = new Int32Array(size);
    this.rank = new Int32Array(size);
  }

  slot(a, b) {
    let h = Math.imul(a, 0x9e3779b1) ^ b;
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
    return (h ^ (h >>> 13)) & this.mask;
  }

  set(a, b, rank) {
    let i = this.slot(a, b);
    while (this.left[i] !== -1 && !(this.left[i] === a && this.right[i] === b)) i = (i + 1) & this.mask;
    this.left[i] = a;
    this.right[i] = b;
    this.rank[i] = rank; // a later duplicate pair overwrites
  }

  /** The rank of merging (a, b), or -1. */
  get(a, b) {
    const { left, right, mask } = this;
    for (let i = this.slot(a, b); ; i = (i + 1) & mask) {
      const l = left[i];
      if (l === -1) return -1;
      if (l === a && right[i] === b) return this.rank[i];
    }
  }
}

/** Min-heap of doubles (rank * 2^32 + position) in a Float64Array, reused from one word to the next. */
class KeyHeap {
  constructor(capacity) {
    this.a = new Float64Array(Math.max(capacity, 16));
    this.n = 0;
  }

  reset(capacity) {
    if (this.a.length < capacity) this.a = new Float64Array(capacity);
    this.n = 0;
  }

  push(key) {
    if (this.n === this.a.length) {
      const b = new Float64Array(this.a.length * 2);
      b.set(this.a);
      this.a = b;
    }
    const a = this.a;
    let i = this.n++;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (a[parent] <= key) break;
      a[i] = a[parent];
      i = parent;
    }
    a[i] = key;
  }

  pop() {
    const a = this.a;
    const top = a[0];
    const last = a[--this.n];
    const n = this.n;
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && a[child + 1] < a[child]) child++;
      if (a[child] >= last) break;
      a[i] = a[child];
      i = child;
    }
    a[i] = last;
    return top;
  }
}

export class LlamaTokenizer {
  /** A tokenizer from a parsed HF tokenizers JSON (or its text). */
  static fromJSON(obj) {
    return new LlamaTokenizer(typeof obj === "string" ? JSON.parse(obj) : obj);
  }

  constructor(cfg) {
    if (!isObject(cfg)) throw new TokenizerError("config must be a JSON object");
    if (!Array.isArray(cfg.added_tokens ?? []) || (cfg.added_tokens ?? []).length !== 0) {
      throw new TokenizerError("added_tokens must be empty (special tokens in the text are plain text here)");
    }
    if ((cfg.pre_tokenizer ?? null) !== null) throw new TokenizerError("a pre_tokenizer is not supported (the whole text is one BPE word)");
    if ((cfg.truncation ?? null) !== null || (cfg.padding ?? null) !== null) throw new TokenizerError("truncation and padding must be null");
    this.steps = normalizerSteps(cfg.normalizer);
    const m = cfg.model;
    if (!isObject(m) || m.type !== "BPE") throw new TokenizerError("model must be a BPE model");
    if ((m.dropout ?? null) !== null && m.dropout !== 0) throw new TokenizerError("BPE dropout is not supported");
    if ((m.continuing_subword_prefix ?? null) !== null || (m.end_of_word_suffix ?? null) !== null) {
      throw new TokenizerError("continuing_subword_prefix and end_of_word_suffix are not supported");
    }
    this.byteFallback = m.byte_fallback === true;
    this.fuseUnk = m.fuse_unk === true;
    this.ignoreMerges = m.ignore_merges === true;
    if (!isObject(m.vocab)) throw new TokenizerError("model.vocab must be an object");

    // vocab: token -> id (JSON.parse keeps the last of duplicate keys, as serde's map does)
    this.vocab = new Map();
    let maxId = -1;
    for (const [token, id] of Object.entries(m.vocab)) {
      if (!Number.isInteger(id) || id < 0 || id >= 2 ** 31) throw new TokenizerError(`vocab id of ${JSON.stringify(token)} is not a non-negative integer`);
      this.vocab.set(token, id);
      if (id > maxId) maxId = id;
    }
    this.width = maxId + 1; // ids are 0 .. width - 1
    this.unkId = -1;
    if (m.unk_token !== null && m.unk_token !== undefined) {
      if (typeof m.unk_token !== "string") throw new TokenizerError("unk_token must be a string or null");
      this.unkToken = m.unk_token;
      this.unkId = this.vocab.get(m.unk_token) ?? -2; // -2: named but absent, an error only when needed (as in Rust)
    }
    this.byteIds = new Int32Array(256).fill(-1);
    for (let b = 0; b < 256; b++) this.byteIds[b] = this.vocab.get(`<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`) ?? -1;

    // merges: pair -> rank (a later duplicate pair overwrites, as collecting into a Rust HashMap); rank -> new id
    if (!Array.isArray(m.merges)) throw new TokenizerError("model.merges must be a list");
    if (m.merges.length >= 2 ** 21) throw new TokenizerError("too many merges");
    this.pairs = new PairTable(m.merges.length);
    this.rankNew = new Int32Array(m.merges.length);
    let crossesPiece = false; // a merge of a symbol not ending in SPACE with one starting with SPACE
    if (m.merges.length && !m.merges.every((x) => typeof x === typeof m.merges[0])) throw new TokenizerError("merges must be all \"a b\" strings or all [a, b] lists (one form)");
    m.merges.forEach((merge, rank) => {
      let a, b;
      if (typeof merge === "string") {
        const parts = merge.split(" ");
        if (parts.length !== 2) throw new TokenizerError(`merge ${rank + 1} is not "a b": ${JSON.stringify(merge)}`);
        [a, b] = parts;
      } else if (Array.isArray(merge) && merge.length === 2 && typeof merge[0] === "string" && typeof merge[1] === "string") {
        [a, b] = merge;
      } else {
        throw new TokenizerError(`merge ${rank + 1} is neither "a b" nor [a, b]`);
      }
      const ia = this.vocab.get(a), ib = this.vocab.get(b), inew = this.vocab.get(a + b);
      for (const [tok, id] of [[a, ia], [b, ib], [a + b, inew]]) {
        if (id === undefined) throw new TokenizerError(`merge ${rank + 1}: token ${JSON.stringify(tok)} is not in the vocab`);
      }
      this.pairs.set(ia, ib, rank);
      this.rankNew[rank] = inew;
      if (!a.endsWith(SPACE) && b.startsWith(SPACE)) crossesPiece = true;
    });
    this._chars = new Map(); // code point -> vocab id, or -1 (not in the vocab), memoised
    // Pieces (features/embed.py piece_tokenizer_json, the same proof): with exactly the Llama-2 normaliser, no
    // ignore_merges, byte fallback over all 256 byte tokens (never an unknown token to fuse) and no merge that
    // joins a symbol not ending in SPACE to one starting with SPACE, no symbol spans a cut before a run of
    // SPACE, so each piece of the normalised text encodes alone to the ids it gets inside it: memoised.
    const llama = this.steps.length === 2 && this.steps[0][0] === "prepend" && this.steps[0][1] === SPACE
      && this.steps[1][0] === "replace" && this.steps[1][1] === " " && this.steps[1][2] === SPACE;
    const safe = llama && !this.ignoreMerges && this.byteFallback && this.byteIds.every((id) => id >= 0) && !crossesPiece;
    this._pieces = safe ? new Map() : null; // piece -> its ids (Int32Array), bounded
  }

  /** The normalised text (the Sequence of Prepend / Replace). */
  normalize(text) {
    let s = text;
    for (const [kind, a, b] of this.steps) {
      if (kind === "prepend") {
        if (s !== "") s = a + s;
      } else {
        s = a === "" ? s.split(a).join(b) : s.replaceAll(a, b); // the same string; replaceAll builds no array
      }
    }
    return s;
  }

  _charId(cp, ch) {
    let id = this._chars.get(cp);
    if (id === undefined) {
      id = this.vocab.get(ch) ?? -1;
      if (this._chars.size < 1_000_000) this._chars.set(cp, id);
    }
    return id;
  }

  /** Token ids of `text` (encode with add_special_tokens=False), as an Int32Array. */
  encode(text) {
    if (typeof text !== "string") throw new TypeError("encode needs a string");
    const w = this.normalize(text.isWellFormed() ? text : text.toWellFormed());
    if (w === "") return new Int32Array(0);
    if (this.ignoreMerges) {
      const id = this.vocab.get(w);
      if (id !== undefined) return Int32Array.of(id);
    }
    if (this._pieces === null) return this._merge(this._symbols(w));
    return this._byPieces(w);
  }

  /** The ids of a normalised text piece by piece (`_pieces`: each piece's ids computed once, then memoised). */
  _byPieces(w) {
    const memo = this._pieces;
    if (memo.size >= 1_000_000) memo.clear(); // bounded memory under hostile input
    const parts = [];
    let total = 0;
    for (const piece of w.match(PIECES)) {
      let ids = memo.get(piece);
      if (ids === undefined) {
        ids = this._merge(this._symbols(piece));
        memo.set(piece, ids);
      }
      parts.push(ids);
      total += ids.length;
    }
    if (parts.length === 1) return parts[0].slice();
    const out = new Int32Array(total);
    let at = 0;
    for (const ids of parts) {
      out.set(ids, at);
      at += ids.length;
    }
    return out;
  }

  /** Initial symbol ids: one per code point, UTF-8 byte tokens for unknown ones, else (fused) unk. */
  _symbols(w) {
    const ids = [];
    let unk = false; // a pending unk symbol (fuse_unk folds a run of unknown characters into it)
    for (const ch of w) {
      const cp = ch.codePointAt(0);
      const id = this._charId(cp, ch);
      if (id >= 0) {
        if (unk) {
          ids.push(this.unkId);
          unk = false;
        }
        ids.push(id);
        continue;
      }
      if (this.byteFallback) {
        const bytes = cp < 0x80 ? [cp] : UTF8.encode(ch);
        let ok = true;
        for (const b of bytes) if (this.byteIds[b] < 0) ok = false;
        if (ok) {
          for (const b of bytes) ids.push(this.byteIds[b]); // Rust: `continue` before the pending unk is added
          continue;
        }
      }
      if (this.unkToken === undefined) continue; // no unk token: the character is dropped, as in Rust
      if (this.unkId === -2) throw new TokenizerError(`unk_token ${JSON.stringify(this.unkToken)} is not in the vocab`);
      if (unk && !this.fuseUnk) ids.push(this.unkId);
      unk = true;
    }
    if (unk) ids.push(this.unkId);
    return ids;
  }

  /** Word::merge_all: the heap of (rank, position) merges, stale entries checked by their new token. */
  _merge(symbols) {
    const n = symbols.length;
    if (this._c === undefined || this._c.length < n) {
      const size = Math.max(n, 1024);
      this._c = new Int32Array(size);
      this._prev = new Int32Array(size);
      this._next = new Int32Array(size);
      this._gone = new Uint8Array(size);
      this._heap = new KeyHeap(3 * size);
    }
    const c = this._c, prev = this._prev, next = this._next, gone = this._gone, heap = this._heap;
    for (let i = 0; i < n; i++) {
      c[i] = symbols[i];
      prev[i] = i - 1;
      next[i] = i + 1 < n ? i + 1 : -1;
      gone[i] = 0; // Rust: len == 0
    }
    const { pairs, rankNew } = this;
    heap.reset(3 * n);
    for (let i = 0; i + 1 < n; i++) {
      const rank = pairs.get(c[i], c[i + 1]);
      if (rank >= 0) heap.push(rank * POS + i);
    }
    while (heap.n > 0) {
      const key = heap.pop();
      const rank = Math.floor(key / POS);
      const pos = key - rank * POS;
      if (gone[pos]) continue;
      const right = next[pos];
      if (right === -1) continue;
      const newId = rankNew[rank];
      const now = pairs.get(c[pos], c[right]);
      if (now < 0 || rankNew[now] !== newId) continue; // expired entry
      c[pos] = newId;
      gone[right] = 1;
      const after = next[right];
      next[pos] = after;
      if (after !== -1) prev[after] = pos;
      const before = prev[pos];
      if (before >= 0) {
        const r = pairs.get(c[before], newId);
        if (r >= 0) heap.push(r * POS + before);
      }
      if (after !== -1) {
        const r = pairs.get(newId, c[after]);
        if (r >= 0) heap.push(r * POS + pos);
      }
    }
    let count = 0;
    for (let i = 0; i !== -1; i = next[i]) count++;
    const out = new Int32Array(count);
    let j = 0;
    for (let i = 0; i !== -1; i = next[i]) out[j++] = c[i];
    return out;
  }
}
