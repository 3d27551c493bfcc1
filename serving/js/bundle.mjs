// Read and verify an export bundle folder (serving/bundle.py `verify`, in Node with node:crypto).
//
// Nothing but the manifest is trusted: every listed file must exist as a regular file with its size and
// sha256, no other file may be present, and every file is parsed from the very bytes that were hashed
// (no second read, so the folder cannot change between the check and the use).

import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { lstatSync, readFileSync, readdirSync, realpathSync } from "node:fs";
import { join } from "node:path";

export const SCHEMA_VERSION = "1";
export const KIND = "beast-bundle";
export const MANIFEST = "manifest.json";
export const SIGNATURE = "signature.json"; // optional HMAC-SHA256 of the manifest bytes (serving/bundle.py)
export const KEY_ENV = "BEAST_BUNDLE_KEY";
export const MIN_KEY_BYTES = 16;
export const REQUIRED_FILES = ["feature_spec.json", "policy.json"];
const SHA256 = /^[0-9a-f]{64}$/;
const UTF8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** A bundle that cannot be trusted or read; the message names the bundle, the file and the reason. */
export class BundleError extends Error {
  constructor(message) {
    super(message);
    this.name = "BundleError";
  }
}

const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);

/** `name` as a normalised relative POSIX path, or null if absolute, with '..', empty or not plain. */
export function safeRelpath(name) {
  if (typeof name !== "string" || !name || name.includes("\\") || name.includes("\0") || /^[A-Za-z]:/.test(name)) return null;
  const parts = name.split("/").filter((p) => p !== "" && p !== ".");
  if (name.startsWith("/") || parts.length === 0 || parts.includes("..")) return null;
  return parts.join("/");
}

// ------------------------------------------------------------------ JSON that keeps object key order
// JSON.parse puts integer-like keys ("7") first, so a candidate named like a number would move; the
// manifest's candidate order is the router's model order (ties in a policy go to the first), so the
// manifest is parsed by this small strict parser, which records every object's keys in file order.

export const KEY_ORDER = Symbol("keyOrder");

const LITERAL = /true|false|null|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;

function parseOrdered(text) {
  let i = 0;
  const fail = (what) => {
    throw new SyntaxError(`${what} at position ${i}`);
  };
  const ws = () => {
    while (i < text.length && " \t\n\r".includes(text[i])) i++;
  };
  const value = () => {
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const obj = {};
      const order = [];
      ws();
      if (text[i] === "}") {
        i++;
      } else {
        for (;;) {
          ws();
          if (text[i] !== '"') fail("expected a string key");
          const key = string();
          ws();
          if (text[i++] !== ":") fail("expected ':'");
          const v = value();
          if (!Object.hasOwn(obj, key)) order.push(key);
          Object.defineProperty(obj, key, { value: v, enumerable: true, writable: true, configurable: true });
          ws();
          if (text[i] === ",") i++;
          else if (text[i] === "}") {
            i++;
            break;
          } else fail("expected ',' or '}'");
        }
      }
      Object.defineProperty(obj, KEY_ORDER, { value: order, enumerable: false });
      return obj;
    }
    if (c === "[") {
      i++;
      const arr = [];
      ws();
      if (text[i] === "]") {
        i++;
        return arr;
      }
      for (;;) {
        arr.push(value());
        ws();
        if (text[i] === ",") i++;
        else if (text[i] === "]") {
          i++;
          return arr;
        } else fail("expected ',' or ']'");
      }
    }
    if (c === '"') return string();
    LITERAL.lastIndex = i;
    const m = LITERAL.exec(text);
    if (!m) fail("unexpected token");
    i += m[0].length;
    return JSON.parse(m[0]);
  };
  const string = () => {
    STRING.lastIndex = i;
    const m = STRING.exec(text);
    if (!m) fail("bad string");
    i += m[0].length;
    return JSON.parse(m[0]);
  };
  const out = value();
  ws();
  if (i !== text.length) fail("trailing data");
  return out;
}

/** Keys of an object parsed from the manifest, in file order. */
export const orderedKeys = (obj) => obj[KEY_ORDER] ?? Object.keys(obj);

// ------------------------------------------------------------------ verify

/**
 * The bundle folder: `dir` itself, or -- when `dir` is a symlink (the usual `current -> v3` deployment) --
 * the folder it points to, resolved once so that every file is read from the same version and messages name
 * it (as serving/bundle.py `load`). Symlinks inside the bundle are still refused (not a regular file /
 * unexpected file).
 */
function resolveRoot(dir) {
  let st;
  try {
    st = lstatSync(dir);
  } catch {
    throw new BundleError(`${dir}: bundle not found`);
  }
  let root = dir;
  if (st.isSymbolicLink()) {
    try {
      root = realpathSync(dir);
      st = lstatSync(root);
    } catch {
      throw new BundleError(`${dir}: bundle not found`); // a dangling link
    }
  }
  if (!st.isDirectory()) throw new BundleError(`${dir}: not a bundle folder (missing or not a directory)`);
  return root;
}

function loadManifest(root) {
  const path = join(root, MANIFEST);
  let mst = null;
  try {
    mst = lstatSync(path);
  } catch {
    /* missing */
  }
  if (mst === null || !mst.isFile()) throw new BundleError(`${root}: ${MANIFEST}: missing`);
  let manifest;
  const raw = readFileSync(path);
  try {
    manifest = parseOrdered(UTF8.decode(raw));
  } catch (exc) {
    throw new BundleError(`${root}: ${MANIFEST}: not valid JSON (${exc.message})`);
  }
  if (!isObject(manifest) || manifest.kind !== KIND) {
    throw new BundleError(`${root}: ${MANIFEST}: not a beast bundle manifest (kind=${JSON.stringify(isObject(manifest) ? manifest.kind ?? null : null)})`);
  }
  if (manifest.schema_version !== SCHEMA_VERSION) {
    throw new BundleError(`${root}: ${MANIFEST}: unknown schema_version ${JSON.stringify(manifest.schema_version ?? null)}; this reader knows "${SCHEMA_VERSION}"`);
  }
  for (const key of ["files", "predictors", "candidates", "policy"]) {
    if (!isObject(manifest[key])) throw new BundleError(`${root}: ${MANIFEST}: field '${key}' missing or not an object`);
  }
  return { manifest, raw };
}

/** The signing key from BEAST_BUNDLE_KEY (its UTF-8 bytes), or null when unset or empty. */
export function bundleKey(env = process.env) {
  const value = env[KEY_ENV] ?? "";
  if (!value) return null;
  const key = Buffer.from(value, "utf8");
  if (key.length < MIN_KEY_BYTES) throw new BundleError(`${KEY_ENV}: key too short (${key.length} bytes); use at least ${MIN_KEY_BYTES} random bytes`);
  return key;
}

function checkSignature(root, raw, key) {
  const path = join(root, SIGNATURE);
  let st = null;
  try {
    st = lstatSync(path);
  } catch {
    /* missing */
  }
  if (st === null || !st.isFile()) throw new BundleError(`${root}: ${SIGNATURE}: missing: this router only loads signed bundles (${KEY_ENV} is set)`);
  let doc;
  try {
    doc = JSON.parse(UTF8.decode(readFileSync(path)));
  } catch (exc) {
    throw new BundleError(`${root}: ${SIGNATURE}: not valid JSON (${exc.message})`);
  }
  if (!isObject(doc) || doc.kind !== "beast-bundle-signature" || doc.algorithm !== "hmac-sha256" || typeof doc.hmac !== "string") {
    throw new BundleError(`${root}: ${SIGNATURE}: not a hmac-sha256 bundle signature`);
  }
  const expected = Buffer.from(createHmac("sha256", key).update(raw).digest("hex"), "utf8");
  const given = Buffer.from(doc.hmac, "utf8");
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw new BundleError(`${root}: ${SIGNATURE}: signature mismatch: signed with another key, or ${MANIFEST} changed after signing`);
  }
}

function checkListing(root, manifest) {
  const files = manifest.files;
  const named = [...REQUIRED_FILES];
  for (const [name, entry] of Object.entries(manifest.predictors)) {
    if (!isObject(entry) || !isObject(entry.files) || typeof entry.side !== "string") throw new BundleError(`${root}: ${MANIFEST}: predictors.${name}: expected side and files`);
    named.push(entry.side);
    for (const [key, paths] of Object.entries(entry.files)) {
      if (!isObject(paths) || typeof paths.text !== "string" || typeof paths.json !== "string") {
        throw new BundleError(`${root}: ${MANIFEST}: predictors.${name}.files.${key}: expected text and json paths`);
      }
      named.push(paths.text, paths.json);
    }
  }
  for (const rel of named) {
    if (!Object.hasOwn(files, rel)) throw new BundleError(`${root}: ${rel}: named by ${MANIFEST} but not listed in its files`);
  }
}

function walk(root, dir, rel, out) {
  const entries = readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of entries) {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) walk(root, join(dir, e.name), r, out);
    else out.push(r); // files, symlinks (to files or folders), anything else
  }
}

/** A verified bundle: the manifest plus the hashed bytes of every file, read through `json` / `text`. */
export class Bundle {
  constructor(root, manifest, data) {
    this.root = root;
    this.manifest = manifest;
    this._data = data;
  }

  get files() {
    return this.manifest.files;
  }

  get predictors() {
    return this.manifest.predictors;
  }

  /** Candidate models in manifest order. */
  get candidates() {
    return orderedKeys(this.manifest.candidates);
  }

  bytes(rel) {
    const data = this._data.get(rel);
    if (data === undefined) throw new BundleError(`${this.root}: ${rel}: not listed in ${MANIFEST}`);
    return data;
  }

  text(rel) {
    try {
      return UTF8.decode(this.bytes(rel));
    } catch (exc) {
      if (exc instanceof BundleError) throw exc;
      throw new BundleError(`${this.root}: ${rel}: not valid UTF-8`);
    }
  }

  json(rel) {
    const text = this.text(rel);
    try {
      return JSON.parse(text);
    } catch (exc) {
      throw new BundleError(`${this.root}: ${rel}: not valid JSON (${exc.message})`);
    }
  }

  predictor(name) {
    if (!Object.hasOwn(this.predictors, name)) throw new BundleError(`${this.root}: no predictor '${name}'; the bundle has ${Object.keys(this.predictors).join(", ")}`);
    return this.predictors[name];
  }

  /** The predictor's side JSON (feature names, categories, heads, ...). */
  side(name) {
    return this.json(this.predictor(name).side);
  }

  /** LightGBM JSON dump of one booster (`models/<predictor>/<key>.json`). */
  modelJson(name, key) {
    const models = this.predictor(name).files;
    if (!Object.hasOwn(models, key)) throw new BundleError(`${this.root}: ${name} has no booster '${key}'; it has ${Object.keys(models).join(", ")}`);
    return this.json(models[key].json);
  }

  featureSpec() {
    return this.json("feature_spec.json");
  }

  /**
   * The embedding family's files, { tokenizer: JSON text, table: bytes }, or null when feature_spec.json has no
   * `embed`; each must be a listed file whose manifest sha256 is the one the spec recorded at fit time.
   */
  embedFiles() {
    const spec = this.featureSpec().embed;
    const empty = typeof spec === "object" && spec !== null && Object.keys(spec).length === 0; // {} and [] are falsy in Python
    if (!spec || empty) return null;
    const out = {};
    for (const [relKey, shaKey] of [["tokenizer", "tokenizer_sha256"], ["table", "table_sha256"]]) {
      const rel = spec[relKey];
      if (typeof rel !== "string" || !Object.hasOwn(this.files, rel)) {
        throw new BundleError(`${this.root}: feature_spec.json: embed.${relKey} ${JSON.stringify(rel ?? null)} is not a file of the bundle`);
      }
      if (this.files[rel].sha256 !== spec[shaKey]) throw new BundleError(`${this.root}: ${rel}: sha256 differs from feature_spec.json embed.${shaKey}`);
      out[relKey] = relKey === "table" ? this.bytes(rel) : this.text(rel);
    }
    return out;
  }

  policy() {
    return this.json("policy.json");
  }
}

/**
 * The bundle folder `dir`, verified: every file the manifest lists exists with its size and sha256, and
 * nothing else is there; else a BundleError naming the file and why (missing / tampered / unexpected).
 * With a key (default: BEAST_BUNDLE_KEY) the bundle must carry that key's signature of its manifest.
 */
export function loadBundle(dir, key = bundleKey()) {
  const root = resolveRoot(String(dir)); // a symlinked folder resolved once
  const { manifest, raw } = loadManifest(root);
  checkListing(root, manifest);
  if (key !== null) checkSignature(root, raw, key);
  const files = manifest.files;
  const data = new Map();
  for (const rel of Object.keys(files).sort()) {
    const entry = files[rel];
    if (safeRelpath(rel) !== rel || rel === MANIFEST) {
      throw new BundleError(`${root}: ${JSON.stringify(rel)}: bad path in ${MANIFEST} (absolute, '..', not normalised or the manifest itself)`);
    }
    if (!isObject(entry) || typeof entry.sha256 !== "string" || !SHA256.test(entry.sha256) || !Number.isInteger(entry.bytes)) {
      throw new BundleError(`${root}: ${rel}: manifest entry needs sha256 (64 hex) and bytes (int), got ${JSON.stringify(entry)}`);
    }
    const path = join(root, ...rel.split("/"));
    let st;
    try {
      st = lstatSync(path);
    } catch {
      throw new BundleError(`${root}: ${rel}: missing`);
    }
    if (!st.isFile()) throw new BundleError(`${root}: ${rel}: not a regular file (symlink or folder)`);
    if (st.size !== entry.bytes) throw new BundleError(`${root}: ${rel}: tampered: size mismatch (${st.size} bytes, manifest says ${entry.bytes})`);
    const bytes = readFileSync(path);
    if (bytes.length !== entry.bytes) throw new BundleError(`${root}: ${rel}: tampered: size mismatch (${bytes.length} bytes, manifest says ${entry.bytes})`);
    if (createHash("sha256").update(bytes).digest("hex") !== entry.sha256) throw new BundleError(`${root}: ${rel}: tampered: sha256 mismatch`);
    data.set(rel, bytes);
  }
  const present = [];
  walk(root, root, "", present);
  for (const rel of present) {
    if (rel === SIGNATURE && !lstatSync(join(root, rel)).isFile()) throw new BundleError(`${root}: ${SIGNATURE}: not a regular file (symlink)`);
    if (rel !== MANIFEST && rel !== SIGNATURE && !Object.hasOwn(files, rel)) throw new BundleError(`${root}: ${rel}: unexpected file (not listed in ${MANIFEST})`);
  }
  return new Bundle(root, manifest, data);
}
