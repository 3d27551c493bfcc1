// Per-request features, ported from features/prompt.py (`prompt_vector`), features/text.py (`text_vector`)
// and features/embed.py (`Encoder.vector`; its tokenizer is tokenizer.mjs).
//
// Unicode rules (Python str semantics): lengths are code points, not UTF-16 units; every regex runs with the
// `u` flag so a class matches one code point (an astral character is one match, as in Python `re`); "lower"
// is String.prototype.toLowerCase (full Unicode mapping, like Python str.lower); the text recipe normalises
// with NFKC before lowercasing. The pattern sources below are byte-identical to features/prompt.py PATTERNS
// (tests/test_js_router.py compares them), and none of them uses \s, \w, \d or \b.

import { RowSums } from "./rows.mjs";
import { LlamaTokenizer } from "./tokenizer.mjs";
import { surrogatePairs } from "./utf16.mjs";

export const CHARS_PER_TOKEN = 4;
export const CODE_TOKENS_FOR_CODE = 3;
// The window every prompt feature reads (features/prompt.py prompt_window): the whole prompt up to
// WINDOW_HEAD + WINDOW_TAIL code points, else its first WINDOW_HEAD and last WINDOW_TAIL joined by WINDOW_JOIN.
export const WINDOW_HEAD = 192;
export const WINDOW_TAIL = 192;
export const WINDOW_JOIN = "\n";
export const CHARS_CAP = 65536; // `chars` counts code points up to this (features.prompt.CHARS_CAP)

const LEAD = String.raw`^[ \t\n\r"'(\[*#>_-]*`;
const WH = ["what", "how", "why", "who", "when", "where", "which"];
const IMPERATIVES = [
  "write", "explain", "list", "summarize", "summarise", "translate", "describe", "create", "generate",
  "give", "make", "tell", "provide", "find", "compare", "rewrite", "suggest", "classify", "identify",
  "edit", "convert", "design", "implement", "fix", "debug", "analyze", "analyse", "calculate", "solve",
  "name", "outline", "draft", "compose", "brainstorm", "plan", "recommend", "correct", "paraphrase",
  "define", "predict", "evaluate", "choose", "categorize", "extract", "answer", "help", "show", "imagine",
  "pretend", "act", "count", "sort", "rank", "rate", "complete", "continue", "check", "proofread", "improve",
];
const MATH_WORDS = [
  "solve", "solving", "calculate", "calculating", "calculation", "compute", "evaluate", "simplify",
  "equation", "equations", "integral", "derivative", "probability", "theorem", "prove", "proof",
  "arithmetic", "algebra", "geometry", "calculus", "math", "maths", "mathematics", "mathematical",
  "percent", "percentage",
];
const CODE_KEYWORDS = ["def", "class", "import", "return", "function", "const", "var", "public", "private", "void", "elif"];
const words = (list) => "(?:" + list.join("|") + ")";

// name -> [regex source, runs on the lowercased prompt?]  (features/prompt.py PATTERNS, same order)
export const PATTERNS = {
  word: [String.raw`[^ \t\n\r\x0b\x0c]+`, false],
  newline: [String.raw`\n`, false],
  fence: ["```", false],
  fenced_block: [String.raw`${"```"}[\s\S]*?${"```"}|${"```"}[\s\S]*`, false],
  code_token: [
    String.raw`[A-Za-z_][A-Za-z0-9_]{0,63}\([^()\n]*\)|[{};]|==|!=|<=|>=|=>|->|\+\+|\+=|&&|\|\||::|</[A-Za-z][A-Za-z0-9]*>` +
      String.raw`|#include|(?:^|\n)[ \t]*` + words(CODE_KEYWORDS) + String.raw`[ \t(]`,
    false,
  ],
  code_symbol: [String.raw`[{}\[\]<>=;_\\|&^~${"`"}$#]`, false],
  digit: ["[0-9]", false],
  math: [
    String.raw`[0-9a-z)][ \t]*[+*^=\u00d7\u00f7][ \t]*[0-9a-z(]` +
      String.raw`|\\(?:frac|sqrt|sum|int|prod|lim|cdot|times|div|pi|alpha|beta|theta|infty|leq|geq|neq)` +
      String.raw`|(?:^|[^a-z])` + words(MATH_WORDS) + String.raw`(?:[^a-z]|$)`,
    true,
  ],
  list_item: [String.raw`(?:^|\n)[ \t]*(?:[-*\u2022]|[0-9]{1,3}[.)])[ \t]+`, false],
  question_end: [String.raw`[?\uff1f][ \t\n\r]*$`, false],
  wh_start: [LEAD + words(WH) + String.raw`(?:[^a-z]|$)`, true],
  wh_any: [String.raw`(?:^|[^a-z])(` + WH.join("|") + String.raw`)(?:[^a-z]|$)`, true],
  imperative: [LEAD + String.raw`(?:please[ \t,]+)?` + words(IMPERATIVES) + String.raw`(?:[^a-z]|$)`, true],
  non_ascii: [String.raw`[^\x00-\x7f]`, false],
  latin: [String.raw`[A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f]`, false],
  cjk: [String.raw`[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]`, false],
  cyrillic: [String.raw`[\u0400-\u04ff]`, false],
  arabic: [String.raw`[\u0600-\u06ff\u0750-\u077f]`, false],
  upper: ["[A-Z]", false],
  letter: ["[A-Za-z]", false],
  turn: [String.raw`(?:^|\n)[ \t]*(?:user|human|assistant)[ \t]*:`, true],
};

export const PROMPT_FEATURES = [
  "chars", "words", "tokens_est", "lines", "has_code", "code_tokens", "code_ratio", "code_symbol_ratio",
  "digit_ratio", "math", "list_items", "question", ...WH.map((w) => `q_${w}`), "q_other", "imperative",
  "non_ascii_ratio", "latin_ratio", "cjk_ratio", "cyrillic_ratio", "arabic_ratio", "upper_ratio", "turns",
];

const COUNTED = Object.entries(PATTERNS)
  .filter(([name]) => name !== "fenced_block" && name !== "wh_any")
  .map(([name, [source, lower]]) => [name, new RegExp(source, "gu"), lower]);
const FENCED = new RegExp(PATTERNS.fenced_block[0], "gu");
const WH_ANY = new RegExp(PATTERNS.wh_any[0], "u");

/** Length in Unicode code points (Python len): a surrogate pair is one, a lone surrogate is one. */
export function codePoints(s) {
  return s.length - surrogatePairs(s);
}

/** min(code points, CHARS_CAP) in O(1) for long strings: 2 x CHARS_CAP UTF-16 units hold >= CHARS_CAP code points. */
export function cappedCodePoints(s) {
  return s.length >= 2 * CHARS_CAP ? CHARS_CAP : Math.min(codePoints(s), CHARS_CAP);
}

const isHigh = (c) => (c & 0xfc00) === 0xd800;
const isLow = (c) => (c & 0xfc00) === 0xdc00;

/** UTF-16 index just past the first `n` code points of `s` (s.length if it has fewer). */
function headEnd(s, n) {
  let i = 0;
  for (let count = 0; count < n && i < s.length; count++) i += isHigh(s.charCodeAt(i)) && i + 1 < s.length && isLow(s.charCodeAt(i + 1)) ? 2 : 1;
  return i;
}

/** UTF-16 index where the last `n` code points of `s` start (0 if it has fewer). A high surrogate pairs only
 * with the low one right after it, so walking back cuts at the same code point boundaries as walking forward. */
function tailStart(s, n) {
  let i = s.length;
  for (let count = 0; count < n && i > 0; count++) i -= isLow(s.charCodeAt(i - 1)) && i >= 2 && isHigh(s.charCodeAt(i - 2)) ? 2 : 1;
  return i;
}

/** The part of a prompt its features read (Python prompt_window): O(window) work for any prompt length. */
export function promptWindow(s) {
  if (s.length <= WINDOW_HEAD + WINDOW_TAIL) return s; // code points <= UTF-16 units
  const h = headEnd(s, WINDOW_HEAD);
  const t = tailStart(s, WINDOW_TAIL);
  return t <= h ? s : s.slice(0, h) + WINDOW_JOIN + s.slice(t); // t <= h: at most HEAD + TAIL code points
}

/** Non-overlapping matches of a global regex, left to right, as `s.match(re).length` without building them (a
 * match array of every letter was most of a decision's garbage). No pattern matches "" (an empty match would not
 * move lastIndex: refused rather than counted forever). */
function count(re, s) {
  let n = 0;
  let last = (re.lastIndex = 0);
  while (re.test(s)) {
    if (re.lastIndex === last) throw new Error(`pattern ${re.source} matched the empty string`);
    last = re.lastIndex;
    n++;
  }
  return n;
}

const ratio = (num, den) => (den > 0 ? num / den : 0.0);

/** The 28 PROMPT_FEATURES of one prompt as a Float64Array (all NaN for null / undefined). */
export function promptVector(prompt) {
  const out = new Float64Array(PROMPT_FEATURES.length);
  if (prompt === null || prompt === undefined) return out.fill(NaN);
  const text = promptWindow(prompt);
  const lower = text.toLowerCase();
  const n = {};
  for (const [name, re, isLower] of COUNTED) n[name] = count(re, isLower ? lower : text);
  const chars = cappedCodePoints(prompt);
  const wchars = codePoints(text);
  const outside = codePoints(text.replace(FENCED, ""));
  const first = WH_ANY.exec(lower);
  const wh = first ? first[1] : "";
  const f = {
    chars,
    words: n.word,
    tokens_est: Math.ceil(chars / CHARS_PER_TOKEN),
    lines: n.newline + 1,
    has_code: n.fence > 0 || n.code_token >= CODE_TOKENS_FOR_CODE ? 1 : 0,
    code_tokens: n.code_token,
    code_ratio: ratio(wchars - outside, wchars),
    code_symbol_ratio: ratio(n.code_symbol, wchars),
    digit_ratio: ratio(n.digit, wchars),
    math: n.math > 0 ? 1 : 0,
    list_items: n.list_item,
    question: n.question_end > 0 || n.wh_start > 0 ? 1 : 0,
    q_other: wh === "" ? 1 : 0,
    imperative: n.imperative > 0 ? 1 : 0,
    non_ascii_ratio: ratio(n.non_ascii, wchars),
    latin_ratio: ratio(n.latin, wchars),
    cjk_ratio: ratio(n.cjk, wchars),
    cyrillic_ratio: ratio(n.cyrillic, wchars),
    arabic_ratio: ratio(n.arabic, wchars),
    upper_ratio: ratio(n.upper, n.letter),
    turns: n.turn + 1,
  };
  for (const w of WH) f[`q_${w}`] = wh === w ? 1 : 0;
  PROMPT_FEATURES.forEach((name, i) => (out[i] = f[name]));
  return out;
}

// ------------------------------------------------------------------------------------------ text

export class TextSpecError extends Error {
  constructor(message) {
    super(`text spec: ${message}`);
    this.name = "TextSpecError";
  }
}

let KEY_BYTES = new Uint8Array(256);
const KEY_UTF8 = new TextEncoder();

/** MurmurHash3 x86 32-bit (seed 0 by default) of a string's UTF-8 bytes, as an unsigned integer. */
export function murmur3(key, seed = 0) {
  // the key's bytes: an ASCII key copied into a reused buffer (no garbage per key)
  const len = key.length;
  const bytes = keyBytes(len);
  for (let i = 0; i < len; i++) {
    const c = key.charCodeAt(i);
    if (c > 0x7f) {
      const utf8 = KEY_UTF8.encode(key);
      return murmur3Bytes(utf8, utf8.length, seed);
    }
    bytes[i] = c;
  }
  return murmur3Bytes(bytes, len, seed);
}

const keyBytes = (len) => (KEY_BYTES.length >= len ? KEY_BYTES : (KEY_BYTES = new Uint8Array(2 * len)));

/** murmur3 of the pair key `b:${a} ${b}` of two words of ASCII letters and digits (textWords), without the string. */
function pairHash(a, b) {
  const len = a.length + b.length + 3;
  const bytes = keyBytes(len);
  bytes[0] = 0x62; // "b"
  bytes[1] = 0x3a; // ":"
  for (let i = 0; i < a.length; i++) bytes[2 + i] = a.charCodeAt(i);
  bytes[2 + a.length] = 0x20;
  for (let i = 0, at = 3 + a.length; i < b.length; i++) bytes[at + i] = b.charCodeAt(i);
  return murmur3Bytes(bytes, len, 0);
}

function murmur3Bytes(bytes, len, seed) {
  const c1 = 0xcc9e2d51, c2 = 0x1b873593;
  let h = seed | 0;
  const nblocks = len >> 2;
  for (let b = 0; b < nblocks; b++) {
    const i = b << 2;
    let k = bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24);
    k = Math.imul(k, c1);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, c2);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  const tail = nblocks << 2;
  let k = 0;
  switch (len & 3) {
    case 3:
      k ^= bytes[tail + 2] << 16;
    // falls through
    case 2:
      k ^= bytes[tail + 1] << 8;
    // falls through
    case 1:
      k ^= bytes[tail];
      k = Math.imul(k, c1);
      k = (k << 15) | (k >>> 17);
      k = Math.imul(k, c2);
      h ^= k;
  }
  h ^= len;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

const WORD_RE = /[a-z0-9]+/g;

const textWords = (prompt) => prompt.normalize("NFKC").toLowerCase().match(WORD_RE) ?? [];

/** The keys of one word: "w:" the word, "c:" its char_wb 3-grams. */
function wordKeys(w) {
  const padded = ` ${w} `;
  const keys = [`w:${w}`];
  for (let j = 0; j < w.length; j++) keys.push(`c:${padded.slice(j, j + 3)}`);
  return keys;
}

/** The hashed keys of one prompt: NFKC, lowercase, [a-z0-9]+ words; "w:" words, "b:" pairs, "c:" char_wb 3-grams. */
export function textKeys(prompt) {
  const ws = textWords(prompt);
  const keys = ws.map((w) => `w:${w}`);
  for (let i = 0; i + 1 < ws.length; i++) keys.push(`b:${ws[i]} ${ws[i + 1]}`);
  for (const w of ws) keys.push(...wordKeys(w).slice(1));
  return keys;
}

const SPEC_KIND = "beast.features.text";
const SPEC_VERSION = "1";
const PARAM_TYPES = { n_features: "int", k: "int", min_df: "int", seed: "int", sublinear_tf: "bool" };

function finiteList(raw, name, length) {
  if (!Array.isArray(raw) || raw.length !== length) throw new TextSpecError(`${name} must be a list of ${length} numbers`);
  if (!raw.every((v) => typeof v === "number" && Number.isFinite(v))) throw new TextSpecError(`${name} holds a value that is not a finite number`);
  return Float64Array.from(raw);
}

/** The fitted text state (features/text.py TextSpec JSON) and the per-request transform. */
export class TextSpec {
  constructor(raw) {
    if (raw === null || typeof raw !== "object" || raw.kind !== SPEC_KIND) throw new TextSpecError(`not a ${SPEC_KIND} object`);
    if (raw.version !== SPEC_VERSION) throw new TextSpecError(`version ${JSON.stringify(raw.version)} is not supported (this code reads version "${SPEC_VERSION}")`);
    const p = raw.params;
    if (p === null || typeof p !== "object" || Object.keys(p).sort().join() !== Object.keys(PARAM_TYPES).sort().join()) {
      throw new TextSpecError(`params must have exactly the fields ${Object.keys(PARAM_TYPES).sort().join(", ")}`);
    }
    for (const [name, type] of Object.entries(PARAM_TYPES)) {
      const ok = type === "bool" ? typeof p[name] === "boolean" : Number.isInteger(p[name]);
      if (!ok) throw new TextSpecError(`params.${name} must be ${type}, got ${JSON.stringify(p[name])}`);
    }
    if (p.n_features < 2 || !(p.k >= 1 && p.k < p.n_features) || p.min_df < 1) throw new TextSpecError(`need n_features >= 2, 1 <= k < n_features, min_df >= 1`);
    this.nFeatures = p.n_features;
    this.k = p.k;
    this.sublinear = p.sublinear_tf;
    this.idf = finiteList(raw.idf, "idf", p.n_features);
    const c = raw.components;
    if (c === null || typeof c !== "object" || c.dtype !== "float32" || c.byteorder !== "little") throw new TextSpecError("components must be {dtype: float32, byteorder: little, shape, base64}");
    if (!Array.isArray(c.shape) || c.shape[0] !== p.k || c.shape[1] !== p.n_features || c.shape.length !== 2) {
      throw new TextSpecError(`components.shape is ${JSON.stringify(c.shape)}, params say [${p.k}, ${p.n_features}]`);
    }
    if (typeof c.base64 !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(c.base64) || c.base64.length % 4 !== 0) throw new TextSpecError("components.base64 is not base64");
    const blob = Buffer.from(c.base64, "base64");
    if (blob.length !== 4 * p.k * p.n_features) throw new TextSpecError(`components hold ${blob.length} bytes, shape [${p.k}, ${p.n_features}] needs ${4 * p.k * p.n_features}`);
    // column-major copy (n_features x k): a request touches a few columns, each contiguous
    const view = new DataView(blob.buffer, blob.byteOffset, blob.byteLength);
    this.columns = new Float64Array(p.k * p.n_features);
    for (let r = 0; r < p.k; r++) {
      for (let col = 0; col < p.n_features; col++) {
        const v = view.getFloat32(4 * (r * p.n_features + col), true);
        if (!Number.isFinite(v)) throw new TextSpecError("components hold a value that is not finite");
        this.columns[col * p.k + r] = v;
      }
    }
    this._sums = new RowSums(this.columns, p.k); // the projection, in WebAssembly (rows.mjs)
    this._buckets = new Map(); // key -> bucket memo (keys repeat a lot), bounded
    this._words = new Map(); // word -> the buckets of its wordKeys (features/text.py request_buckets), bounded
  }

  /** The buckets of `textKeys(prompt)`, the same multiset: each word's keys hashed once per process, each word pair
   * hashed where it occurs (a memo of pairs, which rarely repeat, cost more in Map lookups and garbage than it saved:
   * every-sample-prompt p99 549-557 -> 452-479 us in `node serving/js/bench.mjs`). */
  buckets(prompt) {
    const out = [];
    this._each(prompt, (b) => out.push(b));
    return out;
  }

  /** sink(bucket) for each bucket of `buckets(prompt)`, in that order, without building the list. Indexed loops:
   * for-of over the words and their buckets made iterator results, a third of a decision's garbage. */
  _each(prompt, sink) {
    const ws = textWords(prompt);
    const words = this._words;
    if (words.size >= 1_000_000) words.clear();
    for (let i = 0; i < ws.length; i++) {
      let bs = words.get(ws[i]);
      if (bs === undefined) {
        bs = wordKeys(ws[i]).map((key) => this.bucket(key));
        words.set(ws[i], bs);
      }
      for (let j = 0; j < bs.length; j++) sink(bs[j]);
    }
    const n = this.nFeatures;
    for (let i = 0; i + 1 < ws.length; i++) sink(pairHash(ws[i], ws[i + 1]) % n);
  }

  bucket(key) {
    let b = this._buckets.get(key);
    if (b === undefined) {
      if (this._buckets.size >= 1_000_000) this._buckets.clear();
      b = murmur3(key, 0) % this.nFeatures;
      this._buckets.set(key, b);
    }
    return b;
  }

  /** The k text features of one prompt (float32 values as numbers; NaN for null / undefined). */
  vector(prompt) {
    const k = this.k;
    const out = new Float64Array(k);
    if (prompt === null || prompt === undefined) return out.fill(NaN);
    const tf = (this._tf ??= new Int32Array(this.nFeatures)); // term counts, zeroed again below
    const touched = (this._touched ??= new Int32Array(this.nFeatures)); // each bucket at most once
    let m = 0;
    this._each(prompt, (b) => {
      if (tf[b]++ === 0) touched[m++] = b;
    });
    if (m === 0) return out;
    const cols = touched.subarray(0, m).sort();
    const w = (this._weights ??= new Float64Array(this.nFeatures)).subarray(0, m);
    let ss = 0.0;
    for (let i = 0; i < cols.length; i++) {
      const n = tf[cols[i]];
      tf[cols[i]] = 0;
      w[i] = (this.sublinear ? 1.0 + Math.log(n) : n) * this.idf[cols[i]];
      ss += w[i] * w[i];
    }
    const norm = Math.sqrt(ss);
    if (norm === 0) return out;
    for (let i = 0; i < cols.length; i++) w[i] /= norm;
    this._sums.add(out, cols, w, cols.length);
    for (let r = 0; r < k; r++) out[r] = Math.fround(out[r]); // stored as float32, like the Python path
    return out;
  }
}

// ------------------------------------------------------------------------------------------ embedding

export class EmbedSpecError extends Error {
  constructor(message) {
    super(`embed: ${message}`);
    this.name = "EmbedSpecError";
  }
}

const EMBED_KIND = "beast.features.embed";
const EMBED_VERSION = "1";
const EMBED_FIELDS = ["params", "components", "offset", "explained_variance_ratio", "vocab_size", "table_sha256", "tokenizer_sha256", "source"];
const EMBED_PARAMS = ["k", "max_chars"];

/** The first `n` code points of `s` (a surrogate pair is one, a lone surrogate one; Python s[:n]). */
export function headCodePoints(s, n) {
  if (s.length <= n) return s;
  let i = 0;
  for (let count = 0; count < n && i < s.length; count++) {
    const c = s.charCodeAt(i);
    i += c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00 ? 2 : 1;
  }
  return s.slice(0, i);
}

/** feature_spec.json `embed` checked as features/embed.py EmbedSpec.from_dict does: { k, maxChars, vocabSize, offset }. */
export function checkEmbedSpec(raw) {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw) || raw.kind !== EMBED_KIND) throw new EmbedSpecError(`not a ${EMBED_KIND} object`);
  if (raw.version !== EMBED_VERSION) throw new EmbedSpecError(`version ${JSON.stringify(raw.version)} is not supported (this code reads version "${EMBED_VERSION}")`);
  const missing = EMBED_FIELDS.filter((f) => !Object.hasOwn(raw, f));
  if (missing.length) throw new EmbedSpecError(`missing field(s) ${missing.join(", ")}`);
  const p = raw.params;
  if (p === null || typeof p !== "object" || Object.keys(p).sort().join() !== EMBED_PARAMS.join() || !EMBED_PARAMS.every((k) => Number.isInteger(p[k]))) {
    throw new EmbedSpecError(`params must be the integers ${EMBED_PARAMS.join(", ")}, got ${JSON.stringify(p)}`);
  }
  if (!(p.k >= 1 && p.k <= 256 && p.max_chars >= 1)) throw new EmbedSpecError(`need 1 <= k <= 256 and max_chars >= 1, got k=${p.k} max_chars=${p.max_chars}`);
  if (!Number.isInteger(raw.vocab_size) || raw.vocab_size < 1) throw new EmbedSpecError(`vocab_size must be a positive integer, got ${JSON.stringify(raw.vocab_size)}`);
  for (const key of ["table_sha256", "tokenizer_sha256"]) {
    if (typeof raw[key] !== "string" || !/^[0-9a-f]{64}$/.test(raw[key])) throw new EmbedSpecError(`${key} must be a sha256 hex digest`);
  }
  const offset = raw.offset;
  if (!Array.isArray(offset) || offset.length !== p.k || !offset.every((v) => typeof v === "number" && Number.isFinite(v))) {
    throw new EmbedSpecError(`offset must be a list of ${p.k} finite numbers`);
  }
  return { k: p.k, maxChars: p.max_chars, vocabSize: raw.vocab_size, offset: Float64Array.from(offset) };
}

/** The table file's bytes (float32 little-endian, row-major vocab x k) as a Float32Array; every value finite. */
export function readEmbedTable(bytes, vocabSize, k) {
  const need = 4 * vocabSize * k;
  if (bytes.length !== need) throw new EmbedSpecError(`${bytes.length} bytes, vocab ${vocabSize} x k ${k} needs ${need}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const table = new Float32Array(vocabSize * k);
  for (let i = 0; i < table.length; i++) {
    const v = view.getFloat32(4 * i, true);
    if (!Number.isFinite(v)) throw new EmbedSpecError("table holds a value that is not finite");
    table[i] = v;
  }
  return table;
}

/**
 * The embedding family (features/embed.py): the Llama-2 BPE tokenizer, the projected token table (vocab x k,
 * float32) and the offset. Per prompt: well formed (lone surrogates -> U+FFFD), its first max_chars code
 * points, token ids, the float64 mean of their table rows in token order minus offset (no token: -offset),
 * as float32. `EmbedSpec.fromFiles(spec.embed, tokenizer JSON, table bytes)` builds it from the bundle's files.
 */
export class EmbedSpec {
  /** `raw`: feature_spec.json `embed`; `tokenizer`: a LlamaTokenizer; `table`: Float32Array, vocab_size x k. */
  constructor(raw, tokenizer, table) {
    Object.assign(this, checkEmbedSpec(raw));
    if (!(table instanceof Float32Array) || table.length !== this.vocabSize * this.k) throw new EmbedSpecError(`table must hold vocab_size x k = ${this.vocabSize * this.k} float32 values`);
    if (!(tokenizer instanceof LlamaTokenizer)) throw new TypeError("EmbedSpec needs a LlamaTokenizer");
    if (tokenizer.width > this.vocabSize) throw new EmbedSpecError(`the tokenizer has ids up to ${tokenizer.width - 1}, the table ${this.vocabSize} rows`);
    this.table = table;
    this.tokenizer = tokenizer;
    this._sums = new RowSums(table, this.k); // the pooling, in WebAssembly (rows.mjs)
  }

  /** From the bundle's files: the tokenizer JSON (text or parsed) and the table's bytes. */
  static fromFiles(raw, tokenizerJson, tableBytes) {
    const { vocabSize, k } = checkEmbedSpec(raw); // the spec first, then the table, then the tokenizer
    const table = readEmbedTable(tableBytes, vocabSize, k);
    return new EmbedSpec(raw, LlamaTokenizer.fromJSON(tokenizerJson), table);
  }

  /** The token ids of a prompt as embedded: its first max_chars code points, well formed. (Cutting first is the
   * same text, since toWellFormed turns each lone surrogate into one U+FFFD, and bounds the work.) */
  ids(prompt) {
    return this.tokenizer.encode(headCodePoints(prompt, this.maxChars).toWellFormed());
  }

  /** The k embedding features of one prompt (float32 values as numbers; NaN for null / undefined). */
  vector(prompt) {
    const k = this.k;
    const out = new Float64Array(k);
    if (prompt === null || prompt === undefined) return out.fill(NaN);
    const ids = this.ids(prompt);
    const { offset } = this;
    if (ids.length === 0) {
      for (let j = 0; j < k; j++) out[j] = Math.fround(-offset[j]);
      return out;
    }
    this._sums.add(out, ids, null, ids.length); // float64 sums, token order
    for (let j = 0; j < k; j++) out[j] = Math.fround(out[j] / ids.length - offset[j]); // stored as float32, like the Python path
    return out;
  }
}
