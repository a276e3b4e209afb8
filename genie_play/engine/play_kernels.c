/* Fused fp32 attention kernels for the play path (engine/build.py compiles it, engine/kernels.py calls it).
 *
 * Each attention is one call (one pass over data that stays in L1) instead of the ~30 small PyTorch
 * operations per layer a MaskGIT round would otherwise dispatch (QK-norm, RoPE, two batched
 * products, softmax, casts, copies). Every output row depends on its own frame only (no cross-item
 * reductions), so a batch of rollouts gives exactly the numbers of single rollouts. The head
 * dimension must be a multiple of LANES (the caller checks). Products run along contiguous rows
 * with several independent accumulators, so there are no horizontal sums and no single dependency
 * chain.
 */
#include "play_vec.h"

/* omp_get_num_threads as this library resolved it (NULL when built without OpenMP): the loader
 * checks that it lies in torch's own OpenMP runtime, not in a second copy another package brought. */
void *gp_openmp_symbol(void) {
#ifdef _OPENMP
    return (void *)&omp_get_num_threads;
#else
    return NULL;
#endif
}

/* out = x * rsqrt(mean(x^2) + eps) * gain * scale: the RMS QK-norm, hd a multiple of LANES. */
static void rms_gain(const float *x, const float *gain, float eps, float scale, int hd, float *out) {
    vf ss = (vf){0};
    for (int d = 0; d < hd; d += LANES) {
        const vf v = load_vf(x + d);
        ss += v * v;
    }
    const float r = 1.0f / sqrtf(hsum(ss) / (float)hd + eps);
    for (int d = 0; d < hd; d += LANES) store_vf(out + d, load_vf(x + d) * r * load_vf(gain + d) * scale);
}

/* Rotary embedding, rotate-half with the sign folded into sin: out[d] = x[d] cos[d] + x[d +- hd/2] sin[d]. */
static void rope(const float *x, const float *cos_t, const float *sin_t, int hd, float *out) {
    const int half = hd / 2;
    for (int d = 0; d < half; d++) out[d] = x[d] * cos_t[d] + x[d + half] * sin_t[d];
    for (int d = half; d < hd; d++) out[d] = x[d] * cos_t[d] + x[d - half] * sin_t[d];
}

/* In-place softmax of s (n); s has room for padded(n) floats, and the padding ends up 0. */
static void softmax(float *s, int n) {
    const int np = padded(n);
    for (int i = n; i < np; i++) s[i] = -1e30f;
    const float m = row_max(s, np);
    vf total = (vf){0};
    for (int i = 0; i < np; i += LANES) {
        const vf e = exp_lanes(load_vf(s + i) - m);
        store_vf(s + i, e);
        total += e;
    }
    const float inv = 1.0f / hsum(total);
    for (int i = 0; i < np; i += LANES) store_vf(s + i, load_vf(s + i) * inv);
}

/* out[c] = sum_k a[k] * b[k * stride + c] for c < width (a multiple of LANES), k < depth: a
 * vector-matrix product along b's contiguous rows. Four column blocks at a time with even and odd
 * k summed apart (eight independent chains: an FMA's latency times the two FMA ports), or, for a
 * narrow product, one block split over four interleaved partial sums. Both scores (q against
 * transposed keys) and weighted sums (probabilities against values) are this. */
static void vec_mat(const float *a, const float *b, int depth, int stride, int width, float *out) {
    int c = 0;
    for (; c + 4 * LANES <= width; c += 4 * LANES) { /* even and odd k in separate sums: 8 chains */
        vf e0 = (vf){0}, e1 = (vf){0}, e2 = (vf){0}, e3 = (vf){0};
        vf o0 = (vf){0}, o1 = (vf){0}, o2 = (vf){0}, o3 = (vf){0};
        int k = 0;
        for (; k + 2 <= depth; k += 2) {
            const float *row = b + (long)k * stride + c, *next = row + stride;
            const float ak = a[k], an = a[k + 1];
            e0 += ak * load_vf(row);
            e1 += ak * load_vf(row + LANES);
            e2 += ak * load_vf(row + 2 * LANES);
            e3 += ak * load_vf(row + 3 * LANES);
            o0 += an * load_vf(next);
            o1 += an * load_vf(next + LANES);
            o2 += an * load_vf(next + 2 * LANES);
            o3 += an * load_vf(next + 3 * LANES);
        }
        if (k < depth) {
            const float *row = b + (long)k * stride + c;
            e0 += a[k] * load_vf(row);
            e1 += a[k] * load_vf(row + LANES);
            e2 += a[k] * load_vf(row + 2 * LANES);
            e3 += a[k] * load_vf(row + 3 * LANES);
        }
        store_vf(out + c, e0 + o0);
        store_vf(out + c + LANES, e1 + o1);
        store_vf(out + c + 2 * LANES, e2 + o2);
        store_vf(out + c + 3 * LANES, e3 + o3);
    }
    for (; c < width; c += LANES) {
        vf acc0 = (vf){0}, acc1 = (vf){0}, acc2 = (vf){0}, acc3 = (vf){0};
        const float *col = b + c;
        int k = 0;
        for (; k + 4 <= depth; k += 4, col += 4 * (long)stride) {
            acc0 += a[k] * load_vf(col);
            acc1 += a[k + 1] * load_vf(col + stride);
            acc2 += a[k + 2] * load_vf(col + 2 * (long)stride);
            acc3 += a[k + 3] * load_vf(col + 3 * (long)stride);
        }
        for (; k < depth; k++, col += stride) acc0 += a[k] * load_vf(col);
        store_vf(out + c, (acc0 + acc1) + (acc2 + acc3));
    }
}

#define QUERIES 4 /* rows of vec_mat4: the spatial attention's queries taken together */

/* vec_mat for QUERIES rows of a at once: out[i * out_stride + c] = sum_k a[i * a_stride + k] *
 * b[k * stride + c]. Each row of b is loaded once for all the rows (4x less traffic than one
 * vec_mat per row: at 256 tokens the transposed keys of a head no longer fit in L1), with
 * QUERIES x 4 independent chains of FMAs. */
static void vec_mat4(const float *a, int a_stride, const float *b, int depth, int stride, int width, float *out, int out_stride) {
    int c = 0;
    for (; c + 4 * LANES <= width; c += 4 * LANES) {
        vf acc[QUERIES][4];
        for (int i = 0; i < QUERIES; i++)
            for (int j = 0; j < 4; j++) acc[i][j] = (vf){0};
        for (int k = 0; k < depth; k++) {
            const float *row = b + (long)k * stride + c;
            const vf b0 = load_vf(row), b1 = load_vf(row + LANES), b2 = load_vf(row + 2 * LANES), b3 = load_vf(row + 3 * LANES);
            for (int i = 0; i < QUERIES; i++) {
                const float ai = a[(long)i * a_stride + k];
                acc[i][0] += ai * b0, acc[i][1] += ai * b1, acc[i][2] += ai * b2, acc[i][3] += ai * b3;
            }
        }
        for (int i = 0; i < QUERIES; i++)
            for (int j = 0; j < 4; j++) store_vf(out + (long)i * out_stride + c + j * LANES, acc[i][j]);
    }
    for (; c < width; c += LANES) {
        vf acc[QUERIES];
        for (int i = 0; i < QUERIES; i++) acc[i] = (vf){0};
        for (int k = 0; k < depth; k++) {
            const vf bk = load_vf(b + (long)k * stride + c);
            for (int i = 0; i < QUERIES; i++) acc[i] += a[(long)i * a_stride + k] * bk;
        }
        for (int i = 0; i < QUERIES; i++) store_vf(out + (long)i * out_stride + c, acc[i]);
    }
}

/* Floats of scratch one thread of the spatial attention needs. */
int gp_spatial_scratch_floats(int n, int hd) { return hd * padded(n) + 2 * n * hd + QUERIES * padded(n) + hd; }

/* Spatial attention among the n tokens of each frame.
 * qkv (items, n, 3, heads, hd) -> out (items, n, heads * hd); q and k RMS-normalised with
 * gain_q * scale and gain_k. scratch: gp_spatial_scratch_floats(n, hd) floats per thread. The
 * (frame, head) pairs are shared among the threads of the enclosing parallel region (an orphaned
 * omp for: called outside one, it runs them all). */
void gp_spatial_body(const float *qkv, int items, int n, int heads, int hd, const float *gain_q, const float *gain_k,
                     float eps, float scale, float *out, float *scratch) {
    const int np = padded(n), row = 3 * heads * hd;
    float *kt = scratch + (long)gp_thread() * gp_spatial_scratch_floats(n, hd); /* keys transposed (hd, np) */
    float *q = kt + hd * np;  /* normalised queries (n, hd) */
    float *v = q + n * hd;    /* values (n, hd) */
    float *s = v + n * hd;    /* QUERIES queries' scores (QUERIES, np) */
    float *k = s + QUERIES * np; /* one normalised key (hd) */
    memset(kt, 0, sizeof(float) * hd * np); /* zero-padded columns */
#pragma omp for schedule(static)
    for (int task = 0; task < items * heads; task++) {
        const int item = task / heads, h = task % heads;
        const float *base = qkv + (long)item * n * row;
        for (int j = 0; j < n; j++) {
            const float *t = base + (long)j * row + h * hd;
            rms_gain(t + heads * hd, gain_k, eps, 1.0f, hd, k);
            for (int d = 0; d < hd; d++) kt[d * np + j] = k[d];
            rms_gain(t, gain_q, eps, scale, hd, q + j * hd);
            memcpy(v + j * hd, t + 2 * heads * hd, sizeof(float) * hd);
        }
        float *o = out + ((long)item * n * heads + h) * hd; /* query i's output at o + i * heads * hd */
        int i = 0;
        for (; i + QUERIES <= n; i += QUERIES) {
            vec_mat4(q + i * hd, hd, kt, hd, np, np, s, np);
            for (int r = 0; r < QUERIES; r++) softmax(s + r * np, n); /* the padded columns get weight 0 */
            vec_mat4(s, np, v, n, hd, hd, o + (long)i * heads * hd, heads * hd);
        }
        for (; i < n; i++) { /* the last n % QUERIES queries one by one */
            vec_mat(q + i * hd, kt, hd, np, np, s);
            softmax(s, n);
            vec_mat(s, v, n, hd, hd, o + (long)i * heads * hd);
        }
    }
}

/* Stack `frames` context frames' keys/values for the temporal kernel, in one pass: k_frames[l] and
 * v_frames[l] (pairs, hd), pairs = rows * heads, the frame l of the context (oldest first) ->
 * ctx_k / ctx_v (pairs, frames + 1, hd), slot `frames` left for the new frame (the kernels write
 * it). What torch.cat per layer did, without a tensor operation per frame. Pairs are shared among
 * the threads. */
void gp_stack_context(const float *const *k_frames, const float *const *v_frames, int frames, long pairs, int hd,
                      float *ctx_k, float *ctx_v, int threads) {
    const long length = frames + 1, bytes = sizeof(float) * hd;
    (void)threads;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long p = 0; p < pairs; p++)
        for (int l = 0; l < frames; l++) {
            memcpy(ctx_k + (p * length + l) * hd, k_frames[l] + p * hd, bytes);
            memcpy(ctx_v + (p * length + l) * hd, v_frames[l] + p * hd, bytes);
        }
}

/* Temporal attention of each position's new frame against its cached context.
 * qkv (rows, 3, heads, hd); ctx_k / ctx_v (rows, heads, length, hd) hold the context in slot
 * 0..length-2; the new frame's RoPE'd key and its value are written into slot length-1. cos_t /
 * sin_t (hd) for the new frame's position. With need_output, out (rows, heads * hd). Needs length
 * <= 4096. Rows are shared among the threads of the enclosing parallel region (an orphaned omp for). */
void gp_temporal_body(const float *qkv, int rows, int heads, int hd, const float *gain_q, const float *gain_k,
                      float eps, float scale, const float *cos_t, const float *sin_t, float *ctx_k, float *ctx_v,
                      int length, int need_output, float *out) {
    const int row = 3 * heads * hd, last = length - 1;
#pragma omp for schedule(static)
    for (int r = 0; r < rows; r++) {
        float tmp[256], qr[256], s[4096 + LANES];
        const float *base = qkv + (long)r * row;
        for (int h = 0; h < heads; h++) {
            const long pair = (long)r * heads + h;
            float *kc = ctx_k + pair * length * hd, *vc = ctx_v + pair * length * hd;
            rms_gain(base + heads * hd + h * hd, gain_k, eps, 1.0f, hd, tmp);
            rope(tmp, cos_t, sin_t, hd, kc + (long)last * hd);
            memcpy(vc + (long)last * hd, base + 2 * heads * hd + h * hd, sizeof(float) * hd);
            if (!need_output) continue;
            rms_gain(base + h * hd, gain_q, eps, scale, hd, tmp);
            rope(tmp, cos_t, sin_t, hd, qr);
            for (int l = 0; l < length; l++) { /* the scores: one dot product per context slot */
                vf dot = (vf){0};
                for (int d = 0; d < hd; d += LANES) dot += load_vf(qr + d) * load_vf(kc + (long)l * hd + d);
                s[l] = hsum(dot);
            }
            softmax(s, length);
            vec_mat(s, vc, length, hd, hd, out + pair * hd);
        }
    }
}
