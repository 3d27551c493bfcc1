// LightGBM JSON dump (`Booster.dump_model()`) -> flat typed arrays, evaluated one row at a time.
//
// Same semantics as serving/trees.py (and LightGBM's Tree::GetLeaf / GBDT::PredictRaw):
// - a value with |x| <= kZeroThreshold (1e-35f) is evaluated as exactly 0 (the C API drops it from a dense row);
// - numerical node `x <= threshold` goes left; missing_type None: NaN -> 0; Zero: NaN -> 0, then 0 takes
//   default_left; NaN: NaN takes default_left;
// - thresholds the dump clamped to +-1e300 (Common::AvoidInf) are +-Infinity again;
// - categorical node ('==', threshold "1||3||7"): NaN goes right; category = trunc(x) (C++ static_cast<int>,
//   so -0.5 is 0); a negative category, one >= 2^31 or one outside the set goes right; in the set goes left;
// - raw score = leaf values summed in the dump's tree order, starting at 0; then the objective's transform.

export class TreeModelError extends Error {
  constructor(message) {
    super(message);
    this.name = "TreeModelError";
  }
}

export const K_ZERO_THRESHOLD = Math.fround(1e-35); // LightGBM kZeroThreshold, a float literal
const AVOID_INF = 1e300;
const MAX_CAT = 2 ** 31;
const MAX_CAT_BITS = 2 ** 24; // a larger category in a split would need a huge bitset; refused at load

// Node kinds: how a node treats missing values (numerical) or that it is categorical.
const PLAIN = 0, ZERO_LEFT = 1, ZERO_RIGHT = 2, NAN_LEFT = 3, NAN_RIGHT = 4, CATEGORICAL = 5;

const identity = (raw) => raw;
const sigmoid = (raw, args) => 1.0 / (1.0 + Math.exp(-Number(args.sigmoid ?? 1.0) * raw));
const signSquare = (raw) => Math.sign(raw) * raw * raw;

// LightGBM objective name (first token of the dump's "objective") -> its ConvertOutput.
export const OUTPUT_TRANSFORMS = {
  regression: identity,
  regression_l1: identity,
  huber: identity,
  fair: identity,
  quantile: identity,
  mape: identity,
  binary: sigmoid,
  cross_entropy: sigmoid,
  poisson: Math.exp,
  gamma: Math.exp,
  tweedie: Math.exp,
};
const SQRT_FAMILY = new Set(["regression", "regression_l1", "huber", "fair", "quantile", "mape"]);

function outputTransform(objective) {
  const tokens = String(objective ?? "").split(/\s+/).filter(Boolean);
  const name = tokens[0] ?? "";
  if (!Object.hasOwn(OUTPUT_TRANSFORMS, name)) {
    throw new TreeModelError(`objective ${JSON.stringify(objective)}: unsupported; supported: ${Object.keys(OUTPUT_TRANSFORMS).join(", ")}`);
  }
  const args = {};
  for (const t of tokens.slice(1)) {
    const at = t.indexOf(":");
    if (at >= 0) args[t.slice(0, at)] = t.slice(at + 1);
  }
  if (tokens.slice(1).includes("sqrt")) {
    if (!SQRT_FAMILY.has(name)) throw new TreeModelError(`objective ${JSON.stringify(objective)}: 'sqrt' is only supported for ${[...SQRT_FAMILY].sort().join(", ")}`);
    return { transform: signSquare, args };
  }
  return { transform: OUTPUT_TRANSFORMS[name], args };
}

function threshold(value, where) {
  const x = Number(value);
  if (typeof value !== "number" && typeof value !== "string") throw new TreeModelError(`${where}: threshold ${JSON.stringify(value)} is not a number`);
  if (Number.isNaN(x)) throw new TreeModelError(`${where}: threshold ${JSON.stringify(value)} is not a number`);
  return Math.abs(x) >= AVOID_INF ? Math.sign(x) * Infinity : x;
}

function numericalKind(spec, where) {
  const missing = String(spec.missing_type ?? "None");
  const left = Boolean(spec.default_left ?? false);
  if (missing === "None") return PLAIN;
  if (missing === "Zero") return left ? ZERO_LEFT : ZERO_RIGHT;
  if (missing === "NaN") return left ? NAN_LEFT : NAN_RIGHT;
  throw new TreeModelError(`${where}: missing_type ${JSON.stringify(missing)}: not 'None', 'Zero' or 'NaN'`);
}

function categories(value, where) {
  const out = [];
  for (const part of String(value).split("||")) {
    if (!part) continue;
    if (!/^\s*[+-]?\d+\s*$/.test(part)) throw new TreeModelError(`${where}: categorical threshold ${JSON.stringify(value)}: ${JSON.stringify(part)} is not an integer`);
    const c = Number(part);
    if (c < 0) continue; // a negative category never reaches the set test
    if (c >= MAX_CAT_BITS) throw new TreeModelError(`${where}: category ${c} >= ${MAX_CAT_BITS}: too large for this evaluator`);
    out.push(c);
  }
  return out;
}

/** A LightGBM ensemble compiled once into flat arrays; `predict(row)` evaluates one row (numbers, NaN = missing). */
export class TreeModel {
  constructor(dump, name = "model") {
    if (dump === null || typeof dump !== "object") throw new TreeModelError(`${name}: not a LightGBM JSON dump`);
    for (const key of ["num_class", "num_tree_per_iteration"]) {
      if (Number(dump[key] ?? 1) !== 1) throw new TreeModelError(`${name}: ${key}=${dump[key]}: only single-output models (1) are supported`);
    }
    if (dump.average_output) throw new TreeModelError(`${name}: average_output=true (random forest): only boosted sums are supported`);
    if (!Number.isInteger(dump.max_feature_idx)) throw new TreeModelError(`${name}: max_feature_idx missing or not an integer`);
    this.name = name;
    this.objective = String(dump.objective ?? "");
    ({ transform: this.transform, args: this.transformArgs } = outputTransform(this.objective));
    this.nFeatures = dump.max_feature_idx + 1;
    this.featureNames = Array.isArray(dump.feature_names) ? dump.feature_names.map(String) : null;
    const treeInfo = dump.tree_info ?? [];
    if (!Array.isArray(treeInfo)) throw new TreeModelError(`${name}: tree_info is not a list`);

    const feat = [], thr = [], kind = [], left = [], right = [], catStart = [], catWords = [];
    const leaves = [], roots = [], bits = [];
    // child / root encoding: >= 0 internal node index, < 0 leaf ~index
    const compile = (spec, t) => {
      const stack = [[spec, null, 0]]; // [spec, parent node, 0 = root / 1 = left / 2 = right]
      let root = 0;
      while (stack.length) {
        const [s, parent, side] = stack.pop();
        if (s === null || typeof s !== "object") throw new TreeModelError(`${name}: tree ${t}: a node is not an object`);
        let ref;
        if ("leaf_value" in s || (!("left_child" in s) && !("split_feature" in s))) {
          if ("leaf_coeff" in s || "leaf_features" in s) throw new TreeModelError(`${name}: tree ${t}: linear-tree leaves are not supported`);
          const v = Number(s.leaf_value ?? 0.0);
          if (Number.isNaN(v)) throw new TreeModelError(`${name}: tree ${t}: leaf_value ${JSON.stringify(s.leaf_value)} is not a number`);
          leaves.push(v);
          ref = ~(leaves.length - 1);
        } else {
          const where = `${name}: tree ${t}`;
          const f = s.split_feature;
          if (!Number.isInteger(f) || f < 0 || f >= this.nFeatures) throw new TreeModelError(`${where}: split_feature ${f} outside 0..${this.nFeatures - 1}`);
          ref = feat.length;
          feat.push(f);
          left.push(0);
          right.push(0);
          const type = s.decision_type ?? "<=";
          if (type === "==") {
            const members = categories(s.threshold, where);
            const words = members.length ? (Math.max(...members) >> 5) + 1 : 0;
            catStart.push(bits.length);
            catWords.push(words);
            for (let w = 0; w < words; w++) bits.push(0);
            for (const c of members) bits[bits.length - words + (c >> 5)] |= 1 << (c & 31);
            kind.push(CATEGORICAL);
            thr.push(0);
          } else if (type === "<=") {
            kind.push(numericalKind(s, where));
            thr.push(threshold(s.threshold, where));
            catStart.push(0);
            catWords.push(0);
          } else {
            throw new TreeModelError(`${where}: decision_type ${JSON.stringify(type)}: not '<=' or '=='`);
          }
          stack.push([s.right_child, ref, 2], [s.left_child, ref, 1]);
        }
        if (side === 0) root = ref;
        else if (side === 1) left[parent] = ref;
        else right[parent] = ref;
      }
      return root;
    };
    treeInfo.forEach((info, t) => roots.push(compile(info?.tree_structure, t)));

    this.nTrees = roots.length;
    this.feature = Int32Array.from(feat);
    this.threshold = Float64Array.from(thr);
    this.kind = Uint8Array.from(kind);
    this.left = Int32Array.from(left);
    this.right = Int32Array.from(right);
    this.catStart = Int32Array.from(catStart);
    this.catWords = Int32Array.from(catWords);
    this.catBits = Uint32Array.from(bits.map((b) => b >>> 0));
    this.leafValue = Float64Array.from(leaves);
    this.roots = Int32Array.from(roots);
    this._row = new Float64Array(this.nFeatures);
  }

  /** Sum of the trees' leaf values for one row (array-like of nFeatures numbers), in tree order. */
  raw(row) {
    if (row.length !== this.nFeatures) throw new TreeModelError(`${this.name}: row has ${row.length} values; the model needs ${this.nFeatures}`);
    const x = this._row;
    for (let i = 0; i < x.length; i++) {
      const v = row[i];
      x[i] = Math.abs(v) <= K_ZERO_THRESHOLD ? 0.0 : v; // NaN stays NaN (the comparison is false)
    }
    const { feature, threshold, kind, left, right, catStart, catWords, catBits, leafValue, roots } = this;
    let sum = 0.0;
    for (let t = 0; t < roots.length; t++) {
      let node = roots[t];
      while (node >= 0) {
        let v = x[feature[node]];
        let goLeft;
        switch (kind[node]) {
          case PLAIN:
            goLeft = (v !== v ? 0.0 : v) <= threshold[node];
            break;
          case ZERO_LEFT:
            goLeft = v !== v || v === 0 || v <= threshold[node];
            break;
          case ZERO_RIGHT:
            goLeft = !(v !== v || v === 0) && v <= threshold[node];
            break;
          case NAN_LEFT:
            goLeft = v !== v || v <= threshold[node];
            break;
          case NAN_RIGHT:
            goLeft = v <= threshold[node]; // NaN <= t is false
            break;
          default: {
            // CATEGORICAL
            if (!(v > -1.0 && v < MAX_CAT)) {
              goLeft = false; // NaN, negative category or beyond int
            } else {
              const c = Math.trunc(v) | 0;
              const w = c >> 5;
              goLeft = w < catWords[node] && (catBits[catStart[node] + w] & (1 << (c & 31))) !== 0;
            }
          }
        }
        node = goLeft ? left[node] : right[node];
      }
      sum += leafValue[~node];
    }
    return sum;
  }

  /** The prediction with the objective's output transform (LightGBM `Booster.predict` default). */
  predict(row) {
    return this.transform(this.raw(row), this.transformArgs);
  }
}
