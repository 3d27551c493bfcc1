/* The prompt features of a window in C: `features.prompt`'s regex counts and formulas, one pass each.
 *
 * Why: the Python counts cost ~60 us a request (p99 ~220 us), a quarter of a routing decision; here they cost
 * about a microsecond. Every count below is the one of `features.prompt.PATTERNS` under Python `re`'s
 * left-to-right, leftmost-first, non-overlapping matching, written out over code points: the window's and its
 * lowercased form's (Python's `str.lower`, which may change the length: the lowered patterns read that one).
 * Where a pattern could backtrack, the comment says why no backtracking can change its match. The rows equal
 * `prompt_vector`'s float64 bit for bit (tests/features: every sample prompt, hostile and edge cases, random
 * texts over the patterns' own characters).
 *
 * What is not restated here: the word lists and which code points each one-character class holds come from
 * Python at load (`beast_prompt_config`), read off `features.prompt`'s own definitions; the feature names and
 * their order are checked against `PROMPT_FEATURES` there (`beast_prompt_names`).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* word lists (index = LIST_*) */
enum { LIST_WH, LIST_VERBS, LIST_MATH, LIST_LATEX, LIST_KEYWORDS, LIST_ROLES, LIST_PLEASE, N_LISTS };
#define MAX_WORDS 128
#define MAX_WORD 31
typedef struct {
    int n;
    unsigned char len[MAX_WORDS];
    char word[MAX_WORDS][MAX_WORD + 1];
    /* the indices of the words of each length, in list order: by_len[first[m] .. first[m + 1]) have length m
     * (a whole-word lookup compares only those; a scan of the whole list was a third of the kernel's time) */
    unsigned char first[MAX_WORD + 2];
    unsigned char by_len[MAX_WORDS];
} word_list;

/* one-character classes (bit = C_*: `features.prompt_kernel.CLASSES`) of every BMP code point and of every
 * astral one (they all share one set: tested) */
enum {
    C_WORD = 0, C_NEWLINE = 1, C_CODE_SYMBOL = 2, C_DIGIT = 3, C_NON_ASCII = 4, C_LATIN = 5, C_CJK = 6,
    C_CYRILLIC = 7, C_ARABIC = 8, C_UPPER = 9, C_LETTER = 10, N_CLASSES = 11
};

/* what Python tells the kernel (`beast_prompt_config`); the entry points make it this thread's `cf` */
typedef struct {
    word_list lists[N_LISTS];
    uint16_t bmp[65536];
    uint16_t astral;
    uint64_t spread[256]; /* spread[b]: bit k of b in byte k */
} config;
static __thread const config *cf;

typedef uint32_t ch; /* a code point (UTF-32) */

#define NF 28
static const char names[] =
    "chars words tokens_est lines has_code code_tokens code_ratio code_symbol_ratio digit_ratio math list_items "
    "question q_what q_how q_why q_who q_when q_where q_which q_other imperative non_ascii_ratio latin_ratio "
    "cjk_ratio cyrillic_ratio arabic_ratio upper_ratio turns";
enum { F_Q_WHAT = 12, N_WH = 7 }; /* q_what .. q_which: the wh list's order (its length is checked) */

const char *beast_prompt_names(void) { return names; }

/* words: N_LISTS strings of space-separated ASCII words; table: 65,536 class bit sets; astral_bits: the set of
 * every code point above. A new configuration (free it with beast_prompt_free), else NULL (no memory, a list
 * too long, or not N_WH wh-words). */
void *beast_prompt_config(const char *const *words, const uint16_t *table, uint16_t astral_bits) {
    config *c = calloc(1, sizeof *c);
    if (c == NULL) return NULL;
    for (int k = 0; k < N_LISTS; k++) {
        word_list *l = &c->lists[k];
        const char *s = words[k];
        while (*s) {
            while (*s == ' ') s++;
            const char *e = s;
            while (*e && *e != ' ') e++;
            if (e > s) {
                if (l->n >= MAX_WORDS || e - s > MAX_WORD) {
                    free(c);
                    return NULL;
                }
                memcpy(l->word[l->n], s, (size_t)(e - s));
                l->len[l->n++] = (unsigned char)(e - s);
            }
            s = e;
        }
    }
    for (int k = 0; k < N_LISTS; k++) {
        word_list *l = &c->lists[k];
        int at = 0;
        for (int m = 0; m <= MAX_WORD; m++) {
            l->first[m] = (unsigned char)at;
            for (int i = 0; i < l->n; i++)
                if (l->len[i] == m) l->by_len[at++] = (unsigned char)i;
        }
        l->first[MAX_WORD + 1] = (unsigned char)at;
    }
    if (c->lists[LIST_WH].n != N_WH) {
        free(c);
        return NULL;
    }
    memcpy(c->bmp, table, sizeof c->bmp);
    c->astral = astral_bits;
    for (int b = 0; b < 256; b++)
        for (int k = 0; k < 8; k++) c->spread[b] |= (uint64_t)((b >> k) & 1) << (8 * k);
    return c;
}

void beast_prompt_free(void *c) { free(c); }

static inline uint16_t bits(ch c) { return c < 65536 ? cf->bmp[c] : cf->astral; }
static inline int az(ch c) { return c >= 'a' && c <= 'z'; }
static inline int digit(ch c) { return c >= '0' && c <= '9'; }
static inline int blank(ch c) { return c == ' ' || c == '\t'; }
static inline int ident_start(ch c) { return (c >= 'A' && c <= 'Z') || az(c) || c == '_'; }
static inline int ident(ch c) { return ident_start(c) || digit(c); }
static inline int alnum(ch c) { return (c >= 'A' && c <= 'Z') || az(c) || digit(c); }

/* index of the word of list k equal to s[a:b], else -1 */
static int find_word(int k, const ch *s, int64_t a, int64_t b) {
    const word_list *l = &cf->lists[k];
    int64_t len = b - a;
    if (len > MAX_WORD) return -1;
    for (int at = l->first[len]; at < l->first[len + 1]; at++) {
        int i = l->by_len[at];
        int64_t j = 0;
        while (j < len && s[a + j] == (unsigned char)l->word[i][j]) j++;
        if (j == len) return i;
    }
    return -1;
}

/* end of the first word of list k that s holds at p, else -1 */
static int64_t word_at(int k, const ch *s, int64_t n, int64_t p) {
    const word_list *l = &cf->lists[k];
    for (int i = 0; i < l->n; i++) {
        int64_t len = l->len[i], j = 0;
        if (p + len > n) continue;
        while (j < len && s[p + j] == (unsigned char)l->word[i][j]) j++;
        if (j == len) return p + len;
    }
    return -1;
}

static inline int64_t skip_blanks(const ch *s, int64_t n, int64_t q) {
    while (q < n && blank(s[q])) q++;
    return q;
}

static inline int64_t run_end(const ch *s, int64_t n, int64_t q) { /* end of the [a-z] run at q */
    while (q < n && az(s[q])) q++;
    return q;
}

/* `(?:^|\n)[ \t]*` then `rest` at q (q: just after the "^" or the "\n"). The blanks are greedy and `rest` never
 * starts with a blank, so giving blanks back cannot help. */
typedef int64_t (*line_rest)(const ch *, int64_t, int64_t);

static inline int64_t line_start_match(const ch *s, int64_t n, int64_t p, line_rest rest) {
    if (p == 0) { /* "^" is tried first; then, when the text starts with "\n", the "\n" branch */
        int64_t e = rest(s, n, skip_blanks(s, n, 0));
        if (e >= 0) return e;
    }
    if (p < n && s[p] == '\n') return rest(s, n, skip_blanks(s, n, p + 1));
    return -1;
}

/* code_token's keyword line: keyword then [ \t(] (no keyword is a prefix of another: one can match) */
static int64_t keyword_rest(const ch *s, int64_t n, int64_t q) {
    int64_t e = word_at(LIST_KEYWORDS, s, n, q);
    if (e < 0) return -1;
    return (e < n && (blank(s[e]) || s[e] == '(')) ? e + 1 : -1;
}

/* list_item after its blanks: [-*\u2022] or [0-9]{1,3}[.)] then [ \t]+ (greedy digits; [.)] is no digit) */
static int64_t list_rest(const ch *s, int64_t n, int64_t q) {
    if (q < n && (s[q] == '-' || s[q] == '*' || s[q] == 0x2022)) {
        q++;
    } else {
        int d = 0;
        while (q < n && d < 3 && digit(s[q])) q++, d++;
        if (d == 0 || q >= n || (s[q] != '.' && s[q] != ')')) return -1;
        q++;
    }
    if (q >= n || !blank(s[q])) return -1;
    return skip_blanks(s, n, q);
}

/* turn after its blanks (on lower): a role, [ \t]*, ":" */
static int64_t turn_rest(const ch *s, int64_t n, int64_t q) {
    int64_t e = word_at(LIST_ROLES, s, n, q);
    if (e < 0) return -1;
    e = skip_blanks(s, n, e);
    return (e < n && s[e] == ':') ? e + 1 : -1;
}

static const char two_char_ops[][3] = {"==", "!=", "<=", ">=", "=>", "->", "++", "+=", "&&", "||", "::"};

static inline int op_start(ch c) { /* a first character of two_char_ops: most characters are none */
    switch (c) {
    case '=': case '!': case '<': case '>': case '-': case '+': case '&': case '|': case ':': return 1;
    default: return 0;
    }
}

/* end of code_token's match at p, else -1; its alternatives in the pattern's order */
static int64_t code_token_at(const ch *s, int64_t n, int64_t p) {
    ch c = s[p];
    if (ident_start(c)) { /* [A-Za-z_][A-Za-z0-9_]{0,63}\([^()\n]*\): "(" and ")" end the greedy runs */
        int64_t q = p + 1, limit = p + 64;
        while (q < n && q < limit && ident(s[q])) q++;
        if (q < n && s[q] == '(') {
            int64_t r = q + 1;
            while (r < n && s[r] != '(' && s[r] != ')' && s[r] != '\n') r++;
            if (r < n && s[r] == ')') return r + 1;
        }
    }
    if (c == '{' || c == '}' || c == ';') return p + 1;
    if (op_start(c) && p + 1 < n)
        for (size_t i = 0; i < sizeof two_char_ops / sizeof two_char_ops[0]; i++)
            if (c == (ch)two_char_ops[i][0] && s[p + 1] == (ch)two_char_ops[i][1]) return p + 2;
    if (c == '<' && p + 2 < n && s[p + 1] == '/' && alnum(s[p + 2]) && !digit(s[p + 2])) {
        int64_t q = p + 3; /* </[A-Za-z][A-Za-z0-9]*> */
        while (q < n && alnum(s[q])) q++;
        if (q < n && s[q] == '>') return q + 1;
    }
    if (c == '#' && p + 8 <= n) {
        static const char include[] = "#include";
        int j = 1;
        while (j < 8 && s[p + j] == (ch)include[j]) j++;
        if (j == 8) return p + 8;
    }
    return line_start_match(s, n, p, keyword_rest);
}

typedef int64_t (*match_at)(const ch *, int64_t, int64_t);

static int64_t count_matches(const ch *s, int64_t n, match_at at) {
    int64_t count = 0, p = 0;
    while (p < n) {
        int64_t e = at(s, n, p);
        if (e > p) {
            count++;
            p = e;
        } else {
            p++;
        }
    }
    return count;
}

static int64_t list_item_at(const ch *s, int64_t n, int64_t p) { return line_start_match(s, n, p, list_rest); }
static int64_t turn_at(const ch *s, int64_t n, int64_t p) { return line_start_match(s, n, p, turn_rest); }

/* the first maximal [a-z] run of s that is a word of list k: its index, else -1 */
static int first_word(int k, const ch *s, int64_t n) {
    for (int64_t i = 0; i < n;) {
        if (!az(s[i])) {
            i++;
            continue;
        }
        int64_t r = run_end(s, n, i);
        int w = find_word(k, s, i, r);
        if (w >= 0) return w;
        i = r;
    }
    return -1;
}

static inline int math_operator(ch c) { return c == '+' || c == '*' || c == '^' || c == '=' || c == 0xD7 || c == 0xF7; }

/* math (on lower): an operator between operands, a LaTeX command, or a maximal [a-z] run that is a math word */
static int math_flag(const ch *s, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        ch c = s[i];
        if (c == '\\' && word_at(LIST_LATEX, s, n, i + 1) >= 0) return 1;
        if (az(c) || digit(c) || c == ')') { /* [ \t]* are greedy and no operator is a blank */
            int64_t j = skip_blanks(s, n, i + 1);
            if (j < n && math_operator(s[j])) {
                int64_t k = skip_blanks(s, n, j + 1);
                if (k < n && (az(s[k]) || digit(s[k]) || s[k] == '(')) return 1;
            }
        }
    }
    return first_word(LIST_MATH, s, n) >= 0;
}

/* the window's start after _LEAD's characters (on lower) */
static int64_t after_lead(const ch *s, int64_t n) {
    static const char lead[] = " \t\n\r\"'([*#>_-";
    int64_t q = 0;
    while (q < n && s[q] != 0 && s[q] < 128 && memchr(lead, (int)s[q], sizeof lead - 1) != NULL) q++;
    return q;
}

/* imperative: the first [a-z] run after the lead is a verb, or is "please", then [ \t,]+ and a verb */
static int imperative_flag(const ch *s, int64_t n) {
    int64_t q = after_lead(s, n), e = run_end(s, n, q);
    if (e - q == 6 && word_at(LIST_PLEASE, s, n, q) == e) {
        int64_t r = e;
        while (r < n && (blank(s[r]) || s[r] == ',')) r++;
        if (r > e && find_word(LIST_VERBS, s, r, run_end(s, n, r)) >= 0) return 1;
    }
    return e > q && find_word(LIST_VERBS, s, q, e) >= 0;
}

static int fence_at(const ch *s, int64_t n, int64_t i) { return i + 3 <= n && s[i] == '`' && s[i + 1] == '`' && s[i + 2] == '`'; }

/* the features of a window s[0:n] whose lowercased form is low[0:m] and whose whole prompt has `chars` code
 * points (capped), into out[NF] in `beast_prompt_names` order */
static void row(const ch *s, int64_t n, const ch *low, int64_t m, double chars, double *out) {
    /* class counts: each character's bits spread one per byte (classes 0-7, 8-10) and summed in byte lanes,
     * emptied into cls every 255 characters (a lane holds 255) */
    int64_t cls[N_CLASSES] = {0}, words = 0;
    uint64_t low_lanes = 0, high_lanes = 0;
    int prev_word = 0;
    for (int64_t i = 0; i < n; i++) {
        uint16_t b = bits(s[i]);
        low_lanes += cf->spread[b & 0xFF];
        high_lanes += cf->spread[b >> 8];
        int in_word = (b >> C_WORD) & 1;
        words += in_word && !prev_word;
        prev_word = in_word;
        if (i % 255 == 254 || i == n - 1) {
            for (int k = 0; k < N_CLASSES; k++) cls[k] += ((k < 8 ? low_lanes >> (8 * k) : high_lanes >> (8 * (k - 8)))) & 0xFF;
            low_lanes = high_lanes = 0;
        }
    }
    /* ``` fences: a block runs from one to the next (lazily), an unclosed one to the end */
    int fence = 0;
    int64_t inside = 0;
    for (int64_t i = 0; i + 3 <= n;) {
        if (!fence_at(s, n, i)) {
            i++;
            continue;
        }
        fence = 1;
        int64_t j = i + 3;
        while (j + 3 <= n && !fence_at(s, n, j)) j++;
        int64_t end = (j + 3 <= n) ? j + 3 : n;
        inside += end - i;
        i = end;
    }
    int64_t code = count_matches(s, n, code_token_at);
    int64_t list_items = count_matches(s, n, list_item_at);
    int64_t turns = count_matches(low, m, turn_at);
    /* question_end: "?" followed by [ \t\n\r]* to the end (`$` before a final "\n" is the same set) */
    int64_t t = n;
    while (t > 0 && (blank(s[t - 1]) || s[t - 1] == '\n' || s[t - 1] == '\r')) t--;
    int question_end = t > 0 && (s[t - 1] == '?' || s[t - 1] == 0xFF1F);
    int64_t q = after_lead(low, m), e = run_end(low, m, q);
    int wh_start = e > q && find_word(LIST_WH, low, q, e) >= 0;
    int wh = first_word(LIST_WH, low, m);
    double wchars = (double)n;
#define RATIO(num, den) ((den) > 0 ? (double)(num) / (double)(den) : 0.0)
    out[0] = chars;
    out[1] = (double)words;
    out[2] = ceil(chars / 4.0);
    out[3] = (double)cls[C_NEWLINE] + 1.0;
    out[4] = (fence || code >= 3) ? 1.0 : 0.0;
    out[5] = (double)code;
    out[6] = RATIO(wchars - (double)(n - inside), wchars);
    out[7] = RATIO(cls[C_CODE_SYMBOL], wchars);
    out[8] = RATIO(cls[C_DIGIT], wchars);
    out[9] = math_flag(low, m) ? 1.0 : 0.0;
    out[10] = (double)list_items;
    out[11] = (question_end || wh_start) ? 1.0 : 0.0;
    for (int k = 0; k < N_WH; k++) out[F_Q_WHAT + k] = (wh == k) ? 1.0 : 0.0;
    out[19] = wh < 0 ? 1.0 : 0.0;
    out[20] = imperative_flag(low, m) ? 1.0 : 0.0;
    out[21] = RATIO(cls[C_NON_ASCII], wchars);
    out[22] = RATIO(cls[C_LATIN], wchars);
    out[23] = RATIO(cls[C_CJK], wchars);
    out[24] = RATIO(cls[C_CYRILLIC], wchars);
    out[25] = RATIO(cls[C_ARABIC], wchars);
    out[26] = RATIO(cls[C_UPPER], cls[C_LETTER]);
    out[27] = (double)turns + 1.0;
#undef RATIO
}

/* rows of n windows (window i: texts[text_ends[i-1]:text_ends[i]], lowercased: lowers[lower_ends[i-1]:...])
 * into out (n x NF) with configuration c; NF */
int64_t beast_prompt_rows(const void *c, const ch *texts, const int64_t *text_ends, const ch *lowers,
                          const int64_t *lower_ends, int64_t n, const double *chars, double *out) {
    cf = c;
    int64_t a = 0, b = 0;
    for (int64_t i = 0; i < n; i++) {
        row(texts + a, text_ends[i] - a, lowers + b, lower_ends[i] - b, chars[i], out + i * NF);
        a = text_ends[i];
        b = lower_ends[i];
    }
    return NF;
}

/* one window's row (the router's per-request call: no offsets to build); NF */
int64_t beast_prompt_row(const void *c, const ch *text, int64_t n, const ch *lower, int64_t m, double chars, double *out) {
    cf = c;
    row(text, n, lower, m, chars, out);
    return NF;
}
