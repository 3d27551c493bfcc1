/* The embedding family of a window in C: the Llama-2 BPE ids of its text and their pooled table rows.
 *
 * Why: in Python a prompt's ids come from memos of its pieces, and every piece not seen before costs a call into
 * the `tokenizers` library (~70 us) plus the memo bookkeeping: on new text (every request's first sight of a
 * rare word, code, another script) this was the largest part of a routing decision (p99 ~0.5 ms). Here the whole
 * window costs one pass, O(n log n) in its length; a fixed-size memo of short pieces (below) saves repeating
 * BPE for common words, and nothing else is kept between calls.
 *
 * What it computes is `features.embed`'s recipe, steps 2-3, for a tokenizer that passed
 * `piece_tokenizer_json`'s proof (checked in Python before a configuration is made):
 * - normalise: prepend U+2581 to a non-empty text and replace every " " by it;
 * - cut into pieces, each a run of U+2581 and the run of other characters after it (a trailing run of U+2581
 *   alone is a piece): the proof says encoding the pieces one by one gives the whole text's ids;
 * - BPE each piece as the `tokenizers` crate does (models/bpe/word.rs `merge_all`): one symbol per character
 *   (its vocabulary id, else one byte-fallback token per UTF-8 byte), then repeatedly merge the adjacent pair of
 *   lowest merge rank, the leftmost among equals: through a min-heap of (rank, position) whose stale entries are
 *   skipped (the pair at the position no longer merges into the entry's id), or for a piece of at most
 *   SCAN_SYMBOLS symbols by a scan of the ranks kept per position (the same merges with fewer lookups: a window
 *   of AlpacaEval at first sight 10.1 -> 8.6 us, memoised 4.8 -> 3.8 us);
 * - pool: sum the table rows of the ids in order in float64, divide by their count, subtract the offset, round
 *   to float32 (no ids: -offset), the additions `Encoder._pooled` makes.
 * The ids equal `tokenizers`' and the vectors `Encoder.vector`'s bit for bit (tests/features/test_embed_kernel.py).
 * Nothing of the tokenizer is restated here: the vocabulary's one-character tokens, the byte tokens, the merges,
 * the table and the offset come from Python at load (`beast_embed_config`).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MARKER 0x2581u /* the normaliser's word marker */

typedef struct {
    uint64_t key; /* (left id + 1) << 32 | (right id + 1); 0: empty slot */
    int32_t rank, merged;
} merge_slot;

/* A memo of short pieces' ids (a direct-mapped table: a new piece overwrites its slot, so memory stays fixed).
 * BPE is a function of the piece, so a hit gives the ids BPE would. One call uses it at a time (`busy`); a call
 * that finds it in use by another thread runs BPE for every piece instead of waiting. */
#define MEMO_SLOTS 16384
#define MEMO_CHARS 16 /* longer pieces are not memoised */
typedef struct {
    uint64_t hash; /* 0: empty */
    int32_t n_chars, n_ids; /* n_ids <= MEMO_CHARS: a piece whose ids are more is not memoised */
    uint32_t chars[MEMO_CHARS];
    int32_t ids[MEMO_CHARS];
} memo_slot;

typedef struct {
    int32_t bmp[65536]; /* id of the one-character token of each BMP code point, -1: none */
    int32_t n_astral;
    uint32_t *astral; /* sorted code points above the BMP that have a one-character token ... */
    int32_t *astral_id; /* ... and their ids */
    int32_t bytes[256]; /* the byte-fallback token of each byte */
    uint64_t mask; /* merge table size - 1 (a power of two, 2^bits) */
    int shift; /* 64 - bits: a slot is the product's top bits (the low ones would hash only b and a's low bits) */
    merge_slot *merges;
    int32_t vocab, k;
    float *table; /* vocab x k, a copy */
    double *offset; /* k, a copy */
    memo_slot *memo; /* MEMO_SLOTS */
    char busy; /* the memo is in use by a call */
} config;

static uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)(a + 1) << 32) | (uint32_t)(b + 1); }
static uint64_t slot_of(uint64_t key, int shift) { return key * 0x9E3779B97F4A7C15ull >> shift; }

static const merge_slot *find_merge(const config *c, int32_t a, int32_t b) {
    uint64_t key = pair_key(a, b);
    for (uint64_t i = slot_of(key, c->shift);; i = (i + 1) & c->mask) {
        const merge_slot *s = &c->merges[i];
        if (s->key == key) return s;
        if (s->key == 0) return NULL;
    }
}

void beast_embed_free(void *p) {
    config *c = p;
    if (c == NULL) return;
    free(c->astral);
    free(c->astral_id);
    free(c->merges);
    free(c->table);
    free(c->offset);
    free(c->memo);
    free(c);
}

/* chars/char_ids: the n_chars one-character tokens (code point, id); bytes: 256 byte-token ids; merges: n_merges
 * rows (left id, right id, merged id), rank = row (a repeated pair keeps its last row, as the crate's map does);
 * table: vocab x k float32; offset: k float64. A new configuration (free it with beast_embed_free), else NULL (no
 * memory, or an id outside the table). */
void *beast_embed_config(const uint32_t *chars, const int32_t *char_ids, int64_t n_chars, const int32_t *bytes,
                         const int32_t *merges, int64_t n_merges, const float *table, int32_t vocab, int32_t k,
                         const double *offset) {
    config *c = calloc(1, sizeof *c);
    if (c == NULL) return NULL;
    c->vocab = vocab;
    c->k = k;
    for (int i = 0; i < 65536; i++) c->bmp[i] = -1;
    int64_t n_astral = 0;
    for (int64_t i = 0; i < n_chars; i++) n_astral += chars[i] > 0xFFFF;
    c->astral = malloc((n_astral + 1) * sizeof *c->astral);
    c->astral_id = malloc((n_astral + 1) * sizeof *c->astral_id);
    uint64_t size = 2;
    c->shift = 63;
    while (size < 2 * (uint64_t)n_merges + 2) size <<= 1, c->shift--;
    c->mask = size - 1;
    c->merges = calloc(size, sizeof *c->merges);
    c->table = malloc(((size_t)vocab * k + 1) * sizeof *c->table);
    c->offset = malloc((k + 1) * sizeof *c->offset);
    c->memo = calloc(MEMO_SLOTS, sizeof *c->memo);
    if (!c->astral || !c->astral_id || !c->merges || !c->table || !c->offset || !c->memo) goto bad;
    for (int64_t i = 0; i < n_chars; i++) {
        if (char_ids[i] < 0 || char_ids[i] >= vocab) goto bad;
        if (chars[i] <= 0xFFFF) {
            c->bmp[chars[i]] = char_ids[i];
        } else { /* insertion into the sorted list (a few hundred at most) */
            int32_t j = c->n_astral++;
            while (j > 0 && c->astral[j - 1] > chars[i]) {
                c->astral[j] = c->astral[j - 1];
                c->astral_id[j] = c->astral_id[j - 1];
                j--;
            }
            c->astral[j] = chars[i];
            c->astral_id[j] = char_ids[i];
        }
    }
    for (int b = 0; b < 256; b++) {
        if (bytes[b] < 0 || bytes[b] >= vocab) goto bad;
        c->bytes[b] = bytes[b];
    }
    for (int64_t r = 0; r < n_merges; r++) {
        const int32_t *m = merges + 3 * r;
        if (m[0] < 0 || m[0] >= vocab || m[1] < 0 || m[1] >= vocab || m[2] < 0 || m[2] >= vocab) goto bad;
        uint64_t key = pair_key(m[0], m[1]), i = slot_of(key, c->shift);
        while (c->merges[i].key != 0 && c->merges[i].key != key) i = (i + 1) & c->mask;
        c->merges[i] = (merge_slot){key, (int32_t)r, m[2]};
    }
    memcpy(c->table, table, (size_t)vocab * k * sizeof *table);
    memcpy(c->offset, offset, k * sizeof *offset);
    return c;
bad:
    beast_embed_free(c);
    return NULL;
}

static int32_t char_id(const config *c, uint32_t cp) {
    if (cp <= 0xFFFF) return c->bmp[cp];
    int32_t lo = 0, hi = c->n_astral - 1;
    while (lo <= hi) {
        int32_t mid = (lo + hi) / 2;
        if (c->astral[mid] == cp) return c->astral_id[mid];
        if (c->astral[mid] < cp) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

typedef struct {
    int32_t rank, pos, merged;
} entry;

static int before(entry a, entry b) { return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos; }

static void push(entry *heap, int64_t *n, entry e) {
    int64_t i = (*n)++;
    while (i > 0 && before(e, heap[(i - 1) / 2])) {
        heap[i] = heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    heap[i] = e;
}

static entry pop(entry *heap, int64_t *n) {
    entry top = heap[0], last = heap[--(*n)];
    int64_t i = 0;
    for (;;) {
        int64_t l = 2 * i + 1, m = i;
        entry best = last;
        if (l < *n && before(heap[l], best)) m = l, best = heap[l];
        if (l + 1 < *n && before(heap[l + 1], best)) m = l + 1;
        if (m == i) break;
        heap[i] = heap[m];
        i = m;
    }
    if (*n > 0) heap[i] = last;
    return top;
}

typedef struct {
    int32_t *id, *prev, *next;
    entry *heap;
} scratch;

static void push_pair(const config *c, const scratch *s, int64_t *n_heap, int32_t pos) {
    const merge_slot *m = find_merge(c, s->id[pos], s->id[s->next[pos]]);
    if (m != NULL) push(s->heap, n_heap, (entry){m->rank, pos, m->merged});
}

/* Merge until no adjacent pair merges, always the pair of lowest rank, the leftmost among equals (position
 * order is the symbols' order: a symbol only absorbs its right neighbour). Two ways to the same merges: */

/* a min-heap of (rank, position) whose stale entries are skipped, as the tokenizers crate does: O(n log n) */
static void merge_by_heap(const config *c, const scratch *s, int64_t n_sym) {
    int64_t n_heap = 0;
    for (int64_t i = 0; i + 1 < n_sym; i++) push_pair(c, s, &n_heap, (int32_t)i);
    while (n_heap > 0) {
        entry top = pop(s->heap, &n_heap);
        int32_t at = top.pos, right = s->next[at];
        if (s->id[at] < 0 || right < 0) continue; /* merged into its left neighbour, or the last symbol */
        const merge_slot *m = find_merge(c, s->id[at], s->id[right]);
        if (m == NULL || m->merged != top.merged) continue; /* a stale entry */
        s->id[at] = top.merged;
        s->id[right] = -1;
        s->next[at] = s->next[right];
        if (s->next[right] >= 0) s->prev[s->next[right]] = at;
        if (s->prev[at] >= 0) push_pair(c, s, &n_heap, s->prev[at]);
        if (s->next[at] >= 0) push_pair(c, s, &n_heap, at);
    }
}

/* for a short piece (most words): each live pair's rank kept per position, the lowest found by a scan, and
 * only the merged symbol's two pairs looked up again: O(n^2) but no heap and no stale entries to re-check.
 * A pair at a position changes only by growing (its span gets longer), so a rank kept there is never stale. */
#define SCAN_SYMBOLS 32
static void set_pair(const config *c, const scratch *s, int32_t at, int32_t *rank, int32_t *merged) {
    const merge_slot *m = s->next[at] < 0 ? NULL : find_merge(c, s->id[at], s->id[s->next[at]]);
    rank[at] = m == NULL ? INT32_MAX : m->rank;
    merged[at] = m == NULL ? -1 : m->merged;
}

static void merge_by_scan(const config *c, const scratch *s, int64_t n_sym) {
    int32_t rank[SCAN_SYMBOLS], merged[SCAN_SYMBOLS];
    for (int32_t i = 0; i < n_sym; i++) set_pair(c, s, i, rank, merged);
    for (;;) {
        int32_t at = -1, lowest = INT32_MAX;
        for (int32_t i = 0; i >= 0; i = s->next[i]) /* symbol 0 is always live: it is never absorbed */
            if (rank[i] < lowest) lowest = rank[i], at = i;
        if (at < 0) return;
        int32_t right = s->next[at];
        s->id[at] = merged[at];
        s->id[right] = -1;
        s->next[at] = s->next[right];
        if (s->next[right] >= 0) s->prev[s->next[right]] = at;
        set_pair(c, s, at, rank, merged);
        if (s->prev[at] >= 0) set_pair(c, s, s->prev[at], rank, merged);
    }
}

/* the ids of one piece (code points p[0..n)) appended at out; returns how many */
static int64_t bpe(const config *c, const uint32_t *p, int64_t n, const scratch *s, int32_t *out) {
    int64_t n_sym = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t id = char_id(c, p[i]);
        if (id >= 0) {
            s->id[n_sym++] = id;
            continue;
        }
        uint32_t cp = p[i];
        int len = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4; /* UTF-8 */
        unsigned char u[4];
        static const unsigned char lead[5] = {0, 0x00, 0xC0, 0xE0, 0xF0};
        for (int b = len - 1; b > 0; b--, cp >>= 6) u[b] = 0x80 | (cp & 0x3F);
        u[0] = lead[len] | cp;
        for (int b = 0; b < len; b++) s->id[n_sym++] = c->bytes[u[b]];
    }
    for (int64_t i = 0; i < n_sym; i++) {
        s->prev[i] = (int32_t)i - 1;
        s->next[i] = i + 1 < n_sym ? (int32_t)i + 1 : -1;
    }
    if (n_sym <= SCAN_SYMBOLS) merge_by_scan(c, s, n_sym);
    else merge_by_heap(c, s, n_sym);
    int64_t n_out = 0;
    for (int64_t i = 0; i < n_sym; i++)
        if (s->id[i] >= 0) out[n_out++] = s->id[i];
    return n_out;
}

static uint64_t piece_hash(const uint32_t *p, int64_t n) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a over the code points, never 0 */
    for (int64_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h | 1;
}

/* bpe() through the memo when `memo` (the caller holds it) */
static int64_t piece_ids(const config *c, const uint32_t *p, int64_t n, const scratch *s, int32_t *out, int memo) {
    if (!memo || n > MEMO_CHARS) return bpe(c, p, n, s, out);
    uint64_t h = piece_hash(p, n);
    memo_slot *m = &c->memo[h & (MEMO_SLOTS - 1)];
    if (m->hash == h && m->n_chars == n && memcmp(m->chars, p, n * sizeof *p) == 0) {
        memcpy(out, m->ids, m->n_ids * sizeof *out);
        return m->n_ids;
    }
    int64_t n_ids = bpe(c, p, n, s, out);
    if (n_ids <= MEMO_CHARS) {
        m->hash = h;
        m->n_chars = (int32_t)n;
        m->n_ids = (int32_t)n_ids;
        memcpy(m->chars, p, n * sizeof *p);
        memcpy(m->ids, out, n_ids * sizeof *out);
    }
    return n_ids;
}

/* Buffers for texts of up to `room` code points: the normalised text, the symbols, the heap, the ids and the
 * sums (one allocation per call, shared by every text of a batch). */
typedef struct {
    uint32_t *norm;
    scratch s;
    int32_t *ids;
    double *sum;
} buffers;

static void free_buffers(buffers *b) {
    free(b->norm);
    free(b->s.id);
    free(b->s.prev);
    free(b->s.next);
    free(b->s.heap);
    free(b->ids);
    free(b->sum);
}

static int make_buffers(buffers *b, int64_t room, int32_t k) {
    int64_t sym = 4 * (room + 1);
    *b = (buffers){malloc((room + 1) * sizeof *b->norm),
                   {malloc(sym * sizeof *b->s.id), malloc(sym * sizeof *b->s.prev), malloc(sym * sizeof *b->s.next),
                    malloc(3 * sym * sizeof *b->s.heap)},
                   malloc(sym * sizeof *b->ids), calloc(k + 1, sizeof *b->sum)};
    if (b->norm && b->s.id && b->s.prev && b->s.next && b->s.heap && b->ids && b->sum) return 0;
    free_buffers(b);
    return -1;
}

/* ids of a well-formed text (n code points <= the buffers' room) into b->ids; returns their count */
static int64_t text_ids(config *c, const uint32_t *text, int64_t n, const buffers *b) {
    if (n == 0) return 0;
    int memo = !__atomic_test_and_set(&c->busy, __ATOMIC_ACQUIRE);
    uint32_t *norm = b->norm;
    norm[0] = MARKER;
    for (int64_t i = 0; i < n; i++) norm[i + 1] = text[i] == ' ' ? MARKER : text[i];
    int64_t n_out = 0;
    for (int64_t a = 0, len = n + 1; a < len;) {
        int64_t e = a;
        while (e < len && norm[e] == MARKER) e++;
        while (e < len && norm[e] != MARKER) e++;
        n_out += piece_ids(c, norm + a, e - a, &b->s, b->ids + n_out, memo);
        a = e;
    }
    if (memo) __atomic_clear(&c->busy, __ATOMIC_RELEASE);
    return n_out;
}

/* sum[j] = 0.0 + row(ids[0])[j] + row(ids[1])[j] + ..., in float64, id order: eight columns at a time in
 * registers, two per vector (the same conversions and additions, element by element, as one column at a time
 * with sum[j] in memory; the batch call on AlpacaEval windows, memo warm: 3.25 -> 3.0 us a window), the rest one
 * by one */
typedef float floats2 __attribute__((vector_size(8)));
typedef double doubles2 __attribute__((vector_size(16)));

static void pool(const float *table, int32_t k, const int32_t *ids, int64_t n_ids, double *sum) {
    int32_t j = 0;
    for (; j + 8 <= k; j += 8) {
        doubles2 s0 = {0.0, 0.0}, s1 = s0, s2 = s0, s3 = s0;
        for (int64_t i = 0; i < n_ids; i++) {
            const float *row = table + (size_t)ids[i] * k + j;
            floats2 r0, r1, r2, r3;
            memcpy(&r0, row, 8), memcpy(&r1, row + 2, 8), memcpy(&r2, row + 4, 8), memcpy(&r3, row + 6, 8);
            s0 += __builtin_convertvector(r0, doubles2), s1 += __builtin_convertvector(r1, doubles2);
            s2 += __builtin_convertvector(r2, doubles2), s3 += __builtin_convertvector(r3, doubles2);
        }
        memcpy(sum + j, &s0, 16), memcpy(sum + j + 2, &s1, 16), memcpy(sum + j + 4, &s2, 16), memcpy(sum + j + 6, &s3, 16);
    }
    for (; j < k; j++) {
        double s = 0.0;
        for (int64_t i = 0; i < n_ids; i++) s += (double)table[(size_t)ids[i] * k + j];
        sum[j] = s;
    }
}

/* the k float32 features of a well-formed text (n code points <= the buffers' room) into out */
static void text_vector(config *c, const uint32_t *text, int64_t n, const buffers *b, float *out) {
    int64_t n_ids = text_ids(c, text, n, b);
    double *sum = b->sum;
    pool(c->table, c->k, b->ids, n_ids, sum);
    for (int32_t j = 0; j < c->k; j++)
        out[j] = n_ids == 0 ? (float)-c->offset[j] : (float)(sum[j] / (double)n_ids - c->offset[j]);
}

/* ids of a well-formed text (n code points) into out (room for 4 n + 4); returns their count, -1 without memory */
int64_t beast_embed_ids(const void *cfg, const uint32_t *text, int64_t n, int32_t *out) {
    config *c = (config *)cfg;
    buffers b;
    if (make_buffers(&b, n, c->k) != 0) return -1;
    int64_t n_ids = text_ids(c, text, n, &b);
    memcpy(out, b.ids, n_ids * sizeof *out);
    free_buffers(&b);
    return n_ids;
}

/* beast_embed_vector of n_texts texts joined (text i ends at ends[i]) into out (n_texts x k); 0, or -1 */
int beast_embed_vectors(const void *cfg, const uint32_t *texts, const int64_t *ends, int64_t n_texts, float *out) {
    config *c = (config *)cfg;
    int64_t room = 0;
    for (int64_t i = 0, start = 0; i < n_texts; start = ends[i], i++)
        if (ends[i] - start > room) room = ends[i] - start;
    buffers b;
    if (make_buffers(&b, room, c->k) != 0) return -1;
    for (int64_t i = 0, start = 0; i < n_texts; start = ends[i], i++)
        text_vector(c, texts + start, ends[i] - start, &b, out + i * c->k);
    free_buffers(&b);
    return 0;
}

/* the k float32 features of a well-formed text; 0, or -1 without memory */
int beast_embed_vector(const void *cfg, const uint32_t *text, int64_t n, float *out) {
    return beast_embed_vectors(cfg, text, &n, 1, out);
}
