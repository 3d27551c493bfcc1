/* One request's compiled boosters in one call from Python (`serving.compiled.CompiledTrees.one`).
 *
 * Why: each booster's lleaves entry point is native code, but reaching it through ctypes costs about a
 * microsecond per call, and a request made 15 of them (one per quality head on its candidate's row, one for
 * the cost rows): ~15 us of call overhead around ~10 us of trees. Here Python makes one call and this loop
 * makes the 15, with the same arguments in the same order, so the predictions are the same bits.
 */
#include <stdint.h>

typedef void (*forest)(const double *rows, double *out, int32_t start, int32_t end);

/* heads[j] (j < n_heads) on row rows[j] of the quality block X (row stride `stride` bytes) into quality[rows[j]],
 * then `cost` on the n_cost rows of Xc into cost_out */
void beast_forests_one(const uintptr_t *heads, const int64_t *rows, int64_t n_heads, uintptr_t cost, const char *X,
                       int64_t stride, double *quality, const double *Xc, int32_t n_cost, double *cost_out) {
    for (int64_t j = 0; j < n_heads; j++)
        ((forest)heads[j])((const double *)(X + rows[j] * stride), quality + rows[j], 0, 1);
    ((forest)cost)(Xc, cost_out, 0, n_cost);
}
