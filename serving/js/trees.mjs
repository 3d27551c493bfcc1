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

/**
 * Trees laid out for a branch-free walk (serving/forest_kernel.c's, for one row): a node's left child is its right
 * child - 1, a leaf is its own left child (test +inf on the constant 0.0 column `constant`), so a step is
 * node = right[node] - (value <= test) whatever the node, and a tree is walked for its depth. Four trees of equal
 * depth (the trees sorted by depth) are walked side by side: four independent chains of loads the CPU overlaps,
 * and no branch to mispredict (the 14 quality heads of a request: 24 -> 10 us).
 */
class Walk {
  /** `src`: column, test, left, right (>= 0 a node, < 0 ~leaf) and leafValue arrays; `roots`: the trees. */
  constructor(src, roots, constant) {
    const column = [], test = [], right = [], leaf = [], root = [], depth = [];
    for (const r of roots) {
      const at = column.length;
      column.push(0), test.push(0), right.push(0), leaf.push(0);
      const queue = [[r, at, 0]];
      let deepest = 0;
      for (let q = 0; q < queue.length; q++) {
        const [ref, slot, d] = queue[q];
        deepest = Math.max(deepest, d);
        if (ref < 0) {
          column[slot] = constant, test[slot] = Infinity, right[slot] = slot + 1, leaf[slot] = src.leafValue[~ref];
        } else {
          const pair = column.length; // the left child, then the right one
          column.push(0, 0), test.push(0, 0), right.push(0, 0), leaf.push(0, 0);
          column[slot] = src.column[ref], test[slot] = src.test[ref], right[slot] = pair + 1;
          queue.push([src.left[ref], pair, d + 1], [src.right[ref], pair + 1, d + 1]);
        }
      }
      root.push(at), depth.push(deepest);
    }
    this.column = Int32Array.from(column);
    this.test = Float64Array.from(test);
    this.right = Int32Array.from(right);
    this.leaf = Float64Array.from(leaf);
    this.root = Int32Array.from(root);
    this.depth = Int32Array.from(depth);
    this.order = Int32Array.from([...root.keys()].sort((a, b) => depth[a] - depth[b] || a - b));
    this.out = new Float64Array(root.length);
  }

  /** The leaf value each tree reaches for the used values `used` (its last entry the constant 0.0), by tree. */
  leaves(used) {
    const { column, test, right, leaf, root, depth, order, out } = this;
    const n = order.length;
    let g = 0;
    for (; g + 4 <= n; g += 4) {
      const t0 = order[g], t1 = order[g + 1], t2 = order[g + 2], t3 = order[g + 3];
      let a = root[t0], b = root[t1], c = root[t2], d = root[t3];
      for (let k = depth[t3]; k > 0; k--) {
        a = right[a] - +(used[column[a]] <= test[a]);
        b = right[b] - +(used[column[b]] <= test[b]);
        c = right[c] - +(used[column[c]] <= test[c]);
        d = right[d] - +(used[column[d]] <= test[d]);
      }
      out[t0] = leaf[a], out[t1] = leaf[b], out[t2] = leaf[c], out[t3] = leaf[d];
    }
    for (; g < n; g++) {
      const t = order[g];
      let a = root[t];
      for (let k = depth[t]; k > 0; k--) a = right[a] - +(used[column[a]] <= test[a]);
      out[t] = leaf[a];
    }
    return out;
  }
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
    this.kind = Uint8Array.from(kind);
    this.left = Int32Array.from(left);
    this.right = Int32Array.from(right);
    this.catStart = Int32Array.from(catStart);
    this.catWords = Int32Array.from(catWords);
    this.catBits = Uint32Array.from(bits.map((b) => b >>> 0));
    this.leafValue = Float64Array.from(leaves);
    this.roots = Int32Array.from(roots);

    // Used columns (serving/forest.py's): each numerical node reads its feature under its missing-value rule, one
    // value per (feature, rule) computed once a row; each categorical node reads its own, 0 in its set, else 1.
    // Every node is then `value <= test`, no branch on its kind (the 14 quality heads of a request: 30 -> 25 us).
    const usedAt = new Map();
    const uFeature = [], uNode = [];
    this.column = new Int32Array(feat.length);
    this.test = new Float64Array(feat.length);
    for (let node = 0; node < feat.length; node++) {
      const key = kind[node] === CATEGORICAL ? `c${node}` : `${feat[node]}:${kind[node]}`;
      if (!usedAt.has(key)) {
        usedAt.set(key, uFeature.length);
        uFeature.push(feat[node]);
        uNode.push(node);
      }
      this.column[node] = usedAt.get(key);
      this.test[node] = kind[node] === CATEGORICAL ? 0.5 : thr[node];
    }
    this.usedFeature = Int32Array.from(uFeature);
    this.usedNode = Int32Array.from(uNode); // a node that reads the column (its kind and set are the column's)
    const own = new Set([PLAIN, NAN_LEFT, NAN_RIGHT]); // rules under which a value that is not NaN is itself
    this.usedPlain = Uint8Array.from(uNode, (node) => (own.has(kind[node]) ? 1 : 0));
    this._used = new Float64Array(uFeature.length + 1); // + the constant 0.0 column the walk's leaves read
  }

  /** The value used column `j` holds for feature value `v` (what `value <= test` of its nodes reads). */
  _usedValue(j, v) {
    const node = this.usedNode[j];
    if (Math.abs(v) <= K_ZERO_THRESHOLD) v = 0.0; // NaN stays NaN (the comparison is false)
    const nan = v !== v, zero = nan || v === 0;
    switch (this.kind[node]) {
      case PLAIN:
        return nan ? 0.0 : v;
      case ZERO_LEFT:
        return zero ? -Infinity : v;
      case ZERO_RIGHT:
        return zero ? NaN : v; // NaN <= t is false: right
      case NAN_LEFT:
        return nan ? -Infinity : v;
      case NAN_RIGHT:
        return v;
      default: {
        // CATEGORICAL: NaN, a negative category or one beyond int goes right; category = trunc(v)
        if (!(v > -1.0 && v < MAX_CAT)) return 1.0;
        const c = Math.trunc(v) | 0;
        const w = c >> 5;
        return w < this.catWords[node] && (this.catBits[this.catStart[node] + w] & (1 << (c & 31))) !== 0 ? 0.0 : 1.0;
      }
    }
  }

  _usedValues(row) {
    this._checkRow(row);
    const used = this._used, feature = this.usedFeature, plain = this.usedPlain;
    for (let j = 0; j < feature.length; j++) {
      const v = row[feature[j]];
      // the common rule inline (a NaN-free value, no missing-value handling): |v| <= kZeroThreshold is 0
      used[j] = plain[j] && v === v ? (Math.abs(v) <= K_ZERO_THRESHOLD ? 0.0 : v) : this._usedValue(j, v);
    }
    return used;
  }

  _checkRow(row) {
    if (row.length !== this.nFeatures) throw new TreeModelError(`${this.name}: row has ${row.length} values; the model needs ${this.nFeatures}`);
  }

  /** Sum of the trees' leaf values for one row (array-like of nFeatures numbers), in tree order. */
  raw(row) {
    this._walk ??= new Walk(this, this.roots, this.usedFeature.length); // at first use: not every model is walked whole
    const leaf = this._walk.leaves(this._usedValues(row));
    let sum = 0.0;
    for (let t = 0; t < leaf.length; t++) sum += leaf[t];
    return sum;
  }

  /** Heads that are this model with some features fixed (`fixed[h]`: Map feature -> head h's value, e.g. a
   * candidate's own columns), each tree pruned on them (a node on a fixed feature replaced by the child its value
   * takes, so a row reaches the same leaf) and identical pruned trees walked once: `PrunedHeads.raw(row, out)`. */
  pruned(fixed) {
    return new PrunedHeads(this, fixed);
  }

  /** The prediction with the objective's output transform (LightGBM `Booster.predict` default). */
  predict(row) {
    return this.transform(this.raw(row), this.transformArgs);
  }
}

/** A TreeModel's trees pruned per head (`TreeModel.pruned`); `raw(row, out)` sets out[h] to head h's raw score,
 * its trees' leaves summed in tree order from 0.0: the bits of `model.raw` on the row with head h's values in its
 * fixed features (the row's own values there are not read). serving/forest.py's `Forest.specialized` in JS: the
 * cost booster's 60 trees per candidate, each split on the model code, are 240 distinct trees over 14
 * candidates, and a request's cost rows take ~9 us instead of 27-30. */
export class PrunedHeads {
  constructor(model, fixed) {
    this.model = model;
    const pruned = { column: [], test: [], left: [], right: [], leafValue: [] }; // the distinct pruned trees
    const roots = [];
    const distinct = new Map(); // structure of a pruned tree -> its index in `roots`
    this.treesOf = [];
    const { column: col, test, left: l, right: r, leafValue } = model;
    for (const values of fixed) {
      // a fixed feature's used columns, valued once per head
      const decided = new Map();
      for (let j = 0; j < model.usedFeature.length; j++) {
        if (values.has(model.usedFeature[j])) decided.set(j, model._usedValue(j, values.get(model.usedFeature[j])));
      }
      const settle = (node) => {
        while (node >= 0 && decided.has(col[node])) node = decided.get(col[node]) <= test[node] ? l[node] : r[node];
        return node;
      };
      const key = (node) => {
        node = settle(node);
        return node < 0 ? `${Object.is(leafValue[~node], -0) ? "-0" : leafValue[~node]}` : `${col[node]}<=${test[node]}(${key(l[node])})(${key(r[node])})`;
      };
      const build = (node) => {
        node = settle(node);
        if (node < 0) return ~(pruned.leafValue.push(leafValue[~node]) - 1);
        const at = pruned.column.push(col[node]) - 1;
        pruned.test.push(test[node]), pruned.left.push(0), pruned.right.push(0);
        pruned.left[at] = build(l[node]);
        pruned.right[at] = build(r[node]);
        return at;
      };
      const trees = [];
      for (let t = 0; t < model.roots.length; t++) {
        const k = key(model.roots[t]);
        if (!distinct.has(k)) {
          distinct.set(k, roots.length);
          roots.push(build(model.roots[t]));
        }
        trees.push(distinct.get(k));
      }
      this.treesOf.push(Int32Array.from(trees));
    }
    this.nTrees = roots.length; // distinct pruned trees
    this.needed = Int32Array.from(new Set(pruned.column)).sort(); // the used columns the pruned nodes still read
    this._walk = new Walk(pruned, roots, model.usedFeature.length);
  }

  raw(row, out) {
    const { model, needed } = this;
    model._checkRow(row);
    const used = model._used; // only the columns the pruned trees read (a model code's category columns are not)
    for (let i = 0; i < needed.length; i++) used[needed[i]] = model._usedValue(needed[i], row[model.usedFeature[needed[i]]]);
    const leaf = this._walk.leaves(used);
    for (let h = 0; h < this.treesOf.length; h++) {
      const trees = this.treesOf[h];
      let sum = 0.0;
      for (let i = 0; i < trees.length; i++) sum += leaf[trees[i]];
      out[h] = sum;
    }
    return out;
  }
}
