/* A batch of rows through LightGBM trees flattened by serving/trees.py (`serving.forest.Forest`).
 *
 * Why: lleaves compiles each tree into branches, and a batch of real requests mispredicts about one of them per
 * tree (~9 ns a tree). Here every node is the same branch-free step, child = right - (value <= threshold), a
 * leaf is its own child, and a block of rows walks each tree in lockstep for the tree's depth: independent loads
 * the CPU overlaps instead of branches it guesses. Rows are first reduced to the columns the trees read, each
 * under its node's missing-value rule (TreeModel.columns, per column), and raw scores are summed tree after
 * tree from 0.0, as GBDT::PredictRaw does, so the predictions are LightGBM's bit for bit (tested).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct {
  double threshold; /* go left iff value <= threshold (+inf on a leaf) */
  int32_t column;   /* the used column the node reads (0: the constant 0.0 column, on leaves) */
  int32_t right;    /* right child; the left child is right - 1; a leaf's own index + 1 */
} node_t;

enum { BLOCK = 32 }; /* rows walked in lockstep: their used columns stay in the L1 cache */
#define K_ZERO 1.0000000180025095e-35 /* LightGBM kZeroThreshold, (double)1e-35f */

/* Missing-value rules of serving/trees.py's column blocks, the constant column of the leaves, then a categorical
 * node's column (1.0: the category goes right). */
enum { PLAIN, ZERO_LEFT, ZERO_RIGHT, NAN_LEFT, NAN_RIGHT, CONSTANT, CATEGORY };

/* Used column j of row x. A categorical column's node set is in[cat_at[j] .. + width) (1: goes left; the
 * last entry 0: a category past the set, a negative or NaN value), as TreeModel.columns reads it. */
static void used_columns(const double *x, int64_t n_used, const int32_t *feature, const uint8_t *rule,
                         const int64_t *cat_at, int64_t width, const uint8_t *in, double *e) {
  for (int64_t j = 0; j < n_used; j++) {
    double v = x[feature[j]];
    if (fabs(v) <= K_ZERO) v = 0.0; /* the C API drops |x| <= kZeroThreshold from a dense row */
    const int nan = v != v, zero = nan || v == 0.0;
    switch (rule[j]) {
      case PLAIN: e[j] = nan ? 0.0 : v; break;
      case ZERO_LEFT: e[j] = zero ? -INFINITY : v; break;
      case ZERO_RIGHT: e[j] = zero ? NAN : v; break;
      case NAN_LEFT: e[j] = nan ? -INFINITY : v; break;
      case NAN_RIGHT: e[j] = v; break;
      case CATEGORY: {
        int64_t code = width - 1;
        if (v > -1.0 && v < 2147483648.0) { /* false for NaN; (-1, 0) truncates to category 0 */
          const int64_t c = (int64_t)v;
          code = c < width - 1 ? c : width - 1;
        }
        e[j] = in[cat_at[j] + code] ? 0.0 : 1.0;
        break;
      }
      default: e[j] = 0.0;
    }
  }
}

/* out[h * n_rows + r] = head h's prediction of row r (rows of X: n_features apart): the sum, in list order from 0.0,
 * of the leaves row r reaches in trees head_trees[head_start[h]..head_start[h+1]-1] (heads may share trees: each is
 * walked once per row), then sigmoid[h] = s: 1 / (1 + exp(-s * raw)), NaN: raw. Returns 0, or -1 when out of memory
 * (nothing written then). */
int beast_forest_many(const double *X, int64_t n_rows, int64_t n_features, int64_t n_used, const int32_t *feature,
                      const uint8_t *rule, const int64_t *cat_at, int64_t width, const uint8_t *in,
                      int64_t n_trees, const int32_t *roots, const int32_t *depth,
                      const node_t *nodes, const double *leaf, int64_t n_heads, const int64_t *head_start,
                      const int32_t *head_trees, const double *sigmoid, double *out) {
  double *used = malloc(sizeof(double) * BLOCK * ((n_used > 0 ? n_used : 1) + (n_trees > 0 ? n_trees : 1)));
  if (used == NULL) return -1;
  double *leaves = used + BLOCK * (n_used > 0 ? n_used : 1); /* leaves[t * BLOCK + i]: tree t's leaf value for row i */
  for (int64_t r0 = 0; r0 < n_rows; r0 += BLOCK) {
    const int64_t nb = n_rows - r0 < BLOCK ? n_rows - r0 : BLOCK;
    for (int64_t i = 0; i < nb; i++) used_columns(X + (r0 + i) * n_features, n_used, feature, rule, cat_at, width, in,
                   used + i * n_used);
    for (int64_t t = 0; t < n_trees; t++) {
      int32_t node[BLOCK];
      for (int64_t i = 0; i < nb; i++) node[i] = roots[t];
      for (int32_t k = 0; k < depth[t]; k++)
        for (int64_t i = 0; i < nb; i++) {
          const node_t *p = nodes + node[i];
          node[i] = p->right - (used[i * n_used + p->column] <= p->threshold);
        }
      for (int64_t i = 0; i < nb; i++) leaves[t * BLOCK + i] = leaf[node[i]];
    }
    for (int64_t h = 0; h < n_heads; h++) {
      double raw[BLOCK] = {0.0};
      for (int64_t j = head_start[h]; j < head_start[h + 1]; j++) {
        const double *v = leaves + (int64_t)head_trees[j] * BLOCK;
        for (int64_t i = 0; i < nb; i++) raw[i] += v[i];
      }
      double *o = out + h * n_rows + r0;
      const double s = sigmoid[h];
      for (int64_t i = 0; i < nb; i++) o[i] = s == s ? 1.0 / (1.0 + exp(-s * raw[i])) : raw[i];
    }
  }
  free(used);
  return 0;
}
