/* int8 linear layers for the CPU play path (engine/build.py compiles it with the other kernels).
 *
 * y = x W^T + b, then optionally SiLU, then optionally + residual, with W quantised once per output
 * channel to int8 (symmetric, 127 levels each side) and x quantised per row, at every call, to 7
 * bits (63 levels each side). Per-row activation scales make every row independent of the others:
 * a batch of rollouts gives exactly the numbers of single rollouts, with no per-item calls. The
 * threads share the output columns, and quantisation, dequantisation, bias, SiLU and the residual
 * are one pass each (docs/performance.md compares this with fbgemm's int8 linear).
 *
 * The product uses AVX2's u8 x s8 pair multiply (vpmaddubsw) and widens pairs to int32 (vpmaddwd):
 * with activations stored as q + 64 in [1, 127] and weights in [-127, 127], a pair sums to at most
 * 2 * 127 * 127 = 32258, so the 16-bit step never saturates. The +64 offset is removed exactly with
 * per-column weight sums. With AVX-512 VNNI the same sums come from vpdpbusd, and with AMX (where
 * Linux grants it) from tile products for blocks of 32 rows: all three give identical int32 sums,
 * so the outputs differ between them only where the vector width changes float rounding elsewhere.
 * Without AVX2 the library reports gp_linear_isa() == 0 and the caller uses another path.
 */
#include <stdint.h>

#include "play_vec.h"

#if defined(__AVX2__)
#include <immintrin.h>
#define GP_HAVE_AVX2 1
#else
#define GP_HAVE_AVX2 0
#endif
/* AVX-512 VNNI (Ice Lake / Sapphire Rapids, Zen 4 and later): one vpdpbusd adds 64 u8 x s8 products,
 * four at a time, into 16 int32 lanes without the 16-bit step: AVX2's sums in a quarter of the instructions. */
#if defined(__AVX512VNNI__) && defined(__AVX512F__) && defined(__AVX512BW__)
#define GP_HAVE_VNNI512 1
#else
#define GP_HAVE_VNNI512 0
#endif
/* AMX (Sapphire Rapids and later): one tdpbusd multiplies a 16 x 64 u8 tile by a 64 x 16 s8 tile into
 * 16 x 16 int32 sums (16 vpdpbusd); the packed weights (4 inputs x 16 columns per 64 bytes) are already its
 * B-tile layout. Linux hands out the tile registers only on request (gp_linear_use_amx). */
#if GP_HAVE_VNNI512 && defined(__AMX_TILE__) && defined(__AMX_INT8__) && defined(__linux__)
#define GP_HAVE_AMX 1
#include <sys/syscall.h>
#include <unistd.h>
#else
#define GP_HAVE_AMX 0
#endif
static int amx_ready = 0;

#define COLS 16 /* output columns per packed block: two registers of eight int32 sums */
#define ROWS 4  /* rows per register block */
#define ACT_LEVELS 63.0f
#define ACT_OFFSET 64

#define GP_HAVE_PRODUCT (GP_HAVE_AVX2 || GP_HAVE_VNNI512)

/* The int8 product compiled in: 2 = AVX-512 VNNI, 1 = AVX2, 0 = none (the plan names it). */
int gp_linear_isa(void) { return GP_HAVE_VNNI512 ? 2 : GP_HAVE_PRODUCT; }

/* Run products with k % 64 == 0 and n % 32 == 0 on AMX from now on (their 32-row blocks), or not
 * (on = 0: VNNI only, for comparisons). The first time, asks Linux for the AMX tile state (arch_prctl
 * ARCH_REQ_XCOMP_PERM, XTILEDATA) for this process. Returns whether AMX is now used: 0 where it is
 * not compiled in or the kernel refuses. */
int gp_linear_use_amx(int on) {
#if GP_HAVE_AMX
    static int permitted = -1;
    if (on && permitted < 0) permitted = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
    amx_ready = on && permitted > 0;
#else
    (void)on;
#endif
    return amx_ready;
}

typedef uint8_t vu8 __attribute__((vector_size(LANES)));

/* Quantise row x (k, a multiple of LANES) to q + 64 (u8, 1..127), q = round(x * 63 / amax);
 * returns the row's scale amax / 63 (0 for a zero row, NaN for a row with inf or NaN, which then
 * gives NaN outputs as a float product would). */
static float quantise_row(const float *x, int k, uint8_t *out) {
    vf m = (vf){0};
    vi bad = (vi){0};
    for (int i = 0; i < k; i += LANES) {
        const vf v = load_vf(x + i), a = (vf)((vi)v & 0x7fffffff); /* |v| */
        bad |= ~(a <= 3.4028235e38f);                               /* inf or NaN */
        m = max_lanes(a, m);
    }
    int lanes[LANES], any_bad = 0;
    memcpy(lanes, &bad, sizeof lanes);
    for (int i = 0; i < LANES; i++) any_bad |= lanes[i];
    const float amax = hmax(m);
    if (any_bad || amax == 0.0f) {
        memset(out, ACT_OFFSET, (size_t)k);
        return any_bad ? NAN : 0.0f;
    }
    const float inv = ACT_LEVELS / amax;
    const vf magic = (vf){0} + 12582912.0f; /* 1.5 * 2^23: adding it rounds to nearest, ties to even */
    for (int i = 0; i < k; i += LANES) {
        const vf r = (load_vf(x + i) * inv + magic) - magic;
        const vu8 q = __builtin_convertvector(__builtin_convertvector(r, vi) + ACT_OFFSET, vu8);
        memcpy(out + i, &q, sizeof q);
    }
    return amax / ACT_LEVELS;
}

/* SiLU lane by lane, x * sigmoid(x), from e = exp(-|x|) <= 1 so that nothing overflows. */
static inline vf silu_lanes(vf x) {
    const vf e = exp_lanes((vf)((vi)x | (-0x7fffffff - 1))); /* exp(-|x|): the sign bit set */
    const vi positive = x >= 0.0f;
    const vf numerator = (vf)(((vi)x & positive) | ((vi)(x * e) & ~positive));
    return numerator / (1.0f + e);
}

/* Dequantise acc (rows x COLS int32 sums of block columns col..col+COLS, row r at acc + r * stride)
 * into y rows r0.., with bias, SiLU and residual: the epilogue shared by every product. */
static inline void finish_block(const int32_t *acc, int stride, int rows, int r0, long col, const float *a_scale,
                                const gp_int8 *w, int act, const float *residual, float *y) {
    for (int r = 0; r < rows; r++) {
        const long row = r0 + r;
        for (int c = 0; c < COLS; c += LANES) {
            const long at = row * w->n + col + c;
            vi sums, offsets;
            memcpy(&sums, acc + (long)r * stride + c, sizeof sums);
            memcpy(&offsets, w->offsets + col + c, sizeof offsets);
            vf v = __builtin_convertvector(sums - offsets, vf) * (a_scale[row] * load_vf(w->scale + col + c));
            if (w->bias) v += load_vf(w->bias + col + c);
            if (act) v = silu_lanes(v);
            if (residual) v += load_vf(residual + at);
            store_vf(y + at, v);
        }
    }
}

#if GP_HAVE_VNNI512
#define SPAN 4 /* column blocks per register tile: ROWS x SPAN accumulators, SPAN weight loads per group */

/* acc[r][j] (rows x SPAN x COLS int32) = a rows . `span` consecutive packed blocks from wb (stride
 * `block` bytes), rows <= ROWS, span <= SPAN. */
static inline void tile_product(const uint8_t *a, int rows, int span, int k, const int8_t *wb, long block,
                                int32_t acc[ROWS][SPAN][COLS]) {
    __m512i s[ROWS][SPAN];
    for (int r = 0; r < ROWS; r++)
        for (int j = 0; j < SPAN; j++) s[r][j] = _mm512_setzero_si512();
    const int groups = k / 4;
    if (rows == ROWS && span == SPAN) { /* the common case, fully unrolled: 16 dot products per 4 loads and 4 broadcasts */
        for (int g = 0; g < groups; g++) {
            __m512i wv[SPAN];
            for (int j = 0; j < SPAN; j++) wv[j] = _mm512_loadu_si512((const void *)(wb + j * block + (long)g * COLS * 4));
            for (int r = 0; r < ROWS; r++) {
                int32_t four;
                memcpy(&four, a + (long)r * k + 4 * g, 4);
                const __m512i x = _mm512_set1_epi32(four);
                for (int j = 0; j < SPAN; j++) s[r][j] = _mm512_dpbusd_epi32(s[r][j], x, wv[j]);
            }
        }
    } else {
        for (int g = 0; g < groups; g++)
            for (int j = 0; j < span; j++) {
                const __m512i wv = _mm512_loadu_si512((const void *)(wb + j * block + (long)g * COLS * 4));
                for (int r = 0; r < rows; r++) {
                    int32_t four;
                    memcpy(&four, a + (long)r * k + 4 * g, 4);
                    s[r][j] = _mm512_dpbusd_epi32(s[r][j], _mm512_set1_epi32(four), wv);
                }
            }
    }
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < span; j++) _mm512_storeu_si512((void *)acc[r][j], s[r][j]);
}
#elif GP_HAVE_AVX2
#define SPAN 1 /* one column block per tile: its 16 sums in two registers per row */

/* tile_product for one packed block (span 1) on AVX2. */
static void tile_product(const uint8_t *a, int rows, int span, int k, const int8_t *wb, long block, int32_t acc[ROWS][SPAN][COLS]) {
    (void)span, (void)block;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i s[ROWS][2];
    for (int r = 0; r < ROWS; r++) s[r][0] = s[r][1] = _mm256_setzero_si256();
    const int groups = k / 4;
    int g = 0;
    if (rows == ROWS) { /* four groups at a time: 8 weight registers loaded once for 4 rows (~10% faster) */
        for (; g + 4 <= groups; g += 4) {
            __m256i w[8];
            for (int j = 0; j < 8; j++) w[j] = _mm256_loadu_si256((const __m256i *)(wb + g * COLS * 4 + 32 * j));
            for (int r = 0; r < ROWS; r++) {
                __m256i t0 = _mm256_setzero_si256(), t1 = _mm256_setzero_si256();
                for (int j = 0; j < 4; j++) {
                    int32_t four;
                    memcpy(&four, a + (long)r * k + 4 * (g + j), 4);
                    const __m256i x = _mm256_set1_epi32(four);
                    t0 = _mm256_add_epi32(t0, _mm256_madd_epi16(_mm256_maddubs_epi16(x, w[2 * j]), ones));
                    t1 = _mm256_add_epi32(t1, _mm256_madd_epi16(_mm256_maddubs_epi16(x, w[2 * j + 1]), ones));
                }
                s[r][0] = _mm256_add_epi32(s[r][0], t0);
                s[r][1] = _mm256_add_epi32(s[r][1], t1);
            }
        }
    }
    for (; g < groups; g++) { /* the remaining groups, or all of them for a partial block of rows */
        const __m256i w0 = _mm256_loadu_si256((const __m256i *)(wb + g * COLS * 4));
        const __m256i w1 = _mm256_loadu_si256((const __m256i *)(wb + g * COLS * 4 + 32));
        for (int r = 0; r < rows; r++) {
            int32_t four;
            memcpy(&four, a + (long)r * k + 4 * g, 4);
            const __m256i x = _mm256_set1_epi32(four);
            s[r][0] = _mm256_add_epi32(s[r][0], _mm256_madd_epi16(_mm256_maddubs_epi16(x, w0), ones));
            s[r][1] = _mm256_add_epi32(s[r][1], _mm256_madd_epi16(_mm256_maddubs_epi16(x, w1), ones));
        }
    }
    for (int r = 0; r < rows; r++) {
        _mm256_storeu_si256((__m256i *)acc[r][0], s[r][0]);
        _mm256_storeu_si256((__m256i *)(acc[r][0] + 8), s[r][1]);
    }
}
#endif

#if GP_HAVE_PRODUCT
/* gp_gemm's rows first.. on AVX-512 VNNI or AVX2: the team shares tiles of SPAN column blocks. */
static void gemm_tiles(const uint8_t *a, const float *a_scale, int first, int m, const gp_int8 *w, int act, const float *residual,
                       float *y) {
    const int k = w->k, blocks = w->n / COLS, tiles = (blocks + SPAN - 1) / SPAN;
    const long block = (long)(k / 4) * COLS * 4;
#pragma omp for schedule(static)
    for (int t = 0; t < tiles; t++) {
        const int nb = t * SPAN, span = blocks - nb < SPAN ? blocks - nb : SPAN;
        int32_t acc[ROWS][SPAN][COLS];
        for (int r0 = first; r0 < m; r0 += ROWS) {
            const int rows = m - r0 < ROWS ? m - r0 : ROWS;
            tile_product(a + (long)r0 * k, rows, span, k, w->packed + nb * block, block, acc);
            for (int j = 0; j < span; j++)
                finish_block(acc[0][j], SPAN * COLS, rows, r0, (long)(nb + j) * COLS, a_scale, w, act, residual, y);
        }
    }
}
#endif

#if GP_HAVE_AMX
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

/* The first m / 32 * 32 rows of gp_gemm on AMX (k % 64 == 0, n % 32 == 0): the team shares pairs
 * of column blocks; each 32 x 32 output block is four accumulator tiles (tmm0-3) fed by two
 * activation tiles (tmm4-5) and two weight tiles (tmm6-7) per 64 inputs. No barrier at the end:
 * the caller's next loop writes other rows. */
static void gemm_amx(const uint8_t *a, const float *a_scale, int m, const gp_int8 *w, int act, const float *residual, float *y) {
    const int k = w->k, pairs = w->n / (2 * COLS), tall = m / 32 * 32;
    const long block = (long)(k / 4) * COLS * 4;
    tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) cfg.rows[t] = 16, cfg.colsb[t] = 64;
    _tile_loadconfig(&cfg);
#pragma omp for schedule(static) nowait
    for (int p = 0; p < pairs; p++) {
        const int8_t *w0 = w->packed + (long)(2 * p) * block, *w1 = w0 + block;
        int32_t acc[32 * 32];
        for (int r0 = 0; r0 < tall; r0 += 32) {
            const uint8_t *a0 = a + (long)r0 * k, *a1 = a0 + 16L * k;
            _tile_zero(0);
            _tile_zero(1);
            _tile_zero(2);
            _tile_zero(3);
            for (int kk = 0; kk < k; kk += 64) {
                _tile_loadd(4, a0 + kk, k);
                _tile_loadd(5, a1 + kk, k);
                _tile_loadd(6, w0 + (long)kk * COLS, 64); /* 16 groups of 4 inputs x 16 columns */
                _tile_loadd(7, w1 + (long)kk * COLS, 64);
                _tile_dpbusd(0, 4, 6);
                _tile_dpbusd(1, 4, 7);
                _tile_dpbusd(2, 5, 6);
                _tile_dpbusd(3, 5, 7);
            }
            _tile_stored(0, acc, 128); /* acc (32 rows, 32 columns) */
            _tile_stored(1, acc + 16, 128);
            _tile_stored(2, acc + 16 * 32, 128);
            _tile_stored(3, acc + 16 * 32 + 16, 128);
            finish_block(acc, 32, 32, r0, (long)(2 * p) * COLS, a_scale, w, act, residual, y);
            finish_block(acc + 16, 32, 32, r0, (long)(2 * p + 1) * COLS, a_scale, w, act, residual, y);
        }
    }
    _tile_release();
}
#endif

/* a (m, k) u8 and a_scale (m) from the rows of x (m, k); rows shared among the team. */
void gp_quantise_rows(const float *x, int m, int k, uint8_t *a, float *a_scale) {
#pragma omp for schedule(static)
    for (int r = 0; r < m; r++) a_scale[r] = quantise_row(x + (long)r * k, k, a + (long)r * k);
}

/* LayerNorm of the rows of x (m, d) with weight w and bias b (or NULL), quantised straight into a and a_scale
 * (the normalised rows are never stored); d a multiple of LANES, at most 4096. */
void gp_layer_norm_quantise(const float *x, int m, int d, const float *w, const float *b, float eps, uint8_t *a, float *a_scale) {
#pragma omp for schedule(static)
    for (int r = 0; r < m; r++) {
        const float *row = x + (long)r * d;
        float h[4096];
        vf total = (vf){0};
        for (int i = 0; i < d; i += LANES) total += load_vf(row + i);
        const float mean = hsum(total) / (float)d;
        vf squares = (vf){0};
        for (int i = 0; i < d; i += LANES) {
            const vf c = load_vf(row + i) - mean;
            squares += c * c;
        }
        const float inv = 1.0f / sqrtf(hsum(squares) / (float)d + eps);
        for (int i = 0; i < d; i += LANES)
            store_vf(h + i, (load_vf(row + i) - mean) * inv * load_vf(w + i) + (b ? load_vf(b + i) : (vf){0}));
        a_scale[r] = quantise_row(h, d, a + (long)r * d);
    }
}

/* y (m, n) = dequant(a . W^T) + bias, then SiLU if act, then + residual (m, n) if given (residual
 * may be y itself: each element is read before it is written, by the same thread). Column blocks
 * shared among the team. */
void gp_gemm(const uint8_t *a, const float *a_scale, int m, const gp_int8 *w, int act, const float *residual, float *y) {
#if GP_HAVE_PRODUCT
    int first = 0;
#if GP_HAVE_AMX
    if (amx_ready && w->k % 64 == 0 && w->n % (2 * COLS) == 0 && m >= 32) {
        gemm_amx(a, a_scale, m, w, act, residual, y);
        first = m / 32 * 32;
    }
#endif
    gemm_tiles(a, a_scale, first, m, w, act, residual, y);
#else
    (void)a, (void)a_scale, (void)m, (void)w, (void)act, (void)residual, (void)y;
#endif
}

/* y (m, n) = norm?(x) (m, k) W^T + bias on `threads` threads: the rows of x (LayerNorm'd first when
 * norm_w is given, with norm_b or none) quantised into scratch (m * k bytes) and a_scale (m), then
 * the product. k a multiple of LANES and 4, n of COLS. */
void gp_linear(const float *x, int m, const gp_int8 *w, float *y, uint8_t *scratch, float *a_scale, const float *norm_w,
               const float *norm_b, float norm_eps, int threads) {
    (void)threads;
#pragma omp parallel num_threads(threads)
    {
        if (norm_w)
            gp_layer_norm_quantise(x, m, w->k, norm_w, norm_b, norm_eps, scratch, a_scale);
        else
            gp_quantise_rows(x, m, w->k, scratch, a_scale);
        gp_gemm(scratch, a_scale, m, w, 0, NULL, y);
    }
}
