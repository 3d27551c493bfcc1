"""Batched tree walk in C (`forest_kernel.c`) for `route_many`: LightGBM's predictions, faster.

Why: lleaves' compiled branches cost ~9 ns per tree and row on a batch of real requests (a mispredicted branch
about once per tree); the kernel walks the trees that `serving.trees.TreeModel` flattens (children adjacent, a
leaf its own child) branch-free, a block of rows in lockstep: about half the time of lleaves on the shipped quality
heads (`benchmarks.route`). Same bits as `Booster.predict` (tested): each row's used columns are those of
`TreeModel.columns` (the same missing-value rules, |x| <= kZeroThreshold read as 0.0), raw scores are summed tree
after tree from 0.0, and the sigmoid is C's `exp` as LightGBM's.

The cost booster reads one row per candidate, alike but for the candidate's columns (its model code), and every
cost tree splits on the model code, so lleaves walks 14 deep trees where a few would do. `Forest.specialized`
gives each candidate the booster's trees with the candidate's columns decided and pruned away (the leaf a row
reaches is unchanged), keeps each distinct pruned tree once (60 trees x 14 candidates -> 240 shared ones) and
evaluates all of them on one row per request. Boosters with an output other than identity / sigmoid are left to
lleaves (`from_models` / `specialized` return None), as is everything when no C compiler is available.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import lightgbm as lgb
import numpy as np

from core.native import configured_or_warn
from serving.trees import OUTPUT_TRANSFORMS, TreeModel

KERNEL = Path(__file__).with_name("forest_kernel.c")
NODE = np.dtype([("threshold", "<f8"), ("column", "<i4"), ("right", "<i4")])  # forest_kernel.c node_t
N_BLOCKS = 5  # TreeModel's column blocks, one per missing-value rule; then its categorical columns
CONSTANT, CATEGORY = 5, 6  # forest_kernel.c's rules of the leaves' constant 0.0 column and a categorical column
_SIGMOID, _IDENTITY = OUTPUT_TRANSFORMS["binary"], OUTPUT_TRANSFORMS["regression"]
_P, _I64 = ctypes.c_void_p, ctypes.c_int64


def _bind(library: ctypes.CDLL):
    walk = library.beast_forest_many
    walk.argtypes = [_P, _I64, _I64, _I64, _P, _P, _P, _I64, _P, _I64, _P, _P, _P, _P, _I64, _P, _P, _P, _P]
    walk.restype = ctypes.c_int
    return walk


@dataclass(frozen=True, eq=False)
class Tree:
    """One tree, flattened as TreeModel does (node 0 the root; a leaf has column 0, threshold +inf and is its own
    child); `column` indexes a TreeModel's per-call matrix (5 blocks of the features, then categorical columns)."""

    column: np.ndarray  # (n_nodes,) int
    threshold: np.ndarray  # (n_nodes,) float64
    right: np.ndarray  # (n_nodes,) int: right child, left = right - 1
    value: np.ndarray  # (n_nodes,) float64: leaf values
    depth: int

    @cached_property
    def key(self) -> bytes:
        return b"".join(a.tobytes() for a in (self.column, self.threshold, self.right, self.value))

    def pruned(self, decided: dict[int, float]) -> Tree:
        """The tree with every node reading a column of `decided` (column -> its value) replaced by the child that
        value takes: rows whose columns hold those values reach the same leaves."""
        column, threshold, right, value = [0], [np.inf], [1], [0.0]
        stack, depth = [(0, 0, 0)], 0  # (new node, old node, depth)
        while stack:
            new, old, d = stack.pop()
            while self.right[old] != old + 1 and int(self.column[old]) in decided:
                old = int(self.right[old]) - (decided[int(self.column[old])] <= self.threshold[old])
            if self.right[old] == old + 1:  # a leaf
                right[new], value[new] = new + 1, float(self.value[old])
                depth = max(depth, d)
                continue
            left = len(column)
            column += [0, 0]
            threshold += [np.inf, np.inf]
            right += [left + 1, left + 2]
            value += [0.0, 0.0]
            column[new], threshold[new], right[new] = int(self.column[old]), float(self.threshold[old]), left + 1
            stack += [(left, int(self.right[old]) - 1, d + 1), (left + 1, int(self.right[old]), d + 1)]
        return Tree(np.array(column), np.array(threshold), np.array(right), np.array(value), depth)


def model_trees(model: TreeModel) -> list[Tree]:
    """The trees of `model` in its dump's order (each tree's nodes are contiguous, from its root)."""
    roots = model.roots[model.order]
    ends = np.append(roots[1:], len(model.column))
    depths = _depths(model)[model.order]
    return [
        Tree(model.column[a:b], model.threshold[a:b], model.right[a:b] - a, model.value[a:b], int(d))
        for a, b, d in zip(roots, ends, depths, strict=True)
    ]


def _sigmoid(model: TreeModel) -> float | None:
    """s of the model's output 1 / (1 + exp(-s * raw)), NaN for the raw score, None for another transform."""
    if model.transform is _SIGMOID:
        return float(model.transform_args.get("sigmoid", 1.0))
    return np.nan if model.transform is _IDENTITY else None


@dataclass(frozen=True, eq=False)
class Forest:
    """Distinct trees in one set of arrays for the kernel, and heads summing some of them in order: node indices
    are global, node columns index the used columns (`features`, read under `rules`), column 0 is the constant
    0.0 that leaves compare with +inf."""

    n_features: int
    features: np.ndarray  # (n_used,) int32: the row's feature each used column reads
    rules: np.ndarray  # (n_used,) uint8: its missing-value rule (TreeModel's block), CONSTANT or CATEGORY
    cat_at: np.ndarray  # (n_used,) int64: a CATEGORY column's node set in `sets` starts here (0 otherwise)
    width: int  # the length of every set (the last entry 0: categories past the set)
    sets: np.ndarray  # uint8: the categorical nodes' sets (1: the category goes left), TreeModel.cat_table
    roots: np.ndarray  # (n_trees,) int32: root node of each distinct tree
    depth: np.ndarray  # (n_trees,) int32: steps to walk (the tree's depth; leaves stay put)
    nodes: np.ndarray  # (n_nodes,) NODE
    leaf: np.ndarray  # (n_nodes,) float64: leaf values (0 on internal nodes)
    head_start: np.ndarray  # (n_heads + 1,) int64: head h sums trees head_trees[head_start[h]:head_start[h + 1]]
    head_trees: np.ndarray  # int32
    sigmoid: np.ndarray  # (n_heads,) float64: s of 1 / (1 + exp(-s * raw)), NaN for the raw score
    walk: object = field(repr=False)

    @classmethod
    def from_models(cls, models: Sequence[TreeModel]) -> Forest | None:
        """One head per model (the same features, no categorical splits: each model numbers its own), or None
        (another output transform, categorical splits, or no C kernel)."""
        if not models or len({m.n_features for m in models}) != 1 or any(len(m.cat_nodes) for m in models):
            return None
        return cls._build(models[0], [model_trees(m) for m in models], [_sigmoid(m) for m in models])

    @classmethod
    def specialized(cls, model: TreeModel, template: np.ndarray, varies: np.ndarray) -> Forest | None:
        """One head per row of `template` (a candidate's row: its own values in the columns where `varies` is
        False): the model's trees with those columns decided and pruned away, so every head reads the same
        request row (any candidate's). None as `from_models`."""
        nf = model.n_features
        feature_of = np.concatenate([np.tile(np.arange(nf), N_BLOCKS), model.cat_features]).astype(np.intp)
        fixed = np.flatnonzero(~varies[feature_of])  # per-call columns holding a candidate's own value
        trees = model_trees(model)
        heads = []
        for row in template:
            values = model.columns(row[None, :])[0]
            decided = {int(c): float(values[c]) for c in fixed}
            heads.append([t.pruned(decided) for t in trees])
        return cls._build(model, heads, [_sigmoid(model)] * len(template))

    @classmethod
    def _build(cls, model: TreeModel, heads: list[list[Tree]], sigmoid: list[float | None]) -> Forest | None:
        """The arrays of `heads`' distinct trees; categorical columns are `model`'s (the only one that has any)."""
        if any(s is None for s in sigmoid):
            return None
        walk = configured_or_warn(KERNEL, "serving.forest: batches through lleaves", _bind)
        if walk is None:
            return None
        distinct: dict[bytes, int] = {}
        trees: list[Tree] = []
        head_trees = []
        for head in heads:
            for tree in head:
                if tree.key not in distinct:
                    distinct[tree.key] = len(trees)
                    trees.append(tree)
                head_trees.append(distinct[tree.key])
        offsets = np.cumsum([0, *(len(t.column) for t in trees)])
        column = np.concatenate([t.column for t in trees])
        threshold = np.concatenate([t.threshold for t in trees])
        internal = threshold != np.inf
        used, at = np.unique(column[internal], return_inverse=True)
        nf, width = model.n_features, model.cat_table.shape[1]
        cat = np.maximum(used - N_BLOCKS * nf, -1)  # the categorical node of each used column, or -1
        feature = used % nf
        feature[cat >= 0] = model.cat_features[cat[cat >= 0]]
        nodes = np.zeros(len(column), NODE)
        nodes["threshold"] = threshold
        nodes["column"][internal] = at + 1
        nodes["right"] = np.concatenate([t.right + o for t, o in zip(trees, offsets, strict=False)])
        return cls(
            n_features=nf,
            features=np.concatenate([[0], feature]).astype(np.int32),
            rules=np.concatenate([[CONSTANT], np.where(cat < 0, used // nf, CATEGORY)]).astype(np.uint8),
            cat_at=np.concatenate([[0], np.maximum(cat, 0) * width]).astype(np.int64),
            width=width,
            sets=np.ascontiguousarray(model.cat_table, dtype=np.uint8).ravel(),
            roots=offsets[:-1].astype(np.int32),
            depth=np.array([t.depth for t in trees], dtype=np.int32),
            nodes=nodes,
            leaf=np.concatenate([t.value for t in trees]),
            head_start=np.cumsum([0, *(len(h) for h in heads)]).astype(np.int64),
            head_trees=np.array(head_trees, dtype=np.int32),
            sigmoid=np.array(sigmoid, dtype=np.float64),
            walk=walk,
        )

    @property
    def n_heads(self) -> int:
        return len(self.sigmoid)

    @cached_property
    def _addresses(self) -> tuple[int, ...]:
        arrays = (self.features, self.rules, self.cat_at, self.sets, self.roots, self.depth)
        return tuple(a.ctypes.data for a in (*arrays, self.nodes, self.leaf))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(n_heads, n_rows) predictions of every head for the rows of X (n_rows x n_features)."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"X has shape {X.shape}; the forest needs (n_rows, {self.n_features})")
        out = np.empty((self.n_heads, len(X)))
        features, rules, cat_at, sets, roots, depth, nodes, leaf = self._addresses
        status = self.walk(
            X.ctypes.data, len(X), self.n_features, len(self.features), features, rules, cat_at, self.width, sets,
            len(self.roots), roots, depth, nodes, leaf,
            self.n_heads, self.head_start.ctypes.data, self.head_trees.ctypes.data, self.sigmoid.ctypes.data,
            out.ctypes.data,
        )  # fmt: skip
        if status:
            raise MemoryError("serving.forest: the kernel could not allocate its row block")
        return out


def specialized_forest(model_text: str, template: np.ndarray, varies: np.ndarray) -> Forest | None:
    """`Forest.specialized` of a model text, memoised (pruning 14 x 60 trees takes ~0.15 s; routers built again
    from the same bundle share it)."""
    template = np.ascontiguousarray(template, dtype=np.float64)
    varies = np.ascontiguousarray(varies, dtype=bool)
    return _specialized(model_text, template.tobytes(), template.shape, varies.tobytes())


@lru_cache(maxsize=16)
def _specialized(model_text: str, template: bytes, shape: tuple[int, ...], varies: bytes) -> Forest | None:
    rows = np.frombuffer(template).reshape(shape)
    return Forest.specialized(tree_model(model_text), rows, np.frombuffer(varies, dtype=bool))


@lru_cache(maxsize=64)
def tree_model(model_text: str) -> TreeModel:
    """The flattened trees of a LightGBM model text (memoised: routers built again share them)."""
    return TreeModel.from_dump(lgb.Booster(model_str=model_text).dump_model())


def _depths(model: TreeModel) -> np.ndarray:
    """Depth of each tree in `model.roots` order (deepest first): tree j is live at step k iff live[k] > j."""
    live = np.asarray(model.live, dtype=np.int64)
    return (live[None, :] > np.arange(model.n_trees)[:, None]).sum(axis=1)
