/* One ST block per call, MaskGIT's pick per call, and a whole frame of MaskGIT play in one call
 * (engine/build.py compiles it with the other kernels).
 *
 * Each call is one OpenMP parallel region whose stages are the work-sharing bodies of the single
 * kernels (LayerNorm + quantise, int8 product, attentions, pick), separated by the barriers at the
 * end of each shared loop, so the second thread is woken once per call instead of once per stage
 * and the interpreter does not run between them.
 *
 * Every stage splits rows, column blocks or (frame, head) pairs, never a reduction, so the results
 * do not depend on the thread count, and every batch item gets the numbers it gets alone. The
 * random numbers come from the caller (torch's generator, drawn exactly as maskgit.decode draws
 * them), so the sampler's stream is the same as the round-by-round path's.
 */
#include "play_vec.h"

/* What stays fixed for a block between calls: norms, linears and QK-norm gains. */
typedef struct {
    const float *norm_w[3], *norm_b[3]; /* LayerNorms before the spatial, temporal and FFN parts (b may be NULL) */
    float norm_eps[3];
    gp_int8 linear[6];                  /* spatial qkv, spatial out, temporal qkv, temporal out, ffn in, ffn out */
    const float *gain_s[2], *gain_t[2]; /* q (with the attention scale folded in when exact) and k gains */
    float qk_eps, scale;                /* QK-norm eps; the attention scale still to apply */
    int dim, heads, hidden;
} gp_block;

/* Floats of work buffer gp_block_step needs for `rows` token rows and `threads` threads. */
long gp_block_work_floats(const gp_block *b, int rows, int tokens, int threads) {
    const long hd = b->dim / b->heads;
    return (long)rows * (b->dim + 3 * b->dim + b->dim + b->hidden + 1) + (long)threads * gp_spatial_scratch_floats(tokens, (int)hd);
}

/* Bytes of quantised-activation buffer gp_block_step needs. */
long gp_block_bytes(const gp_block *b, int rows) { return (long)rows * (b->hidden > b->dim ? b->hidden : b->dim); }

/* x (items, tokens, dim) -> out (items * tokens, dim): the block's play step, as STBlock.step with
 * int8 linears and fused attentions, its stages shared among the threads of the enclosing
 * parallel region (orphaned omp for loops). out may be x itself: x is last read by the spatial
 * part's output linear, before out is first written. ctx_k / ctx_v (rows, heads, length, hd) hold
 * the context; the frame's keys/values are written into slot length-1. Without need_output only
 * the keys/values are made (out is not touched). work and bytes as sized by gp_block_work_floats
 * and gp_block_bytes. */
static void block_body(const gp_block *b, const float *x, int items, int tokens, float *ctx_k, float *ctx_v, int length,
                       const float *cos_t, const float *sin_t, int need_output, float *out, float *work, uint8_t *bytes) {
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
    gp_temporal_body(qkv, rows, b->heads, hd, b->gain_t[0], b->gain_t[1], b->qk_eps, b->scale, cos_t, sin_t, ctx_k, ctx_v,
                     length, need_output, att);
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

/* block_body in its own parallel region of `threads` threads (one call per block from Python). */
void gp_block_step(const gp_block *b, const float *x, int items, int tokens, float *ctx_k, float *ctx_v, int length,
                   const float *cos_t, const float *sin_t, int need_output, float *out, float *work, uint8_t *bytes, int threads) {
    (void)threads;
#pragma omp parallel num_threads(threads)
    block_body(b, x, items, tokens, ctx_k, ctx_v, length, cos_t, sin_t, need_output, out, work, bytes);
}

/* sum_i exp((x_i - m) * inv_t) over a row. */
static float row_exp_sum(const float *x, int v, float m, float inv_t) {
    vf total = (vf){0};
    for (int i = 0; i < v; i += LANES) total += exp_lanes((load_vf(x + i) - m) * inv_t);
    return hsum(total);
}

/* The first index whose running sum of exp((x_i - m) * inv_t) reaches target (v - 1 if none). */
static int inverse_cdf(const float *x, int v, float m, float inv_t, float target) {
    float running = 0.0f;
    for (int i = 0; i < v; i += LANES) {
        const vf e = exp_lanes((load_vf(x + i) - m) * inv_t);
        const float block = hsum(e);
        if (running + block >= target) { /* inside this block */
            float lanes[LANES];
            memcpy(lanes, &e, sizeof lanes);
            for (int j = 0; j < LANES; j++) {
                running += lanes[j];
                if (running >= target) return i + j;
            }
        }
        running += block;
    }
    return v - 1;
}

/* MaskGIT's draw for each masked position (maskgit.torch_pick in one pass per row): logits (rows,
 * v) fp32, v a multiple of LANES; positions (rows) the token position of each row, indexing u and g
 * (per position uniforms in [0, 1)). u NULL = greedy (argmax, the first on ties), else a draw from
 * softmax(logits / temperature), searched on the unnormalised weights (the first token whose
 * running sum reaches u * total: the draws can differ from torch_pick's at float rounding). g NULL
 * = no noise. Writes sampled (rows) and logp (rows) = log_softmax(logits)[sampled] + noise_scale *
 * -log(-log(g)). Rows shared among the threads of the enclosing parallel region. */
static void pick_body(const float *logits, int rows, int v, const int64_t *positions, const float *u, float temperature,
                      const float *g, float noise_scale, int64_t *sampled, float *logp) {
#pragma omp for schedule(static)
    for (int r = 0; r < rows; r++) {
        const float *x = logits + (long)r * v;
        const float m = row_max(x, v), sum = row_exp_sum(x, v, m, 1.0f), lse = m + logf(sum);
        int s = 0;
        if (!u) {
            while (s < v - 1 && x[s] != m) s++;
        } else {
            const float inv_t = 1.0f / temperature;
            const float total = inv_t == 1.0f ? sum : row_exp_sum(x, v, m, inv_t);
            s = inverse_cdf(x, v, m, inv_t, u[positions[r]] * total);
        }
        float score = x[s] - lse;
        if (g) {
            float gr = g[positions[r]];
            gr = gr < 1e-20f ? 1e-20f : (gr > 1.0f - 1e-7f ? 1.0f - 1e-7f : gr);
            score += noise_scale * -logf(-logf(gr));
        }
        sampled[r] = s;
        logp[r] = score;
    }
}

/* pick_body in its own parallel region of `threads` threads. */
void gp_maskgit_pick(const float *logits, int rows, int v, const int64_t *positions, const float *u, float temperature,
                     const float *g, float noise_scale, int64_t *sampled, float *logp, int threads) {
    (void)threads;
#pragma omp parallel num_threads(threads)
    pick_body(logits, rows, v, positions, u, temperature, g, noise_scale, sampled, logp);
}

/* What stays fixed for a dynamics model between frames ("add" actions: one embedding per frame). */
typedef struct {
    const gp_block *blocks;          /* depth fused blocks, all of one shape */
    const float *tok_emb, *pos;      /* (vocab + 1, dim) token embeddings (the mask token last); (tokens, dim) */
    const float *norm_w, *norm_b;    /* the final LayerNorm (norm_b may be NULL) */
    float norm_eps;
    gp_int8 head;                    /* dim -> vocab */
    int depth, dim, tokens, vocab;
} gp_dynamics;

/* One frame's sampling plan, made by the caller from maskgit's schedule and its generator. */
typedef struct {
    int steps;
    const int *keep_masked;          /* (steps) positions still masked after each round */
    const float *u, *g;              /* (steps, tokens) uniforms for the draw / the Gumbel noise */
    const int *use_u, *use_g;        /* (steps) 0 = greedy round / no noise this round */
    const float *noise_scale;        /* (steps) */
    float temperature;
} gp_plan;

/* Floats of work buffer gp_frame needs for `items` frames on `threads` threads. */
long gp_frame_work_floats(const gp_dynamics *m, int items, int threads) {
    const long rows = (long)items * m->tokens;
    /* x, the masked rows, their scales, logits, logp and the blocks' own work */
    return rows * m->dim + rows * m->dim + rows + rows * m->vocab + rows + gp_block_work_floats(m->blocks, (int)rows, m->tokens, threads);
}

/* Bytes of quantised-activation buffer gp_frame needs. */
long gp_frame_bytes(const gp_dynamics *m, int items) {
    const long head = (long)items * m->tokens * m->dim, blocks = gp_block_bytes(m->blocks, items * m->tokens);
    return head > blocks ? head : blocks;
}

/* x (items * tokens, dim) = (tok_emb[token] + emb[item]) + pos[position], in DynamicsModel.embed_frame's order. */
static void embed(const gp_dynamics *m, const int64_t *tokens, int items, const float *emb, float *x) {
    const int d = m->dim, n = m->tokens;
#pragma omp for schedule(static)
    for (int r = 0; r < items * n; r++) {
        const float *t = m->tok_emb + (long)tokens[r] * d, *e = emb + (long)(r / n) * d, *p = m->pos + (long)(r % n) * d;
        float *out = x + (long)r * d;
        for (int i = 0; i < d; i += LANES) store_vf(out + i, (load_vf(t + i) + load_vf(e + i)) + load_vf(p + i));
    }
}

static void run_blocks(const gp_dynamics *m, float *x, int items, float **ctx_k, float **ctx_v, int length,
                       const float *cos_t, const float *sin_t, int record, float *work, uint8_t *bytes) {
    for (int l = 0; l < m->depth; l++) {
        const int need_output = !record || l < m->depth - 1; /* the record pass stops at the last keys/values */
        block_body(&m->blocks[l], x, items, m->tokens, ctx_k[l], ctx_v[l], length, cos_t, sin_t, need_output, x,
                   work, bytes);
    }
}

/* Reveal item `item`'s most confident draws (maskgit.decode's ranking: by logp descending, ties to
 * the earlier of the still-masked positions, which are kept ascending). */
static void reveal(int64_t *tokens, int *positions, int masked, int keep, const int64_t *sampled, const float *logp, int *order) {
    if (keep == 0) {
        for (int j = 0; j < masked; j++) tokens[positions[j]] = sampled[j];
        return;
    }
    for (int j = 0; j < masked; j++) { /* stable insertion sort of 0..masked-1 by logp, descending */
        int i = j;
        while (i > 0 && logp[order[i - 1]] < logp[j]) {
            order[i] = order[i - 1];
            i--;
        }
        order[i] = j;
    }
    const int shown = masked - keep;
    for (int r = 0; r < shown; r++) tokens[positions[order[r]]] = sampled[order[r]];
    /* the rest stay masked, positions ascending again: mark the revealed, then compact in order */
    for (int r = 0; r < shown; r++) positions[order[r]] = -1;
    int kept = 0;
    for (int j = 0; j < masked; j++)
        if (positions[j] >= 0) positions[kept++] = positions[j];
}

/* MaskGIT over one new frame of `items` token grids (items, tokens), in place: every row starts with
 * the same `masked` positions masked (ascending in positions, (items, masked) ints), emb (items, dim)
 * the frame's action embedding. Rounds as maskgit.decode with masked_only and the C pick; then the
 * pass that writes the final tokens' keys/values into the context's last slot. ctx_k / ctx_v:
 * per layer, as block_body takes them. order: items * tokens ints. */
void gp_frame(const gp_dynamics *m, const gp_plan *plan, int items, int64_t *tokens, int *positions, int masked, const float *emb,
              float **ctx_k, float **ctx_v, int length, const float *cos_t, const float *sin_t,
              float *work, uint8_t *bytes, int64_t *sampled, int64_t *rows_at, int *order, int threads) {
    const int n = m->tokens, d = m->dim, rows = items * n;
    float *x = work;
    float *sel = x + (long)rows * d;           /* the masked rows, gathered */
    float *a_scale = sel + (long)rows * d;
    float *logits = a_scale + rows;
    float *logp = logits + (long)rows * m->vocab;
    float *block = logp + rows;
    (void)threads;
#pragma omp parallel num_threads(threads)
    {
        int left = masked; /* every thread follows the same count */
        for (int s = 0; s < plan->steps && left > 0; s++) {
            const int picked = items * left;
            embed(m, tokens, items, emb, x);
            run_blocks(m, x, items, ctx_k, ctx_v, length, cos_t, sin_t, 0, block, bytes);
#pragma omp for schedule(static)
            for (int r = 0; r < picked; r++) { /* the masked rows and the position each one draws with */
                const int item = r / left, at = positions[item * n + r % left];
                rows_at[r] = at;
                memcpy(sel + (long)r * d, x + ((long)item * n + at) * d, sizeof(float) * d);
            }
            gp_layer_norm_quantise(sel, picked, d, m->norm_w, m->norm_b, m->norm_eps, bytes, a_scale);
            gp_gemm(bytes, a_scale, picked, &m->head, 0, NULL, logits);
            pick_body(logits, picked, m->vocab, rows_at, plan->use_u[s] ? plan->u + (long)s * n : NULL, plan->temperature,
                      plan->use_g[s] ? plan->g + (long)s * n : NULL, plan->noise_scale[s], sampled, logp);
            const int keep = plan->keep_masked[s];
#pragma omp for schedule(static)
            for (int item = 0; item < items; item++)
                reveal(tokens + (long)item * n, positions + item * n, left, keep, sampled + (long)item * left,
                       logp + (long)item * left, order + item * n);
            left = keep;
        }
        embed(m, tokens, items, emb, x);
        run_blocks(m, x, items, ctx_k, ctx_v, length, cos_t, sin_t, 1, block, bytes);
    }
}
