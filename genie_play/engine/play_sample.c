/* MaskGIT's per-round pick in one call (engine/build.py compiles it with the other kernels).
 *
 * For each masked position the sampler draws a token from softmax(logits / temperature) (or takes
 * the argmax) and scores it with its log-probability plus annealed Gumbel noise. In PyTorch that is
 * about twelve operations over (B, M, vocab) per round (softmax, cumsum, searchsorted, log_softmax,
 * gather, the noise's logs...); here it is one pass per row, shared among the threads. The inverse-
 * CDF search runs on unnormalised weights (the first token whose running sum reaches u * total), so
 * the draws can differ from PyTorch's at float rounding: used only where play already rounds
 * differently from fp32.
 */
#include "play_vec.h"

/* Largest of x (v, a multiple of LANES). */
static float row_max(const float *x, int v) {
    vf m = load_vf(x);
    for (int i = LANES; i < v; i += LANES) {
        const vf y = load_vf(x + i);
        const vi greater = y > m;
        m = (vf)(((vi)y & greater) | ((vi)m & ~greater));
    }
    return hmax(m);
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

/* logits (rows, v) fp32, v a multiple of LANES; positions (rows) the token position of each row,
 * indexing u and g (per position uniforms in [0, 1)). u NULL = greedy (argmax, the first on ties),
 * else a draw from softmax(logits / temperature). g NULL = no noise. Writes sampled (rows) and
 * logp (rows) = log_softmax(logits)[sampled] + noise_scale * -log(-log(g)). Rows shared among the threads
 * of the enclosing parallel region. */
void gp_pick_body(const float *logits, int rows, int v, const int64_t *positions, const float *u, float temperature,
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

/* gp_pick_body in its own parallel region of `threads` threads. */
void gp_maskgit_pick(const float *logits, int rows, int v, const int64_t *positions, const float *u, float temperature,
                     const float *g, float noise_scale, int64_t *sampled, float *logp, int threads) {
    (void)threads;
#pragma omp parallel num_threads(threads)
    gp_pick_body(logits, rows, v, positions, u, temperature, g, noise_scale, sampled, logp);
}
