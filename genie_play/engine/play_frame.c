/* A whole frame of MaskGIT play in one call (engine/build.py compiles it with the other kernels).
 *
 * With every block fused (play_block.c), a MaskGIT round is still a dozen calls from Python: the
 * embedding sums, three block steps, the masked rows' final norm, the head, the draw, the ranking
 * and the token updates, each waking the second thread and waiting for it, and the interpreter in
 * between (the second core idles in OpenMP's barrier for it). Here all rounds of a frame, and the
 * record pass that stores the final tokens' keys/values, run in one OpenMP parallel region: the
 * stages are the same work-sharing bodies as the single calls (so the numbers are theirs), split by
 * rows, column blocks or (frame, head) pairs, never by a reduction. A frame's tokens therefore do
 * not depend on the thread count, and every batch item gets the tokens it gets alone.
 *
 * The random numbers come from the caller (torch's generator, drawn exactly as maskgit.decode draws
 * them), so the sampler's stream is the same as the round-by-round path's.
 */
#include "play_vec.h"

/* What stays fixed for a dynamics model between frames ("add" actions: one embedding per frame). */
typedef struct {
    const gp_block *blocks;          /* depth fused blocks */
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

static long block_work(const gp_dynamics *m, int rows, int threads) {
    long most = 0;
    for (int l = 0; l < m->depth; l++) {
        const long w = gp_block_work_floats(&m->blocks[l], rows, m->tokens, threads);
        most = w > most ? w : most;
    }
    return most;
}

/* Floats of work buffer gp_frame needs for `items` frames on `threads` threads. */
long gp_frame_work_floats(const gp_dynamics *m, int items, int threads) {
    const long rows = (long)items * m->tokens;
    /* x, the masked rows, their scales, logits, logp and the block's own work */
    return rows * m->dim + rows * m->dim + rows + rows * m->vocab + rows + block_work(m, (int)rows, threads);
}

/* Bytes of quantised-activation buffer gp_frame needs. */
long gp_frame_bytes(const gp_dynamics *m, int items) {
    long most = (long)items * m->tokens * m->dim;
    for (int l = 0; l < m->depth; l++) {
        const long b = gp_block_bytes(&m->blocks[l], items * m->tokens);
        most = b > most ? b : most;
    }
    return most;
}

/* x (items * tokens, dim) = (tok_emb[token] + emb[item]) + pos[position], in DynamicsModel._embed_play's order. */
static void embed(const gp_dynamics *m, const int64_t *tokens, int items, const float *emb, float *x) {
    const int d = m->dim, n = m->tokens;
#pragma omp for schedule(static)
    for (int r = 0; r < items * n; r++) {
        const float *t = m->tok_emb + (long)tokens[r] * d, *e = emb + (long)(r / n) * d, *p = m->pos + (long)(r % n) * d;
        float *out = x + (long)r * d;
        for (int i = 0; i < d; i += LANES) store_vf(out + i, (load_vf(t + i) + load_vf(e + i)) + load_vf(p + i));
    }
}

static void run_blocks(const gp_dynamics *m, float *x, int items, float **ctx_k, float **ctx_kt, float **ctx_v, int length,
                       const float *cos_t, const float *sin_t, int record, float *work, uint8_t *bytes) {
    for (int l = 0; l < m->depth; l++) {
        const int need_output = !record || l < m->depth - 1; /* the record pass stops at the last keys/values */
        gp_block_body(&m->blocks[l], x, items, m->tokens, ctx_k[l], ctx_kt[l], ctx_v[l], length, cos_t, sin_t, need_output, x,
                      work, bytes);
    }
}

/* Reveal item `item`'s most confident draws (maskgit.decode's ranking: by logp descending, ties to
 * the earlier of the still-masked positions, which are kept ascending); returns how many stay masked. */
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
 * the frame's action embedding. Rounds as maskgit.decode with masked_only and the C pick; then, if
 * record, the pass that writes the final tokens' keys/values into the context's last slot.
 * ctx_k / ctx_kt / ctx_v: per layer, as gp_block_body takes them. order: items * tokens ints. */
void gp_frame(const gp_dynamics *m, const gp_plan *plan, int items, int64_t *tokens, int *positions, int masked, const float *emb,
              float **ctx_k, float **ctx_kt, float **ctx_v, int length, const float *cos_t, const float *sin_t, int record,
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
            run_blocks(m, x, items, ctx_k, ctx_kt, ctx_v, length, cos_t, sin_t, 0, block, bytes);
#pragma omp for schedule(static)
            for (int r = 0; r < picked; r++) { /* the masked rows and the position each one draws with */
                const int item = r / left, at = positions[item * n + r % left];
                rows_at[r] = at;
                memcpy(sel + (long)r * d, x + ((long)item * n + at) * d, sizeof(float) * d);
            }
            gp_layer_norm_quantise(sel, picked, d, m->norm_w, m->norm_b, m->norm_eps, bytes, a_scale);
            gp_gemm(bytes, a_scale, picked, &m->head, 0, NULL, logits);
            gp_pick_body(logits, picked, m->vocab, rows_at, plan->use_u[s] ? plan->u + (long)s * n : NULL, plan->temperature,
                         plan->use_g[s] ? plan->g + (long)s * n : NULL, plan->noise_scale[s], sampled, logp);
            const int keep = plan->keep_masked[s];
#pragma omp for schedule(static)
            for (int item = 0; item < items; item++)
                reveal(tokens + (long)item * n, positions + item * n, left, keep, sampled + (long)item * left,
                       logp + (long)item * left, order + item * n);
            left = keep;
        }
        if (record) {
            embed(m, tokens, items, emb, x);
            run_blocks(m, x, items, ctx_k, ctx_kt, ctx_v, length, cos_t, sin_t, 1, block, bytes);
        }
    }
}
