/* Vector helpers and the work-sharing bodies the play kernels share (play_kernels.c, play_linear.c,
 * play_frame.c). */
#ifndef GP_PLAY_VEC_H
#define GP_PLAY_VEC_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
static inline int gp_thread(void) { return omp_get_thread_num(); }
#else
static inline int gp_thread(void) { return 0; }
#endif

/* One vector register of floats (GCC/Clang vector extensions): sixteen with AVX-512, eight with
 * AVX/AVX2, four elsewhere (SSE, NEON). A vector wider than the target's registers would be passed
 * through the stack between functions. The head dimension (a multiple of 16, checked by the
 * caller) is a multiple of every LANES. */
#if defined(__AVX512F__)
#define LANES 16
#elif defined(__AVX__)
#define LANES 8
#else
#define LANES 4
#endif
typedef float vf __attribute__((vector_size(4 * LANES)));
typedef int vi __attribute__((vector_size(4 * LANES)));

static inline vf load_vf(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void store_vf(float *p, vf v) { memcpy(p, &v, sizeof v); }
static inline int padded(int n) { return (n + LANES - 1) / LANES * LANES; }

/* Sum of the lanes as a tree (log2(LANES) levels, not a chain of dependent adds). */
static inline float hsum(vf v) {
    float t[LANES];
    memcpy(t, &v, sizeof t);
    for (int width = LANES / 2; width > 0; width /= 2)
        for (int i = 0; i < width; i++) t[i] += t[i + width];
    return t[0];
}

/* Largest lane, as a tree like hsum. */
static inline float hmax(vf v) {
    float t[LANES];
    memcpy(t, &v, sizeof t);
    for (int width = LANES / 2; width > 0; width /= 2)
        for (int i = 0; i < width; i++) t[i] = t[i] > t[i + width] ? t[i] : t[i + width];
    return t[0];
}

/* Lane by lane a > b ? a : b. */
static inline vf max_lanes(vf a, vf b) {
    const vi greater = a > b;
    return (vf)(((vi)a & greater) | ((vi)b & ~greater));
}

/* Largest of x (n, a multiple of LANES). */
static inline float row_max(const float *x, int n) {
    vf m = load_vf(x);
    for (int i = LANES; i < n; i += LANES) m = max_lanes(load_vf(x + i), m);
    return hmax(m);
}

/* exp(x) lane by lane, for the x <= 0 of a softmax: Cephes' expf, 2^n * P(r) with x = n ln2 + r,
 * |r| <= ln2/2 (within 2 ulp of expf); n is rounded with the 1.5 * 2^23 trick, which also leaves
 * it in t's low bits for building 2^n. Lanes below -87 (weights under 1e-38) give 0. */
static inline vf exp_lanes(vf x) {
    const vf lo = (vf){0} - 87.0f, magic = (vf){0} + 12582912.0f;
    const vi below = x < lo;
    x = (vf)(((vi)x & ~below) | ((vi)lo & below));
    const vf t = x * 1.44269504088896341f + magic;
    const vf n = t - magic;
    const vf r = x - n * 0.693359375f + n * 2.12194440e-4f;
    vf p = (vf){0} + 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const vf y = p * (r * r) + r + 1.0f;
    const vi two_n = ((vi)t - (vi)magic + 127) << 23; /* 2^n in the exponent field */
    return (vf)((vi)(y * (vf)two_n) & ~below);
}

/* Work-sharing bodies (orphaned omp for loops: inside a parallel region the team shares them, outside
 * one they run whole), used alone through their wrappers and together by play_frame.c. */

/* An int8 linear (kernels.Int8Weights). */
typedef struct {
    const int8_t *packed;   /* blocks of 16 output columns: per group of 4 inputs, 16 x 4 bytes (a column's 4 together) */
    const float *scale;     /* (n) per output channel */
    const int32_t *offsets; /* (n) 64 * the int8 weights' sum per output channel */
    const float *bias;      /* (n) or NULL */
    int k, n;
} gp_int8;

void gp_quantise_rows(const float *x, int m, int k, uint8_t *a, float *a_scale);
void gp_layer_norm_quantise(const float *x, int m, int d, const float *w, const float *b, float eps, uint8_t *a, float *a_scale);
void gp_gemm(const uint8_t *a, const float *a_scale, int m, const gp_int8 *w, int act, const float *residual, float *y);
int gp_spatial_scratch_floats(int n, int hd);
void gp_spatial_body(const float *qkv, int items, int n, int heads, int hd, const float *gain_q, const float *gain_k,
                     float eps, float scale, float *out, float *scratch);
void gp_temporal_body(const float *qkv, int rows, int heads, int hd, const float *gain_q, const float *gain_k,
                      float eps, float scale, const float *cos_t, const float *sin_t, float *ctx_k, float *ctx_v,
                      int length, int need_output, float *out);

#endif
