/* One ST block of a play step in one call (engine/build.py compiles it with the other kernels).
 *
 * With the int8 C linears and the fused attentions, a block's step is still ~14 calls from Python
 * (three LayerNorms, six linears, two attentions, the casts between them), and each call that uses
 * both cores wakes the second one and waits for it. Here the whole block runs inside one OpenMP
 * parallel region: the stages are the same work-sharing bodies the single calls use, separated by
 * the barriers at the end of each shared loop, so the second thread is woken once per block.
 *
 * Every stage splits rows, column blocks or (frame, head) pairs, never a reduction, so the result
 * does not depend on the thread count, and every row (so every batch item) is computed as it
 * would be alone.
 */
#include "play_vec.h"

/* Floats of work buffer gp_block_step needs for `rows` token rows and `threads` threads. */
long gp_block_work_floats(const gp_block *b, int rows, int tokens, int threads) {
    const long hd = b->dim / b->heads;
    return (long)rows * (b->dim + 3 * b->dim + b->dim + b->hidden + 1) + (long)threads * gp_spatial_scratch_floats(tokens, (int)hd);
}

/* Bytes of quantised-activation buffer gp_block_step needs. */
long gp_block_bytes(const gp_block *b, int rows) { return (long)rows * (b->hidden > b->dim ? b->hidden : b->dim); }

/* x (items, tokens, dim) -> out (items * tokens, dim): the block's play step, as STBlock.play_step
 * with int8 linears and fused attentions, its stages shared among the threads of the enclosing
 * parallel region (orphaned omp for loops). out may be x itself: x is last read by the spatial
 * part's output linear, before out is first written. ctx_k / ctx_v (rows, heads, length, hd) and
 * ctx_kt (rows, heads, hd, length) hold the context; the frame's keys/values are written into slot
 * length-1. Without need_output only the keys/values are made (out is not touched). work and bytes
 * as sized by gp_block_work_floats and gp_block_bytes. */
void gp_block_body(const gp_block *b, const float *x, int items, int tokens, float *ctx_k, float *ctx_kt, float *ctx_v,
                   int length, const float *cos_t, const float *sin_t, int need_output, float *out, float *work,
                   uint8_t *bytes) {
    const int rows = items * tokens, d = b->dim, hd = d / b->heads;
    float *x1 = work;                       /* (rows, d) after the spatial part */
    float *qkv = x1 + (long)rows * d;       /* (rows, 3d) */
    float *att = qkv + (long)rows * 3 * d;  /* (rows, d) attention output */
    float *hidden = att + (long)rows * d;   /* (rows, hidden) */
    float *a_scale = hidden + (long)rows * b->hidden;
    float *scratch = a_scale + rows;        /* the spatial attention's, per thread */
    /* spatial attention among each frame's tokens, residual into x1 */
    gp_layer_norm_quantise(x, rows, d, b->norm_w[0], b->norm_b[0], b->norm_eps[0], bytes, a_scale);
    gp_gemm(bytes, a_scale, rows, &b->linear[0], 0, NULL, qkv);
    gp_spatial_body(qkv, items, tokens, b->heads, hd, b->gain_s[0], b->gain_s[1], b->qk_eps, b->scale, att, scratch);
    gp_quantise_rows(att, rows, d, bytes, a_scale);
    gp_gemm(bytes, a_scale, rows, &b->linear[1], 0, x, x1);
    /* temporal attention of each position against its context, residual into out */
    gp_layer_norm_quantise(x1, rows, d, b->norm_w[1], b->norm_b[1], b->norm_eps[1], bytes, a_scale);
    gp_gemm(bytes, a_scale, rows, &b->linear[2], 0, NULL, qkv);
    gp_temporal_body(qkv, rows, b->heads, hd, b->gain_t[0], b->gain_t[1], b->qk_eps, b->scale, cos_t, sin_t, ctx_k,
                     ctx_kt, ctx_v, length, need_output, att);
    if (need_output) {
        gp_quantise_rows(att, rows, d, bytes, a_scale);
        gp_gemm(bytes, a_scale, rows, &b->linear[3], 0, x1, out);
        /* feed-forward, residual in place */
        gp_layer_norm_quantise(out, rows, d, b->norm_w[2], b->norm_b[2], b->norm_eps[2], bytes, a_scale);
        gp_gemm(bytes, a_scale, rows, &b->linear[4], 1, NULL, hidden);
        gp_quantise_rows(hidden, rows, b->hidden, bytes, a_scale);
        gp_gemm(bytes, a_scale, rows, &b->linear[5], 0, out, out);
    }
}

/* gp_block_body in its own parallel region of `threads` threads (one call per block from Python). */
void gp_block_step(const gp_block *b, const float *x, int items, int tokens, float *ctx_k, float *ctx_kt, float *ctx_v,
                   int length, const float *cos_t, const float *sin_t, int need_output, float *out, float *work,
                   uint8_t *bytes, int threads) {
    (void)threads;
#pragma omp parallel num_threads(threads)
    gp_block_body(b, x, items, tokens, ctx_k, ctx_kt, ctx_v, length, cos_t, sin_t, need_output, out, work, bytes);
}
