/* int8 linear layers for the CPU play path (play_kernels.py compiles this file with play_kernels.c).
 *
 * y = x W^T + b, then optionally SiLU, then optionally + residual, with W quantised once per output
 * channel to int8 (symmetric, 127 levels each side) and x quantised per row, at every call, to 7
 * bits (63 levels each side). Per-row activation scales make every row independent of the others:
 * a batch of rollouts gives exactly the numbers of single rollouts, with no per-item calls.
 *
 * Why not fbgemm (torch's quantized::linear_dynamic): at the 64-row products of a MaskGIT round it
 * scales poorly to a second thread (1.07x at 256x1024 on a 2-core AVX2 EPYC) and spends part of each
 * call on whole-tensor passes (min/max, quantise, requantise). Here the threads share the output
 * columns, and quantisation, dequantisation, bias, SiLU and the residual are one pass each.
 *
 * The product uses AVX2's u8 x s8 pair multiply (vpmaddubsw) and widens pairs to int32 (vpmaddwd):
 * with activations stored as q + 64 in [1, 127] and weights in [-127, 127], a pair sums to at most
 * 2 * 127 * 127 = 32258, so the 16-bit step never saturates. The +64 offset is removed exactly with
 * per-column weight sums. Without AVX2 the library reports gp_linear_available() == 0 and the
 * caller uses another path.
 */
#include <stdint.h>

#include "play_vec.h"

#if defined(__AVX2__)
#include <immintrin.h>
#define GP_HAVE_AVX2 1
#else
#define GP_HAVE_AVX2 0
#endif

#define COLS 16 /* output columns per packed block: two registers of eight int32 sums */
#define ROWS 4  /* rows per register block */
#define ACT_LEVELS 63.0f
#define ACT_OFFSET 64

int gp_linear_available(void) { return GP_HAVE_AVX2; }

/* Pack int8 weights w (n, k), n a multiple of COLS and k of 4, as blocks of COLS columns: for each
 * group of 4 inputs, COLS x 4 bytes (column-major within the group), i.e. packed[(nb * k/4 + g) *
 * COLS * 4 + c * 4 + j] = w[(nb * COLS + c) * k + 4 g + j]. */
void gp_linear_pack(const int8_t *w, int n, int k, int8_t *packed) {
    const int groups = k / 4;
    for (int nb = 0; nb < n / COLS; nb++)
        for (int g = 0; g < groups; g++)
            for (int c = 0; c < COLS; c++)
                memcpy(packed + ((long)(nb * groups + g) * COLS + c) * 4, w + (long)(nb * COLS + c) * k + 4 * g, 4);
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
        const vi greater = a > m;
        m = (vf)(((vi)a & greater) | ((vi)m & ~greater));
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

#if GP_HAVE_AVX2
/* acc (rows x COLS) int32 = a (rows x k, u8) . packed block (k x COLS), rows <= ROWS. */
static void block_product(const uint8_t *a, int rows, int k, const int8_t *wb, int32_t *acc) {
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
        _mm256_storeu_si256((__m256i *)(acc + r * COLS), s[r][0]);
        _mm256_storeu_si256((__m256i *)(acc + r * COLS + 8), s[r][1]);
    }
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
#if GP_HAVE_AVX2
    const int k = w->k, n = w->n;
#pragma omp for schedule(static)
    for (int nb = 0; nb < n / COLS; nb++) {
        const int8_t *wb = w->packed + (long)nb * (k / 4) * COLS * 4;
        int32_t acc[ROWS * COLS];
        for (int r0 = 0; r0 < m; r0 += ROWS) {
            const int rows = m - r0 < ROWS ? m - r0 : ROWS;
            block_product(a + (long)r0 * k, rows, k, wb, acc);
            for (int r = 0; r < rows; r++) {
                const long row = r0 + r;
                for (int c = 0; c < COLS; c += LANES) {
                    const long col = (long)nb * COLS + c, at = row * n + col;
                    vi sums, offsets;
                    memcpy(&sums, acc + r * COLS + c, sizeof sums);
                    memcpy(&offsets, w->offsets + col, sizeof offsets);
                    vf v = __builtin_convertvector(sums - offsets, vf) * (a_scale[row] * load_vf(w->scale + col));
                    if (w->bias) v += load_vf(w->bias + col);
                    if (act) v = silu_lanes(v);
                    if (residual) v += load_vf(residual + at);
                    store_vf(y + at, v);
                }
            }
        }
    }
#else
    (void)a, (void)a_scale, (void)m, (void)w, (void)act, (void)residual, (void)y;
#endif
}

/* y (m, n) = residual + silu?(x (m, k) W^T + bias) on `threads` threads: the rows of x quantised
 * into scratch (m * k bytes) and a_scale (m), then the product. k a multiple of LANES and 4, n of
 * COLS; bias and residual may be NULL. */
void gp_linear(const float *x, int m, int k, int n, const int8_t *packed, const float *w_scale, const int32_t *w_offsets,
               const float *bias, int act, const float *residual, float *y, uint8_t *scratch, float *a_scale, int threads) {
    const gp_int8 w = {packed, w_scale, w_offsets, bias, k, n};
    (void)threads;
#pragma omp parallel num_threads(threads)
    {
        gp_quantise_rows(x, m, k, scratch, a_scale);
        gp_gemm(scratch, a_scale, m, &w, act, residual, y);
    }
}
