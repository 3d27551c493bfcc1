// Beast router in JavaScript (Node >= 20, no dependencies): loads a verified export bundle and picks a
// model per request, reproducing serving/router.py (features, predictions, policies, circuit breaker).
//
//   import { Router } from "./beast-router.mjs";
//   const router = Router.load("bundle");
//   router.route({ prompt: "Write a haiku", task: "koala", timestamp: "2025-01-01T10:00:00Z" });

import { performance } from "node:perf_hooks";

import { Bundle, BundleError, loadBundle, orderedKeys } from "./bundle.mjs";
import { CHARS_CAP, CHARS_PER_TOKEN, EmbedSpec, EmbedSpecError, PROMPT_FEATURES, TextSpec, checkEmbedSpec, codePoints, promptVector, promptWindow, readEmbedTable } from "./features.mjs";
import { LlamaTokenizer, TokenizerError } from "./tokenizer.mjs";
import { TreeModel } from "./trees.mjs";

export { Bundle, BundleError, loadBundle } from "./bundle.mjs";
export { PATTERNS, PROMPT_FEATURES, promptVector, TextSpec, textKeys, murmur3, EmbedSpec, EmbedSpecError } from "./features.mjs";
export { LlamaTokenizer, TokenizerError } from "./tokenizer.mjs";
export { TreeModel, TreeModelError } from "./trees.mjs";

const CHARS = PROMPT_FEATURES.indexOf("chars"); // the prompt vector slot holding min(code points, CHARS_CAP)

/** The prompt's code points for the input-token estimate (0 without a prompt): the `chars` feature when under its
 * cap, else counted (O(prompt) for two-byte text: a client that sends input_tokens never pays it). */
function promptChars(text, prompt) {
  if (text === null || text === undefined) return 0;
  return prompt[CHARS] < CHARS_CAP ? prompt[CHARS] : codePoints(text);
}

export const MODEL_FEATURES = ["model_code", "price_in", "price_out", "params_b", "size_class", "open_weights"];
/** serving/router.py MAX_INPUT_TOKENS: a larger input_tokens is refused, a larger prompt estimate counted as this. */
export const MAX_INPUT_TOKENS = 2_000_000;

// ------------------------------------------------------------------------------------------ request

/** A request field that is not what the router accepts; the message starts with the field name. */
export class RequestError extends Error {
  constructor(message) {
    super(message);
    this.name = "RequestError";
  }
}

const DAYS = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
const leap = (y) => (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
// RFC 3339 date-time (T, t or space; 1-9 fraction digits; Z, z or +-HH:MM; no offset = UTC), exactly the
// shape serving/router.py parse_timestamp accepts.
const TIMESTAMP = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))?$/;

const pyRepr = (v) => (typeof v === "string" ? `'${v}'` : JSON.stringify(v));

/**
 * UTC hour of an RFC 3339 timestamp; RequestError("timestamp: ...") if it is not one or is out of range.
 * Only the hour is a feature, and it depends on nothing but the time of day and the offset.
 */
export function utcHour(text) {
  const bad = () => new RequestError(`timestamp: not a valid UTC time: ${pyRepr(text)}`);
  const m = TIMESTAMP.exec(text);
  if (!m) throw new RequestError(`timestamp: expected RFC 3339 text such as 2025-01-01T12:00:00Z, got ${pyRepr(text)}`);
  const [y, mo, d, h = 0, mi = 0, s = 0] = [m[1], m[2], m[3], m[4], m[5], m[6]].map((v) => (v === undefined ? undefined : Number(v)));
  if (y < 1) throw bad();
  if (mo < 1 || mo > 12) throw bad();
  if (d < 1 || d > (mo === 2 && leap(y) ? 29 : DAYS[mo - 1])) throw bad();
  if (h > 23 || mi > 59 || s > 59) throw bad();
  let offset = 0; // minutes east of UTC
  if (m[9] !== undefined) {
    const oh = Number(m[10]), om = Number(m[11]);
    if (oh > 23 || om > 59) throw bad();
    offset = (m[9] === "-" ? -1 : 1) * (oh * 60 + om);
  }
  let minutes = h * 60 + mi - offset;
  let days = 0;
  if (minutes < 0) days = -1;
  else if (minutes >= 1440) days = 1;
  // the instant in UTC must still be a representable date (years 1..9999), as in Python's datetime
  if ((days < 0 && y === 1 && mo === 1 && d === 1) || (days > 0 && y === 9999 && mo === 12 && d === 31)) throw bad();
  minutes = ((minutes % 1440) + 1440) % 1440;
  return Math.floor(minutes / 60);
}

/** A routing request (serving/router.py RouteRequest): prompt, input_tokens, task, UTC hour of timestamp. */
export class RouteRequest {
  constructor({ prompt = null, inputTokens = null, task = null, hour = null } = {}) {
    this.prompt = prompt;
    this.inputTokens = inputTokens; // null: the prompt's estimate, ceil(chars / 4)
    this.task = task;
    this.hour = hour; // null: the current UTC hour
    Object.freeze(this);
  }

  /** A request from parsed JSON; a wrong field throws RequestError naming it (prompt text is only ever data). */
  static fromDict(d) {
    if (d === null || typeof d !== "object" || Array.isArray(d)) throw new RequestError("request: expected a JSON object");
    for (const key of ["prompt", "task"]) {
      const v = d[key];
      if (v !== null && v !== undefined && typeof v !== "string") throw new RequestError(`${key}: expected text or null, got ${Array.isArray(v) ? "list" : typeof v}`);
    }
    const tokens = d.input_tokens ?? null;
    if (tokens !== null && (typeof tokens !== "number" || !Number.isInteger(tokens) || tokens < 0 || tokens > MAX_INPUT_TOKENS)) {
      throw new RequestError(`input_tokens: expected an integer in 0..${MAX_INPUT_TOKENS} (the largest context a candidate takes), got ${pyRepr(tokens)}`);
    }
    const ts = d.timestamp;
    let hour = null;
    if (ts !== null && ts !== undefined) {
      // like Python: an absent or null timestamp means "now"; anything else must be RFC 3339 text
      if (typeof ts !== "string") throw new RequestError(`timestamp: expected RFC 3339 text such as 2025-01-01T12:00:00Z, got ${pyRepr(ts)}`);
      hour = utcHour(ts);
    }
    return new RouteRequest({ prompt: d.prompt ?? null, inputTokens: tokens, task: d.task ?? null, hour });
  }
}

const asRequest = (r) => (r instanceof RouteRequest ? r : RouteRequest.fromDict(r));

// ------------------------------------------------------------------------------------------ numbers

const isNaNNum = (x) => x !== x;

/** serving/router.py _best: index of the highest finite score (NaN = no prediction, -inf = unavailable), or null. */
export function bestFinite(a) {
  let best = null;
  for (let i = 0; i < a.length; i++) if (Number.isFinite(a[i]) && (best === null || a[i] > a[best])) best = i;
  return best;
}

/** serving/router.py _cheapest: the cheapest model (unavailable ones cost +inf; NaN never wins). */
export function cheapest(cost) {
  let best = 0;
  const v = (x) => (isNaNNum(x) ? Infinity : x);
  for (let i = 1; i < cost.length; i++) if (v(cost[i]) < v(cost[best])) best = i;
  return best;
}

/** numpy argmin: the first NaN if there is one, else the first minimum. */
function argmin(a) {
  let best = 0;
  for (let i = 0; i < a.length; i++) {
    if (isNaNNum(a[i])) return i;
    if (a[i] < a[best]) best = i;
  }
  return best;
}

/** Python format(x, ".{p}g"). */
export function formatG(x, p = 6) {
  if (isNaNNum(x)) return "nan";
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  if (x === 0) return Object.is(x, -0) ? "-0" : "0";
  const strip = (s) => (s.includes(".") ? s.replace(/0+$/, "").replace(/\.$/, "") : s);
  const [mant, e] = x.toExponential(Math.max(p, 1) - 1).split("e");
  const exp = Number(e);
  if (exp < -4 || exp >= Math.max(p, 1)) return `${strip(mant)}e${exp < 0 ? "-" : "+"}${String(Math.abs(exp)).padStart(2, "0")}`;
  return strip(x.toFixed(Math.max(p, 1) - 1 - exp));
}

/** Python format(x, ".{d}f"). */
export function formatF(x, d = 3) {
  if (isNaNNum(x)) return "nan";
  if (!Number.isFinite(x)) return x > 0 ? "inf" : "-inf";
  return x.toFixed(d);
}

function pyFloat(v, what) {
  if (typeof v === "number") return v;
  if (typeof v === "boolean") return v ? 1.0 : 0.0;
  if (typeof v === "string" && v.trim() !== "" && !Number.isNaN(Number(v.trim()))) return Number(v.trim());
  throw new BundleError(`${what}: expected a number, got ${JSON.stringify(v)}`);
}

// ------------------------------------------------------------------------------------------ policies

export const DecisionCode = Object.freeze({ OK: "ok", BELOW_TARGET: "below_target", FALLBACK: "fallback" });

/** Chooses one candidate from predicted quality and cost (arrays aligned with `models`). */
export class Policy {
  static params = {}; // argument name -> default (undefined: required)

  constructor(name, args = {}) {
    const cls = this.constructor;
    for (const key of Object.keys(args)) {
      if (!Object.hasOwn(cls.params, key)) throw new BundleError(`policy ${name}: unknown argument '${key}'; it takes ${Object.keys(cls.params).join(", ")}`);
    }
    this.args = {};
    for (const [key, fallback] of Object.entries(cls.params)) {
      const v = Object.hasOwn(args, key) ? args[key] : fallback;
      if (v === undefined) throw new BundleError(`policy ${name}: missing argument '${key}'`);
      this.args[key] = Object.hasOwn(args, key) ? ARG_RULES[name][key].check(`policy ${name}: args: ${key}`, v) : v;
    }
    this.name = name;
  }

  /** [index, reason, code] */
  choose(_models, _quality, _cost) {
    throw new Error("not implemented");
  }

  /** Told the predicted cost of every decision made; stateless policies ignore it. */
  record(_usd, _now) {}
}

/** The cheapest model whose predicted quality reaches `target_quality`. */
export class Threshold extends Policy {
  static params = { target_quality: 0.5 };

  constructor(args) {
    super("threshold", args);
    this.target = this.args.target_quality;
  }

  choose(models, quality, cost) {
    const ok = [];
    for (let i = 0; i < quality.length; i++) if (quality[i] >= this.target) ok.push(i);
    if (ok.length === 0) {
      const best = bestFinite(quality);
      if (best === null) return [cheapest(cost), "no model has a quality prediction; cheapest available", DecisionCode.BELOW_TARGET];
      return [best, `no model predicted >= ${formatG(this.target)}; best predicted quality ${formatF(quality[best], 3)}`, DecisionCode.BELOW_TARGET];
    }
    const best = ok[argmin(ok.map((i) => cost[i]))];
    return [best, `cheapest of ${ok.length} models predicted >= ${formatG(this.target)}`, DecisionCode.OK];
  }
}

/** Maximise predicted quality - lam x predicted cost (USD per 1,000 requests). */
export class Tradeoff extends Policy {
  static params = { lam: 0.1 };

  constructor(args, name = "tradeoff") {
    super(name, args);
    this.lam = this.args.lam;
  }

  static score(quality, cost, lam) {
    const score = new Float64Array(quality.length);
    for (let i = 0; i < quality.length; i++) score[i] = quality[i] - lam * cost[i] * 1000; // (lam * cost) * 1000, as numpy
    return score;
  }

  choose(models, quality, cost) {
    const score = Tradeoff.score(quality, cost, this.lam);
    const best = bestFinite(score);
    if (best === null) return [cheapest(cost), "no model has a quality prediction; cheapest available", DecisionCode.BELOW_TARGET];
    return [best, `max quality - ${formatG(this.lam)} x USD/1k requests = ${formatF(score[best], 3)}`, DecisionCode.OK];
  }
}

/**
 * Tradeoff whose lam adapts so that spend tracks `usd_per_hour`: after each decision the spend rate over the
 * last `window_s` seconds is compared with the budget and lam is multiplied by exp(gain x (rate / budget - 1)),
 * within [min_lam, max_lam].
 */
export class Budget extends Policy {
  static params = { usd_per_hour: null, lam: 0.1, gain: 0.05, window_s: 300.0, min_lam: 1e-4, max_lam: 1e4, state_file: null, refresh_s: 5.0 };

  constructor(args) {
    if (args?.state_file !== undefined && args?.state_file !== null) {
      throw new BundleError("budget policy: state_file (a remaining-budget file, serving/budget.py) is not supported by the JavaScript router; give usd_per_hour");
    }
    const { state_file: _s, ...rest } = args ?? {};
    super("budget", rest);
    const a = this.args;
    if (a.usd_per_hour === null) throw new BundleError("budget policy: give exactly one of usd_per_hour and state_file, got null and null");
    if (!(a.usd_per_hour > 0)) throw new BundleError(`budget policy: usd_per_hour must be > 0, got ${a.usd_per_hour}`);
    this.budget = a.usd_per_hour;
    this.lam = a.lam;
    this.gain = a.gain;
    this.window = a.window_s;
    this.bounds = [a.min_lam, a.max_lam];
    this._spend = []; // [time, usd] of recent decisions, oldest first
    this._head = 0; // index of the oldest one still in the window
    this._sum = 0.0; // running sum of their usd (added on arrival, subtracted on leaving, as the Python one)
  }

  choose(models, quality, cost) {
    let best = bestFinite(Tradeoff.score(quality, cost, this.lam));
    let code = DecisionCode.OK;
    if (best === null) [best, code] = [cheapest(cost), DecisionCode.BELOW_TARGET];
    return [best, `max quality - lam x USD/1k requests at lam ${formatG(this.lam, 4)} (budget $${formatG(this.budget, 4)}/h)`, code];
  }

  record(usd, now) {
    usd = Number.isFinite(usd) && usd > 0 ? usd : 0.0; // as the Python one: a bad cost must not poison the pace
    this._spend.push([now, usd]);
    this._sum += usd;
    while (this._head < this._spend.length && this._spend[this._head][0] < now - this.window) this._sum -= this._spend[this._head++][1];
    if (this._head > 1024 && this._head * 2 > this._spend.length) {
      this._spend = this._spend.slice(this._head);
      this._head = 0;
    }
    const span = Math.max(now - this._spend[this._head][0], 1.0);
    const rate = (Math.max(this._sum, 0.0) / span) * 3600;
    const budget = Math.max(this.budget, 1e-12); // an exhausted budget drives lam to max_lam: cheapest models
    const lam = this.lam * Math.exp(Math.min(this.gain * (rate / budget - 1), 50.0));
    this.lam = Math.min(Math.max(lam, this.bounds[0]), this.bounds[1]); // np.clip (NaN stays NaN)
  }
}

export const POLICIES = { threshold: Threshold, tradeoff: Tradeoff, budget: Budget };

// ------------------------------------------------------------------------------------------ policy config checks

/** JSON type name of a parsed value (as serving/router.py `_json_kind`). */
function jsonKind(v) {
  if (v === null || v === undefined) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v; // object, string, number, boolean
}

const short = (v) => {
  const text = JSON.stringify(v) ?? String(v);
  return text.length <= 60 ? text : `${text.slice(0, 57)}...`;
};

/** What one policy / breaker setting accepts (serving/router.py ArgRule: the same rules, the same refusals). */
class ArgRule {
  constructor({ ge = null, gt = null, le = null, integer = false, text = false, nullable = false } = {}) {
    Object.assign(this, { ge, gt, le, integer, text, nullable });
  }

  check(where, value) {
    if (value === null) {
      if (this.nullable) return null;
      throw new BundleError(`${where} must not be null`);
    }
    if (this.text) {
      if (typeof value !== "string") throw new BundleError(`${where} must be text${this.nullable ? " or null" : ""}, got ${jsonKind(value)}`);
      return value;
    }
    if (typeof value !== "number") throw new BundleError(`${where} must be a finite number, got ${jsonKind(value)} ${short(value)}`);
    if (!Number.isFinite(value)) throw new BundleError(`${where} must be a finite number, got ${value}`);
    if (this.integer && !Number.isInteger(value)) throw new BundleError(`${where} must be an integer, got ${short(value)}`);
    if (this.ge !== null && value < this.ge) throw new BundleError(`${where} must be >= ${formatG(this.ge)}, got ${short(value)}`);
    if (this.gt !== null && value <= this.gt) throw new BundleError(`${where} must be > ${formatG(this.gt)}, got ${short(value)}`);
    if (this.le !== null && value > this.le) throw new BundleError(`${where} must be <= ${formatG(this.le)}, got ${short(value)}`);
    return value;
  }
}

/** serving/router.py POLICY_ARGS: every setting a policy config may carry, per policy. */
export const ARG_RULES = {
  threshold: { target_quality: new ArgRule({ ge: 0, le: 1 }) },
  tradeoff: { lam: new ArgRule({ ge: 0 }) },
  budget: {
    usd_per_hour: new ArgRule({ gt: 0, nullable: true }),
    lam: new ArgRule({ ge: 0 }),
    gain: new ArgRule({ ge: 0 }),
    window_s: new ArgRule({ gt: 0 }),
    min_lam: new ArgRule({ gt: 0 }),
    max_lam: new ArgRule({ gt: 0 }),
    state_file: new ArgRule({ text: true, nullable: true }),
    refresh_s: new ArgRule({ ge: 0 }),
  },
};

/** serving/router.py BREAKER_ARGS. */
export const BREAKER_RULES = {
  window: new ArgRule({ ge: 1, integer: true }),
  min_requests: new ArgRule({ ge: 1, integer: true }),
  max_error_rate: new ArgRule({ gt: 0, le: 1 }),
  cooldown_s: new ArgRule({ ge: 0 }),
};

function checkSettings(where, given, rules) {
  if (given === null || given === undefined) return {};
  if (typeof given !== "object" || Array.isArray(given)) throw new BundleError(`${where} must be an object, got ${jsonKind(given)}`);
  const out = {};
  for (const [key, value] of Object.entries(given)) {
    if (!Object.hasOwn(rules, key)) throw new BundleError(`${where}: unknown argument '${key}'; it takes ${Object.keys(rules).join(", ")}`);
    out[key] = rules[key].check(`${where}: ${key}`, value);
  }
  return out;
}

/**
 * { name, args, fallbackOrder, breaker } of a policy config (policy.json), checked against the registry and each
 * policy's arguments as serving/router.py `check_policy_config` does: both routers accept and refuse the same
 * configs (tests/serving/policy_configs.json). Anything else is one BundleError line.
 */
export function checkPolicyConfig(config) {
  if (config === null || typeof config !== "object" || Array.isArray(config)) {
    throw new BundleError(`policy: expected an object {"name": ..., "args": {...}}, got ${jsonKind(config)}`);
  }
  const name = config.name;
  if (typeof name !== "string" || !Object.hasOwn(POLICIES, name)) {
    throw new BundleError(`policy ${typeof name === "string" ? `'${name}'` : jsonKind(name)} is not one of ${Object.keys(POLICIES).join(", ")}`);
  }
  const args = checkSettings(`policy ${name}: args`, config.args, ARG_RULES[name]);
  if (name === "budget") {
    const lo = args.min_lam ?? 1e-4;
    const hi = args.max_lam ?? 1e4;
    if (lo > hi) throw new BundleError(`policy budget: args: min_lam ${formatG(lo)} is above max_lam ${formatG(hi)}`);
    const usd = args.usd_per_hour ?? null;
    const file = args.state_file ?? null;
    if ((usd === null) === (file === null)) throw new BundleError(`budget policy: give exactly one of usd_per_hour and state_file, got ${usd === null ? "None" : formatG(usd)} and ${file === null ? "None" : pyRepr(file)}`);
  }
  const order = config.fallback_order ?? [];
  if (!Array.isArray(order) || !order.every((m) => typeof m === "string")) {
    throw new BundleError(`policy: fallback_order must be a list of model names, got ${jsonKind(order)}`);
  }
  const breaker = checkSettings("breaker", config.breaker, BREAKER_RULES);
  return { name, args, fallbackOrder: order, breaker };
}

export function makePolicy(config) {
  const { name, args } = checkPolicyConfig(config);
  return new POLICIES[name](args);
}

// ------------------------------------------------------------------------------------------ circuit breaker

/**
 * Per model: open after `max_error_rate` of the last `window` outcomes failed (with at least `min_requests`
 * seen); while open the model is skipped; after `cooldown_s` one trial request is let through (half-open) and
 * its outcome closes or re-opens the breaker.
 */
export class CircuitBreaker {
  static params = { window: 20, min_requests: 5, max_error_rate: 0.5, cooldown_s: 30.0 };

  constructor(config = {}) {
    for (const key of Object.keys(config)) {
      if (!Object.hasOwn(CircuitBreaker.params, key)) throw new BundleError(`breaker: unknown setting '${key}'; it takes ${Object.keys(CircuitBreaker.params).join(", ")}`);
    }
    const c = { ...CircuitBreaker.params, ...config };
    if (!Number.isInteger(c.window) || !Number.isInteger(c.min_requests)) throw new BundleError("breaker: window and min_requests must be integers");
    this.window = c.window;
    this.minRequests = c.min_requests;
    this.maxErrorRate = pyFloat(c.max_error_rate, "breaker: max_error_rate");
    this.cooldown = pyFloat(c.cooldown_s, "breaker: cooldown_s");
    if (!(this.window >= 1 && this.minRequests >= 1 && this.maxErrorRate > 0 && this.maxErrorRate <= 1 && this.cooldown >= 0)) {
      throw new BundleError("breaker: need window >= 1, min_requests >= 1, 0 < max_error_rate <= 1, cooldown_s >= 0");
    }
    this._outcomes = new Map();
    this._openedAt = new Map();
  }

  observe(model, ok, now) {
    let outcomes = this._outcomes.get(model);
    if (outcomes === undefined) this._outcomes.set(model, (outcomes = []));
    outcomes.push(Boolean(ok));
    // Python `del outcomes[:-window]`
    const stop = -this.window < 0 ? Math.max(outcomes.length - this.window, 0) : Math.min(-this.window, outcomes.length);
    outcomes.splice(0, stop);
    if (this._openedAt.has(model)) {
      // the half-open trial decides
      if (ok) {
        this._openedAt.delete(model);
        outcomes.splice(0, outcomes.length, true);
      } else {
        this._openedAt.set(model, now);
      }
      return;
    }
    const errors = outcomes.filter((o) => !o).length;
    if (outcomes.length >= this.minRequests && errors / outcomes.length >= this.maxErrorRate) this._openedAt.set(model, now);
  }

  available(model, now) {
    const opened = this._openedAt.get(model);
    return opened === undefined || now - opened >= this.cooldown;
  }
}

// ------------------------------------------------------------------------------------------ router

const monotonic = () => performance.now() / 1000;

function fail(bundle, what) {
  return new BundleError(`${bundle.root}: ${what}`);
}

/**
 * The embedding family from the bundle's own files (tokenizer + projected table), null without one; a bad
 * spec, table or tokenizer is a BundleError naming the file.
 */
function loadEmbed(bundle) {
  const files = bundle.embedFiles();
  if (files === null) return null;
  const raw = bundle.featureSpec().embed;
  const step = (where, make) => {
    try {
      return make();
    } catch (exc) {
      if (exc instanceof EmbedSpecError || exc instanceof TokenizerError || exc instanceof SyntaxError) throw fail(bundle, `${where}: ${exc.message}`);
      throw exc;
    }
  };
  const { vocabSize, k } = step("feature_spec.json", () => checkEmbedSpec(raw));
  const table = step(raw.table, () => readEmbedTable(files.table, vocabSize, k));
  const tokenizer = step(raw.tokenizer, () => LlamaTokenizer.fromJSON(files.tokenizer));
  return step("feature_spec.json", () => new EmbedSpec(raw, tokenizer, table));
}

function compile(bundle, predictor, key, names) {
  const model = new TreeModel(bundle.modelJson(predictor, key), `${bundle.predictor(predictor).files[key].json}`);
  if (model.nFeatures !== names.length) throw fail(bundle, `${predictor} booster '${key}' has ${model.nFeatures} features, ${predictor}.json lists ${names.length}`);
  if (model.featureNames && model.featureNames.join("\u0000") !== names.join("\u0000")) {
    throw fail(bundle, `${predictor} booster '${key}' feature names differ from ${predictor}.json feature_names`);
  }
  return model;
}

/** Per request: features for every candidate, predicted quality and cost, then the policy's choice. */
export class Router {
  constructor(bundle) {
    if (!(bundle instanceof Bundle)) throw new TypeError("Router needs a verified Bundle (loadBundle(dir))");
    this.bundle = bundle;
    this.models = bundle.candidates;
    const prices = bundle.manifest.candidates;
    this.priceIn = Float64Array.from(this.models, (m) => pyFloat(prices[m]?.input, `candidates.${m}.input`));
    this.priceOut = Float64Array.from(this.models, (m) => pyFloat(prices[m]?.output, `candidates.${m}.output`));
    const config = bundle.policy(); // unreadable: a BundleError naming the bundle and policy.json already
    let checked;
    try {
      checked = checkPolicyConfig(config);
    } catch (exc) {
      if (exc instanceof BundleError) throw fail(bundle, `policy.json: ${exc.message}`);
      throw exc;
    }
    this.policy = new POLICIES[checked.name](checked.args);
    this.fallback = checked.fallbackOrder.filter((m) => this.models.includes(m));
    this.breaker = new CircuitBreaker(checked.breaker);
    const spec = bundle.featureSpec();
    this.text = spec.text ? new TextSpec(spec.text) : null;
    this.embed = loadEmbed(bundle);

    const quality = bundle.side("quality");
    this.heads = quality.heads;
    this.qNames = [...quality.feature_names];
    const keys = bundle.predictor("quality").keys;
    this.qModels = new Map(keys.map((k) => [k, compile(bundle, "quality", k, this.qNames)]));
    if (this.heads === "shared" && !this.qModels.has("shared")) throw fail(bundle, "quality heads 'shared' but no booster 'shared'");
    this.qPlan = this._plan(this.qNames, false);
    this.qModelRows = this._modelRows(spec.models);

    const cost = bundle.side("cost");
    this.cNames = [...cost.feature_names];
    const cats = cost.categories ?? {};
    this.cModelCodes = Float64Array.from(this.models, (m) => {
      const i = (cats.model ?? []).indexOf(m);
      return i >= 0 ? i : NaN;
    });
    this.cTasks = cats.task ?? [];
    this.cPlan = this._plan(this.cNames, true);
    this.cP50 = compile(bundle, "cost", "p50", this.cNames);
    // every candidate's cost trees pruned on its own model code: one walk of the distinct trees per request
    const codeColumns = [...this.cPlan.kinds.keys()].filter((c) => this.cPlan.kinds[c] === 5);
    this.cHeads = this.cP50.pruned(this.models.map((_, i) => new Map(codeColumns.map((c) => [c, this.cModelCodes[i]]))));
    this._cRaw = new Float64Array(this.models.length);
    this._qRow = new Float64Array(this.qNames.length);
    this._cRow = new Float64Array(this.cNames.length);
  }

  /** Verify the bundle folder and build the router; a tampered bundle is refused (BundleError). */
  static load(dir) {
    return new Router(loadBundle(dir));
  }

  // Column plan, as serving/router.py FeatureLayout: candidate columns first (quality: the model features;
  // cost: "model"), then the request vector's slots (log_input_tokens, task, hour, prompt features -- named
  // "prompt_<f>" for cost -- then, quality only, text_<i> and emb_<i>), anything else NaN. Kinds: 0 NaN,
  // 1 log_input_tokens, 2 prompt feature, 3 text, 4 model feature (per candidate), 5 cost model code (per
  // candidate), 6 task code, 7 hour, 8 embedding.
  _plan(names, isCost) {
    const k = this.text ? this.text.k : 0;
    const kEmb = this.embed ? this.embed.k : 0;
    const slot = (name) => {
      if (name === "log_input_tokens") return [1, 0];
      if (name === "task") return [6, 0];
      if (name === "hour") return [7, 0];
      const f = isCost ? (name.startsWith("prompt_") ? name.slice(7) : null) : name;
      const j = f === null ? -1 : PROMPT_FEATURES.indexOf(f);
      if (j >= 0) return [2, j];
      const t = isCost ? null : /^text_(0|[1-9][0-9]*)$/.exec(name);
      if (t && Number(t[1]) < k) return [3, Number(t[1])];
      const e = isCost ? null : /^emb_(0|[1-9][0-9]*)$/.exec(name);
      if (e && Number(e[1]) < kEmb) return [8, Number(e[1])];
      return [0, 0]; // not a request value (e.g. cached_share): missing
    };
    const plan = names.map((name) => {
      if (isCost && name === "model") return [5, 0];
      const mf = isCost ? -1 : MODEL_FEATURES.indexOf(name);
      return mf >= 0 ? [4, mf] : slot(name);
    });
    return { kinds: Uint8Array.from(plan, (p) => p[0]), index: Int32Array.from(plan, (p) => p[1]) };
  }

  _modelRows(modelsSpec) {
    const categories = [...(modelsSpec?.categories ?? [])];
    const attrs = modelsSpec?.attributes ?? {};
    return this.models.map((m) => {
      const a = Object.hasOwn(attrs, m) ? attrs[m] : {};
      const code = categories.indexOf(m);
      return Float64Array.from([code >= 0 ? code : NaN, ...MODEL_FEATURES.slice(1).map((k) => (a[k] === null || a[k] === undefined ? NaN : pyFloat(a[k], `feature_spec models.attributes.${m}.${k}`)))]);
    });
  }

  /** What every candidate shares: input tokens, prompt features, text and embedding features (each null
   * without its family in the bundle). */
  requestFeatures(request) {
    const req = asRequest(request);
    const prompt = promptVector(req.prompt);
    const tokens = Math.min(req.inputTokens ?? Math.ceil(promptChars(req.prompt, prompt) / CHARS_PER_TOKEN), MAX_INPUT_TOKENS); // bounded cost
    const win = req.prompt === null || req.prompt === undefined ? req.prompt : promptWindow(req.prompt);
    const text = this.text ? this.text.vector(win) : null;
    const embed = this.embed ? this.embed.vector(win) : null;
    return { inputTokens: tokens, prompt, text, embed };
  }

  _fill(row, plan, i, shared) {
    const { kinds, index } = plan;
    for (let c = 0; c < kinds.length; c++) {
      const j = index[c];
      switch (kinds[c]) {
        case 1: row[c] = shared.logTokens; break;
        case 2: row[c] = shared.prompt[j]; break;
        case 3: row[c] = shared.text[j]; break;
        case 4: row[c] = this.qModelRows[i][j]; break;
        case 5: row[c] = this.cModelCodes[i]; break;
        case 6: row[c] = shared.task; break;
        case 7: row[c] = shared.hour; break;
        case 8: row[c] = shared.embed[j]; break;
        default: row[c] = NaN;
      }
    }
    return row;
  }

  /** { quality, costUsd } per candidate (Float64Arrays aligned with `models`). */
  predict(request) {
    const req = asRequest(request);
    const { inputTokens, prompt, text, embed } = this.requestFeatures(req);
    const taskIndex = req.task === null ? -1 : this.cTasks.indexOf(req.task);
    const shared = {
      logTokens: Math.log1p(inputTokens),
      prompt,
      text,
      embed,
      task: taskIndex >= 0 ? taskIndex : NaN,
      hour: req.hour ?? new Date().getUTCHours(),
    };
    const n = this.models.length;
    const quality = new Float64Array(n);
    const costUsd = new Float64Array(n);
    const sharedModel = this.heads === "shared" ? this.qModels.get("shared") : null;
    const { cP50 } = this;
    const raw = this.cHeads.raw(this._fill(this._cRow, this.cPlan, 0, shared), this._cRaw); // any candidate's row
    for (let i = 0; i < n; i++) {
      const model = sharedModel ?? this.qModels.get(this.models[i]);
      quality[i] = model ? model.predict(this._fill(this._qRow, this.qPlan, i, shared)) : NaN;
      const out = Math.max(Math.expm1(cP50.transform(raw[i], cP50.transformArgs)), 0); // NaN stays NaN
      costUsd[i] = (inputTokens * this.priceIn[i] + out * this.priceOut[i]) / 1e6;
    }
    return { quality, costUsd };
  }

  /** Report a served request's outcome; feeds the circuit breaker (`now` in seconds, monotonic). */
  observe(model, ok, now = monotonic()) {
    this.breaker.observe(model, ok, now);
  }

  /**
   * The policy's choice among models whose breaker is closed; if none is, the first available model of the
   * fallback order. Skipped models are named in `reason`.
   */
  route(request, now = monotonic()) {
    const req = asRequest(request);
    const { quality, costUsd } = this.predict(req);
    const n = this.models.length;
    const up = this.models.map((m) => this.breaker.available(m, now));
    const skipped = this.models.filter((_, i) => !up[i]);
    const note = skipped.length ? `; skipped (circuit open): ${skipped.join(", ")}` : "";
    const decision = (i, reason, code) => ({
      model: this.models[i],
      predictedQuality: quality[i],
      predictedCostUsd: costUsd[i],
      policy: this.policy.name,
      reason,
      code,
    });
    if (up.some(Boolean)) {
      const q = new Float64Array(n), c = new Float64Array(n);
      for (let i = 0; i < n; i++) {
        q[i] = up[i] ? quality[i] : -Infinity;
        c[i] = up[i] ? costUsd[i] : Infinity;
      }
      const [i, reason, code] = this.policy.choose(this.models, q, c);
      this.policy.record(costUsd[i], now);
      return decision(i, reason + note, code);
    }
    const available = this.fallback.filter((m) => this.breaker.available(m, now));
    const order = available.length ? available : this.fallback.length ? this.fallback : this.models;
    return decision(this.models.indexOf(order[0]), `every breaker open: fallback order${note}`, DecisionCode.FALLBACK);
  }
}

export { orderedKeys };
