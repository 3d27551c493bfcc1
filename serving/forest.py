"""Batched tree walk in C (`forest_kernel.c`) for `route_many`'s quality heads: LightGBM's predictions, faster.

Why: lleaves' compiled branches cost ~9 ns per tree and row on a batch of real requests (a mispredicted branch
about once per tree); the kernel walks the trees that `serving.trees.TreeModel` flattens (children adjacent, a
leaf its own child) branch-free, a block of rows in lockstep: about half the time of lleaves on the shipped quality
heads (`benchmarks.route`). Same bits as `Booster.predict` (tested): each row's used columns are those of
`TreeModel._columns` (the same missing-value rules, |x| <= kZeroThreshold read as 0.0), raw scores are summed tree
after tree from 0.0, and the sigmoid is C's `exp` as LightGBM's. Boosters with categorical splits or an output
other than identity / sigmoid are left to lleaves (`Forest.from_models` returns None), as is everything when no
C compiler is available.
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
CONSTANT = 5  # forest_kernel.c's rule of the constant 0.0 column that leaves read (after TreeModel's 5 blocks)
_SIGMOID, _IDENTITY = OUTPUT_TRANSFORMS["binary"], OUTPUT_TRANSFORMS["regression"]
_P = ctypes.c_void_p
_I64 = ctypes.c_int64


def _bind(library: ctypes.CDLL):
    walk = library.beast_forest_many
    walk.argtypes = [_P, _I64, _I64, _I64, _P, _P, _I64, _P, _P, _P, _P, _P, _P, _P]
    walk.restype = ctypes.c_int
    return walk


def _kernel():
    return configured_or_warn(KERNEL, "serving.forest: batches through lleaves", _bind)


@dataclass(frozen=True, eq=False)
class Forest:
    """Heads (flattened LightGBM boosters over the same rows) in one set of arrays for the kernel: node indices
    are global, node columns index the used columns (`features`, read under `rules`), column 0 is the constant
    0.0 that leaves compare with +inf."""

    n_features: int
    features: np.ndarray  # (n_used,) int32: the row's feature each used column reads
    rules: np.ndarray  # (n_used,) uint8: its missing-value rule (TreeModel's block, or CONSTANT)
    starts: np.ndarray  # (n_heads + 1,) int64: head h's trees are starts[h]..starts[h + 1] - 1
    roots: np.ndarray  # (n_trees,) int32: root node of each tree, in each head's tree order
    depth: np.ndarray  # (n_trees,) int32: steps to walk (the tree's depth; leaves stay put)
    nodes: np.ndarray  # (n_nodes,) NODE
    leaf: np.ndarray  # (n_nodes,) float64: leaf values (0 on internal nodes)
    sigmoid: np.ndarray  # (n_heads,) float64: s of 1 / (1 + exp(-s * raw)), NaN for the raw score
    walk: object = field(repr=False)

    @property
    def n_heads(self) -> int:
        return len(self.sigmoid)

    @cached_property
    def _addresses(self) -> tuple[int, ...]:
        arrays = (self.features, self.rules, self.starts, self.roots, self.depth, self.nodes, self.leaf, self.sigmoid)
        return tuple(a.ctypes.data for a in arrays)

    @classmethod
    def from_models(cls, models: Sequence[TreeModel]) -> Forest | None:
        """The kernel's arrays for `models` (one head each, the same number of features), or None when one has
        categorical splits or another output transform, or no C kernel can be built."""
        if not models or len({m.n_features for m in models}) != 1:
            return None
        if any(len(m.cat_nodes) or m.transform not in (_SIGMOID, _IDENTITY) for m in models):
            return None
        walk = _kernel()
        if walk is None:
            return None
        offsets = np.cumsum([0, *(len(m.column) for m in models)])
        column = np.concatenate([m.column for m in models])
        internal = np.concatenate([m.threshold for m in models]) != np.inf
        used, at = np.unique(column[internal], return_inverse=True)
        n = models[0].n_features
        nodes = np.zeros(len(column), NODE)
        nodes["threshold"] = np.concatenate([m.threshold for m in models])
        nodes["column"][internal] = at + 1
        nodes["right"] = np.concatenate([m.right + o for m, o in zip(models, offsets, strict=False)])
        return cls(
            n_features=n,
            features=np.concatenate([[0], used % n]).astype(np.int32),
            rules=np.concatenate([[CONSTANT], used // n]).astype(np.uint8),
            starts=np.cumsum([0, *(m.n_trees for m in models)]).astype(np.int64),
            roots=np.concatenate([m.roots[m.order] + o for m, o in zip(models, offsets, strict=False)]).astype(
                np.int32
            ),
            depth=np.concatenate([_depths(m)[m.order] for m in models]).astype(np.int32),
            nodes=nodes,
            leaf=np.concatenate([m.value for m in models]),
            sigmoid=np.array(
                [float(m.transform_args.get("sigmoid", 1.0)) if m.transform is _SIGMOID else np.nan for m in models]
            ),  # fmt: skip
            walk=walk,
        )

    def predict(self, X: np.ndarray, head: int | None = None) -> np.ndarray:
        """(n_heads, n_rows) predictions of every head for the rows of X (n_rows x n_features), or (1, n_rows)
        of head `head` alone."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"X has shape {X.shape}; the forest needs (n_rows, {self.n_features})")
        first, n_heads = (0, self.n_heads) if head is None else (head, 1)
        out = np.empty((n_heads, len(X)))
        features, rules, starts, roots, depth, nodes, leaf, sigmoid = self._addresses
        status = self.walk(
            X.ctypes.data, len(X), self.n_features, len(self.features), features, rules,
            n_heads, starts + 8 * first, roots, depth, nodes, leaf, sigmoid + 8 * first, out.ctypes.data,
        )  # fmt: skip
        if status:
            raise MemoryError("serving.forest: the kernel could not allocate its row block")
        return out


@lru_cache(maxsize=64)
def tree_model(model_text: str) -> TreeModel:
    """The flattened trees of a LightGBM model text (memoised: routers built again share them)."""
    return TreeModel.from_dump(lgb.Booster(model_str=model_text).dump_model())


def _depths(model: TreeModel) -> np.ndarray:
    """Depth of each tree in `model.roots` order (deepest first): tree j is live at step k iff live[k] > j."""
    live = np.asarray(model.live, dtype=np.int64)
    return (live[None, :] > np.arange(model.n_trees)[:, None]).sum(axis=1)
