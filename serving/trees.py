"""Pure-numpy evaluator of a LightGBM model from its JSON dump (`Booster.dump_model()`).

The bundle ships every booster as LightGBM JSON, the language-neutral form that routers in other languages
read (`serving/js/trees.mjs` mirrors this module). This is its executable reference: the export refuses a
bundle whose JSON does not predict what the text model predicts on :func:`probe_rows` (`models/export.py`).
It evaluates the dump without LightGBM (numpy + stdlib only), exactly as `Tree::GetLeaf` /
`GBDT::PredictRaw` do:

- numerical split: ``x <= threshold`` goes left. Missing values per node (LightGBM `tree.h`,
  `NumericalDecision`): NaN becomes 0.0 unless the node's missing_type is "NaN"; then, if missing_type
  is "Zero" and the value is zero, or missing_type is "NaN" and the value is NaN, the node's
  `default_left` decides; otherwise the comparison does.
- the C API drops |x| <= kZeroThreshold (1e-35f) from a dense row before predicting (`c_api.cpp`,
  `RowPairFunctionFromDenseMatric`), so such values are evaluated as exactly 0.0.
- categorical split (`CategoricalDecision`): NaN goes right; otherwise the category is
  ``static_cast<int>(x)`` (truncation toward zero, so -0.5 is category 0); a negative category or one
  outside the node's set ("1||3||7") goes right, a category in the set goes left.
- raw score = sum of the trees' leaf values in tree order (shrinkage and the boost-from-average bias are
  already in the leaf values); `predict` applies the objective's output transform.

Speed: every tree is flattened once into arrays with each internal node's children adjacent (left =
right - 1, a leaf is its own child). A call builds one matrix for the row batch: five copies of X with
NaN / zero replaced per missing rule (0; -inf for "left"; NaN for "right", since NaN <= t is false even
for t = +inf), so every numerical node is a plain ``value <= threshold`` on its block, and one 0/1
column per categorical node (category outside / inside the node's set). It then walks all (tree, row)
lanes level by level with fancy indexing, at most max-depth steps, dropping trees that are already
finished (trees are sorted by depth, deepest first, so the live trees are always a prefix).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.errors import BeastError

K_ZERO_THRESHOLD = float(np.float32(1e-35))  # LightGBM kZeroThreshold (a float literal, 1e-35f)
_AVOID_INF = 1e300  # Common::AvoidInf clamps the dump's thresholds to +-1e300
_MAX_CAT = 2**31  # static_cast<int> of a larger value is undefined in C++; such a category never matches

# Column blocks of the per-call feature matrix, one per missing rule (numerical nodes pick a block).
_PLAIN, _ZERO_LEFT, _ZERO_RIGHT, _NAN_LEFT, _NAN_RIGHT = range(5)
_N_BLOCKS = 5


class TreeModelError(BeastError, ValueError):
    """A LightGBM dump this evaluator cannot (or will not) evaluate; the message names the field and value."""


def _identity(raw: np.ndarray, _args: Mapping[str, str]) -> np.ndarray:
    return raw


def _sign_square(raw: np.ndarray, _args: Mapping[str, str]) -> np.ndarray:
    return np.sign(raw) * raw * raw


def _sigmoid(raw: np.ndarray, args: Mapping[str, str]) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-float(args.get("sigmoid", 1.0)) * raw))


def _exp(raw: np.ndarray, _args: Mapping[str, str]) -> np.ndarray:
    return np.exp(raw)


Transform = Callable[[np.ndarray, Mapping[str, str]], np.ndarray]

# LightGBM objective name (first token of the dump's "objective") -> its ConvertOutput.
OUTPUT_TRANSFORMS: dict[str, Transform] = {
    "regression": _identity,
    "regression_l1": _identity,
    "huber": _identity,
    "fair": _identity,
    "quantile": _identity,
    "mape": _identity,
    "binary": _sigmoid,
    "cross_entropy": _sigmoid,
    "poisson": _exp,
    "gamma": _exp,
    "tweedie": _exp,
}
# The regression family squares back when trained with reg_sqrt ("regression sqrt" in the dump).
_SQRT_FAMILY = frozenset({"regression", "regression_l1", "huber", "fair", "quantile", "mape"})


def _output_transform(objective: object) -> tuple[str, Transform, dict[str, str]]:
    tokens = str(objective or "").split()
    name = tokens[0] if tokens else ""
    if name not in OUTPUT_TRANSFORMS:
        raise TreeModelError(f"objective {objective!r}: unsupported; supported: {', '.join(OUTPUT_TRANSFORMS)}")
    args = dict(t.split(":", 1) for t in tokens[1:] if ":" in t)
    if "sqrt" in tokens[1:]:
        if name not in _SQRT_FAMILY:
            raise TreeModelError(
                f"objective {objective!r}: 'sqrt' is only supported for {', '.join(sorted(_SQRT_FAMILY))}"
            )
        return name, _sign_square, args
    return name, OUTPUT_TRANSFORMS[name], args


@dataclass(frozen=True, eq=False)
class TreeModel:
    """A flattened LightGBM ensemble. Node arrays are global over all trees (trees in evaluation order)."""

    objective: str
    n_features: int
    n_columns: int  # columns of the per-call matrix: 5 x n_features, then one per categorical node
    n_trees: int
    transform: Transform
    transform_args: Mapping[str, str]
    column: np.ndarray  # (n_nodes,) int: column of the per-call matrix the node compares (0 on leaves)
    threshold: np.ndarray  # (n_nodes,) float: go left iff value <= threshold (+inf on leaves, 0.5 on cat nodes)
    right: np.ndarray  # (n_nodes,) int: right child (left = right - 1); a leaf's own index + 1
    value: np.ndarray  # (n_nodes,) float: leaf value (0 on internal nodes)
    roots: np.ndarray  # (n_trees,) int: root node of each tree, trees sorted by depth, deepest first
    order: np.ndarray  # (n_trees,) int: position in `roots` of the dump's tree 0, 1, ...
    live: tuple[int, ...]  # live[k] = number of trees (a prefix of `roots`) with depth > k
    cat_nodes: np.ndarray  # (n_cat,) int: categorical nodes
    cat_features: np.ndarray  # (n_cat,) int: their feature
    cat_table: np.ndarray  # (n_cat, width) bool: category c in the node's left set (last column: never)

    @classmethod
    def from_dump(cls, dump: Mapping[str, Any]) -> TreeModel:
        """Flatten every tree of a `Booster.dump_model()` dict into node arrays, once."""
        for key, want in (("num_class", 1), ("num_tree_per_iteration", 1)):
            if int(dump.get(key, 1)) != want:
                raise TreeModelError(f"{key}={dump.get(key)}: only single-output models (1) are supported")
        if dump.get("average_output"):
            raise TreeModelError("average_output=true (random forest): only boosted sums are supported")
        objective = str(dump.get("objective", ""))
        _, transform, args = _output_transform(objective)
        n_features = int(dump["max_feature_idx"]) + 1
        column: list[int] = []
        threshold: list[float] = []
        child: list[int] = []
        value: list[float] = []
        cats: list[tuple[int, int, frozenset[int]]] = []  # (node, feature, left set)
        roots: list[int] = []
        depths: list[int] = []

        def new_node() -> int:
            column.append(0)
            threshold.append(math.inf)
            child.append(-1)
            value.append(0.0)
            return len(column) - 1

        for t, info in enumerate(dump.get("tree_info", ())):
            root = new_node()
            roots.append(root)
            depth = 0
            stack = [(root, info["tree_structure"], 0)]
            while stack:
                node, spec, d = stack.pop()
                if "leaf_value" in spec or ("left_child" not in spec and "split_feature" not in spec):
                    if "leaf_coeff" in spec or "leaf_features" in spec:
                        raise TreeModelError(f"tree {t}: linear-tree leaves are not supported")
                    child[node] = node
                    value[node] = float(spec.get("leaf_value", 0.0))
                    depth = max(depth, d)
                    continue
                left = new_node()
                new_node()
                child[node] = left
                feature = int(spec["split_feature"])
                if not 0 <= feature < n_features:
                    raise TreeModelError(f"tree {t}: split_feature {feature} outside 0..{n_features - 1}")
                kind = spec.get("decision_type", "<=")
                if kind == "==":
                    members = frozenset(c for c in (int(v) for v in str(spec["threshold"]).split("||") if v) if c >= 0)
                    column[node] = _N_BLOCKS * n_features + len(cats)
                    threshold[node] = 0.5
                    cats.append((node, feature, members))
                elif kind == "<=":
                    column[node] = _numerical_block(spec, t) * n_features + feature
                    threshold[node] = _threshold(spec["threshold"])
                else:
                    raise TreeModelError(f"tree {t}: decision_type {kind!r}: not '<=' or '=='")
                stack.append((left, spec["left_child"], d + 1))
                stack.append((left + 1, spec["right_child"], d + 1))
            depths.append(depth)

        by_depth = np.argsort(-np.asarray(depths, dtype=np.int64), kind="stable")
        sorted_depths = np.asarray(depths, dtype=np.int64)[by_depth]
        max_depth = int(sorted_depths[0]) if len(sorted_depths) else 0
        live = tuple(int(np.count_nonzero(sorted_depths > k)) for k in range(max_depth))
        width = max((max(m, default=-1) for _, _, m in cats), default=-1) + 2
        table = np.zeros((len(cats), width), dtype=bool)
        for i, (_, _, members) in enumerate(cats):
            table[i, sorted(members)] = True
        return cls(
            objective=objective,
            n_features=n_features,
            n_columns=_N_BLOCKS * n_features + len(cats),
            n_trees=len(roots),
            transform=transform,
            transform_args=args,
            column=np.asarray(column, dtype=np.intp),
            threshold=np.asarray(threshold, dtype=np.float64),
            right=np.asarray(child, dtype=np.intp) + 1,
            value=np.asarray(value, dtype=np.float64),
            roots=np.asarray(roots, dtype=np.intp)[by_depth],
            order=np.argsort(by_depth, kind="stable").astype(np.intp),
            live=live,
            cat_nodes=np.asarray([n for n, _, _ in cats], dtype=np.intp),
            cat_features=np.asarray([f for _, f, _ in cats], dtype=np.intp),
            cat_table=table,
        )

    def raw(self, X: np.ndarray) -> np.ndarray:
        """Raw score (sum of leaf values in tree order), shape (n_rows,)."""
        X = self._check(X)
        n = X.shape[0]
        if self.n_trees == 0 or n == 0:
            return np.zeros(n)
        values = self.columns(X).ravel()  # (n, n_columns) row-major
        column, threshold, right = self.column, self.threshold, self.right
        if n == 1:  # the same walk without the row offsets (one fewer numpy call per level)
            node = self.roots.copy()
            for m in self.live:
                cur = node[:m]
                node[:m] = right[cur] - (values[column[cur]] <= threshold[cur])
            return np.cumsum(self.value[node[self.order]])[-1:]
        node = np.repeat(self.roots[:, None], n, axis=1)  # (n_trees, n): every lane's current node
        base = (np.arange(n, dtype=np.intp) * self.n_columns)[None, :]
        for m in self.live:  # step k: only the first live[k] trees (deepest first) still have internal lanes
            cur = node[:m]
            node[:m] = right[cur] - (values[column[cur] + base] <= threshold[cur])
        leaves = self.value[node][self.order]  # (n_trees, n) in the dump's tree order
        return np.cumsum(leaves, axis=0)[-1]  # sequential, as GBDT::PredictRaw adds tree after tree

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Prediction with the objective's output transform (LightGBM's `Booster.predict` default)."""
        return self.transform(self.raw(X), self.transform_args)

    def _check(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim == 1:
            X = X[None, :]
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise TreeModelError(f"X has shape {X.shape}; the model needs (n_rows, {self.n_features})")
        return X

    def columns(self, X: np.ndarray) -> np.ndarray:
        """(n, n_columns): one block of X per missing rule, then one 0/1 column per categorical node."""
        X = np.where(np.abs(X) <= K_ZERO_THRESHOLD, 0.0, X)  # the C API drops |x| <= kZeroThreshold
        nan = np.isnan(X)
        zero = nan | (X == 0.0)  # missing_type Zero: NaN is first turned into 0.0
        parts = [None] * _N_BLOCKS
        parts[_PLAIN] = np.where(nan, 0.0, X)
        parts[_ZERO_LEFT] = np.where(zero, -np.inf, X)  # -inf <= any threshold: left
        parts[_ZERO_RIGHT] = np.where(zero, np.nan, X)  # NaN <= anything is false: right, even past +inf
        parts[_NAN_LEFT] = np.where(nan, -np.inf, X)
        parts[_NAN_RIGHT] = X
        if len(self.cat_nodes):
            width = self.cat_table.shape[1]
            x = X[:, self.cat_features].T  # (n_cat, n)
            ok = (x > -1.0) & (x < _MAX_CAT)  # False for NaN; (-1, 0) truncates to category 0
            code = np.minimum(np.where(ok, np.trunc(np.where(ok, x, 0.0)), width - 1), width - 1).astype(np.intp)
            parts.append(~np.take_along_axis(self.cat_table, code, axis=1).T)  # 1.0 = goes right (not <= 0.5)
        return np.concatenate(parts, axis=1, dtype=np.float64)


def _threshold(value: object) -> float:
    """The dump writes thresholds through `Common::AvoidInf` (|x| >= 1e300 -> +-1e300), while the model
    (and its text form) keeps +-inf, e.g. the last bin's upper bound in a NaN-vs-rest split: undo it."""
    x = float(value)
    return math.copysign(math.inf, x) if abs(x) >= _AVOID_INF else x


def _numerical_block(spec: Mapping[str, Any], tree: int) -> int:
    missing = str(spec.get("missing_type", "None"))
    left = bool(spec.get("default_left", False))
    if missing == "None":
        return _PLAIN
    if missing == "Zero":
        return _ZERO_LEFT if left else _ZERO_RIGHT
    if missing == "NaN":
        return _NAN_LEFT if left else _NAN_RIGHT
    raise TreeModelError(f"tree {tree}: missing_type {missing!r}: not 'None', 'Zero' or 'NaN'")


PROBE_SPECIALS = (
    math.nan,
    0.0,
    -0.0,
    K_ZERO_THRESHOLD,
    -K_ZERO_THRESHOLD,
    1e-36,
    1e300,
    -1e300,
    math.inf,
    -math.inf,
    -1.0,
    -0.5,
    0.5,
    2.7,
    7.0,
    64.0,
    3e9,
)


def _leaf_rows(dump: Mapping[str, Any], n_features: int) -> list[np.ndarray]:
    """One row per reachable leaf of every tree: the numerical splits on its path, each column set to the
    top of its interval (x <= threshold on the left, just above it on the right); other columns 0."""
    rows = []
    for info in dump["tree_info"]:
        stack: list[tuple[Mapping[str, Any], dict[int, tuple[float, float]]]] = [(info["tree_structure"], {})]
        while stack:
            node, bounds = stack.pop()
            if "split_feature" not in node:
                row = np.zeros(n_features)
                for f, (lo, hi) in bounds.items():
                    row[f] = hi if math.isfinite(hi) else np.nextafter(lo, np.inf)
                rows.append(row)
                continue
            if node["decision_type"] != "<=":  # categorical: both sides, no numeric bound
                stack += [(node["left_child"], bounds), (node["right_child"], bounds)]
                continue
            f, th = int(node["split_feature"]), _threshold(node["threshold"])
            lo, hi = bounds.get(f, (-math.inf, math.inf))
            if min(hi, th) > lo:
                stack.append((node["left_child"], bounds | {f: (lo, min(hi, th))}))
            if hi > max(lo, th):
                stack.append((node["right_child"], bounds | {f: (max(lo, th), hi)}))
    return rows


def probe_rows(dump: Mapping[str, Any]) -> np.ndarray:
    """Rows that walk every branch: one per reachable leaf of every tree, all zeros, all NaN, and NaN /
    zeros / tiny / huge / category-like values in each column."""
    n_features = int(dump["max_feature_idx"]) + 1
    rows = [np.zeros(n_features), np.full(n_features, np.nan), *_leaf_rows(dump, n_features)]
    for f in range(n_features):
        for v in PROBE_SPECIALS:
            rows.append(np.zeros(n_features))
            rows[-1][f] = v
    return np.vstack(rows)


def dump_disagreement(
    dump: Mapping[str, Any], predict: Callable[[np.ndarray], np.ndarray], rtol: float = 1e-9
) -> str | None:
    """None when the dump, evaluated here, predicts what `predict` (the text model) does on :func:`probe_rows`;
    else one line saying where it does not."""
    X = probe_rows(dump)
    got, want = TreeModel.from_dump(dump).predict(X), np.asarray(predict(X), dtype=np.float64)
    bad = ~np.isclose(got, want, rtol=rtol, atol=1e-12, equal_nan=True)
    if not bad.any():
        return None
    i = int(np.flatnonzero(bad)[0])
    return f"{int(bad.sum())} of {len(X)} probe rows differ (row {i}: JSON {got[i]!r}, model {want[i]!r})"
