/* The memory optimizers' step kernels for the CPU (memtune.optimizers.cpu_kernels builds and
 * loads this file). Each function loops over the tensors of one param group and streams each
 * tensor once per pass, so a step moves the fewest full-size arrays its math allows (see
 * docs/algorithms.md). The math is the one of memtune.optimizers.compiled's cores, line for
 * line; the tests hold both to the float64 for-loop reference.
 *
 * Built twice into one library, with REAL = float (names ending _f32) and REAL = double
 * (_f64). Sums run over chunks of CHUNK elements, then in double across chunks: in double
 * inside a chunk too where the pass is memory-bound (the inner products; as the inductor
 * cores' float64 sums), in REAL for AM-AdamW's, which also takes a square root and a division
 * per element (float64 chunk sums made it ~30% slower; float32 ones agree with them to ~3e-7
 * relative). Loops whose work depends on a flag exist once per value of the flag (the
 * *_chunks and *_range helpers, always inlined with constants): a flag read at run time made
 * gcc compute both branches per element, or not vectorize at all.
 * -fassociative-math lets the compiler vectorize those sums; nothing here depends on
 * finite math (a NaN or an infinity still propagates, which is how divergence is seen).
 * Threads come from OpenMP: the library links libgomp.so.1, which resolves to the one torch
 * has already loaded, so it shares torch's thread pool and its torch.set_num_threads. */

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#define CAT(a, b) a##b
#define XCAT(a, b) CAT(a, b)
#define NAME(f) XCAT(f, SUFFIX)

#define CHUNK 1024
#define PARALLEL_MIN 32768 /* below this, one thread: the fork costs more than it saves */

typedef REAL real;

/* The reductions give each thread a contiguous run of chunks and add the threads' partial sums
 * in thread order afterwards, so a sum is the same on every run for a given number of threads
 * (an OpenMP reduction clause adds them in the order the threads finish). */
#define TEAM(n) ((n) >= PARALLEL_MIN ? threads : 1)

/* The chunks [*first, *last) of n elements that this thread of the team sums. */
static inline void my_chunks(int64_t n, int64_t *first, int64_t *last) {
    const int64_t chunks = (n + CHUNK - 1) / CHUNK;
    const int id = omp_get_thread_num(), size = omp_get_num_threads();
    *first = chunks * id / size, *last = chunks * (id + 1) / size;
}

/* out[3 i .. 3 i + 2] = <g, g>, <g, d>, <d, d> of tensor i, g = grad + wd x when decayed. */
void NAME(am_sgd_dots)(int count, real **x, real **grad, real **d, const int64_t *numel,
                       double wd, int decayed, double *out, int threads) {
    for (int t = 0; t < count; t++) {
        const real *restrict xs = x[t], *restrict gs = grad[t], *restrict ds = d[t];
        const int64_t n = numel[t];
        const real w = (real)wd;
        const int team = TEAM(n);
        double partial[team][3];
        memset(partial, 0, sizeof partial);
#pragma omp parallel num_threads(team)
        {
            double gg = 0, gd = 0, dd = 0;
            int64_t first, last;
            my_chunks(n, &first, &last);
            for (int64_t k = first; k < last; k++) {
                const int64_t c = k * CHUNK, end = c + CHUNK < n ? c + CHUNK : n;
                double sgg = 0, sgd = 0, sdd = 0;
                if (decayed) {
                    for (int64_t i = c; i < end; i++) {
                        const real g = gs[i] + w * xs[i], b = ds[i];
                        sgg += g * g, sgd += g * b, sdd += b * b;
                    }
                } else {
                    for (int64_t i = c; i < end; i++) {
                        const real g = gs[i], b = ds[i];
                        sgg += g * g, sgd += g * b, sdd += b * b;
                    }
                }
                gg += sgg, gd += sgd, dd += sdd;
            }
            partial[omp_get_thread_num()][0] = gg, partial[omp_get_thread_num()][1] = gd, partial[omp_get_thread_num()][2] = dd;
        }
        double gg = 0, gd = 0, dd = 0;
        for (int k = 0; k < team; k++) gg += partial[k][0], gd += partial[k][1], dd += partial[k][2];
        out[3 * t] = gg, out[3 * t + 1] = gd, out[3 * t + 2] = dd;
    }
}

/* AM-AdamW's preconditioner P from the updated second moment, and what the passes need of it:
 * metric M, 1 / P and the damping 1 / (1 + lambda P) ("paper" coupling) or 1 / (1 + lambda)
 * ("scale_invariant"), with one division per element. */
#define AM_ADAMW_METRIC(vn)                                                      \
    const real p_cond = SQRT(vn) * bc1_over_bc2 + bc1_eps;                      \
    real metric, inverse, damping;                                              \
    if (paper) {                                                                \
        metric = (real)1 / (p_cond * ((real)1 + lam * p_cond));                 \
        inverse = ((real)1 + lam * p_cond) * metric;                            \
        damping = p_cond * metric;                                              \
    } else { /* 1 / (1 + lambda) is a constant: one division per element */    \
        inverse = (real)1 / p_cond;                                             \
        damping = (real)1 / ((real)1 + lam);                                    \
        metric = inverse * damping;                                             \
    }

/* The sums of AM-AdamW's beta over the chunks [first, last) of one tensor, into *numerator and
 * *denominator. Always inlined, and called with `paper` and `decayed` as constants: each of the
 * four combinations gets its own loop. With them as run-time flags, gcc computed both couplings'
 * divisions per element and blended them; the specialised loops run markedly faster
 * (docs/benchmarks.md). */
static inline __attribute__((always_inline)) void am_adamw_sums_chunks(
    const real *restrict xs, const real *restrict gs, const real *restrict ds,
    const real *restrict vs, int64_t n, int64_t first, int64_t last, real beta2, real lam,
    real wd, real bc1_over_bc2, real bc1_eps, real scale, const int paper, const int decayed,
    double *numerator_out, double *denominator_out) {
    double numerator = 0, denominator = 0;
    for (int64_t k = first; k < last; k++) {
        const int64_t c = k * CHUNK, end = c + CHUNK < n ? c + CHUNK : n;
        real sn = 0, sd = 0;
        for (int64_t i = c; i < end; i++) {
            const real g = gs[i], dv = ds[i];
            const real vn = vs[i] * beta2 + g * g * ((real)1 - beta2);
            AM_ADAMW_METRIC(vn)
            (void)damping;
            const real delta = dv - g, scaled = delta * metric;
            /* (d - g)(g + lambda P d) M: damping P M = 1 / (1 + lambda P) times P is P M */
            const real pull = scaled * (g + lam * (paper ? p_cond : (real)1) * dv);
            /* mirrors memtune.optimizers._am_common.am_adamw_numerator (scale: am_adamw_gap_scale) */
            real gap = g * dv * inverse, term;
            if (decayed) {
                gap += wd * g * xs[i];
                term = scale * gap - pull - wd * xs[i] * delta;
            } else {
                term = scale * gap - pull;
            }
            sn += term, sd += scaled * delta;
        }
        numerator += sn, denominator += sd;
    }
    *numerator_out = numerator, *denominator_out = denominator;
}

/* out[2 i], out[2 i + 1] = N and Dn of tensor i's beta = N / Dn (before any state changes).
 * gap_scale[i] = (1 + wd lr) prev_lr / lr; bc1[i] = 1 - beta1_max Pi_i. */
void NAME(am_adamw_sums)(int count, real **x, real **grad, real **d, real **v,
                         const int64_t *numel, const double *bc1, const double *bc2_sqrt,
                         const double *gap_scale, double beta2_, double eps, double lam_,
                         double wd_, int paper, int decayed, double *out, int threads) {
    const real beta2 = (real)beta2_, lam = (real)lam_, wd = (real)wd_;
    for (int t = 0; t < count; t++) {
        const real *restrict xs = x[t], *restrict gs = grad[t], *restrict ds = d[t];
        const real *restrict vs = v[t];
        const int64_t n = numel[t];
        const real bc1_over_bc2 = (real)(bc1[t] / bc2_sqrt[t]), bc1_eps = (real)(bc1[t] * eps);
        const real scale = (real)gap_scale[t];
        const int team = TEAM(n);
        double partial[team][2];
        memset(partial, 0, sizeof partial);
#pragma omp parallel num_threads(team)
        {
            int64_t first, last;
            my_chunks(n, &first, &last);
            double *mine = partial[omp_get_thread_num()];
#define SUMS(paper_, decayed_)                                                             \
    am_adamw_sums_chunks(xs, gs, ds, vs, n, first, last, beta2, lam, wd, bc1_over_bc2,     \
                         bc1_eps, scale, paper_, decayed_, &mine[0], &mine[1])
            if (paper) {
                if (decayed) SUMS(1, 1); else SUMS(1, 0);
            } else {
                if (decayed) SUMS(0, 1); else SUMS(0, 0);
            }
#undef SUMS
        }
        double numerator = 0, denominator = 0;
        for (int k = 0; k < team; k++) numerator += partial[k][0], denominator += partial[k][1];
        out[2 * t] = numerator, out[2 * t + 1] = denominator;
    }
}

/* v <- beta2 v + (1 - beta2) g^2;  d <- d + (1 - beta) damping (g - d);
 * x <- (1 - lr wd) x - lr d / P, for every tensor i with its own beta[i] and bias corrections. */
void NAME(am_adamw_update)(int count, real **x, real **grad, real **d, real **v,
                           const int64_t *numel, const double *bc1, const double *bc2_sqrt,
                           const double *beta, double lr_, double beta2_, double eps,
                           double lam_, double wd_, int paper, int decayed, int threads) {
    const real beta2 = (real)beta2_, lam = (real)lam_, lr = (real)lr_;
    const real keep = decayed ? (real)(1 - lr_ * wd_) : (real)1;
    for (int t = 0; t < count; t++) {
        real *restrict xs = x[t], *restrict ds = d[t], *restrict vs = v[t];
        const real *restrict gs = grad[t];
        const int64_t n = numel[t];
        const real bc1_over_bc2 = (real)(bc1[t] / bc2_sqrt[t]), bc1_eps = (real)(bc1[t] * eps);
        const real keep_of_d = (real)(1 - beta[t]);
#pragma omp parallel for num_threads(threads) if (n >= PARALLEL_MIN) schedule(static)
        for (int64_t i = 0; i < n; i++) {
            const real g = gs[i];
            const real vn = vs[i] * beta2 + g * g * ((real)1 - beta2);
            AM_ADAMW_METRIC(vn)
            (void)metric;
            const real dn = ds[i] + (g - ds[i]) * (damping * keep_of_d);
            vs[i] = vn, ds[i] = dn;
            xs[i] = xs[i] * keep - lr * dn * inverse;
        }
    }
}

/* This thread's share [*first, *last) of n elements, as schedule(static) would split them. */
static inline void my_range(int64_t n, int64_t *first, int64_t *last) {
    const int id = omp_get_thread_num(), size = omp_get_num_threads();
    *first = n * id / size, *last = n * (id + 1) / size;
}

/* The buffer optimizers' loops take their flags as constants (always inlined, one call per
 * combination), as am_adamw_sums_chunks: with run-time flags the conditional slot writes kept
 * gcc from vectorizing the loop. */
static inline __attribute__((always_inline)) void adam_cm_range(
    real *restrict xs, const real *restrict gs, real *restrict ms, real *restrict vs,
    real *restrict slots, real *restrict sums, int64_t first, int64_t last, real one_minus_beta1,
    real beta2, real eps, real keep, real inv_count, real step, real inv_bc2, const int buffered,
    const int write) {
    for (int64_t i = first; i < last; i++) {
        const real mn = ms[i] + (gs[i] - ms[i]) * one_minus_beta1;
        real u = mn;
        if (buffered) {
            const real s = sums[i];
            u = mn + s * inv_count;
            if (write) {
                sums[i] = s + (mn - slots[i]);
                slots[i] = mn;
            }
        }
        const real vn = vs[i] * beta2 + u * u * ((real)1 - beta2);
        ms[i] = mn, vs[i] = vn;
        xs[i] = xs[i] * keep + step * u / (SQRT(vn) * inv_bc2 + eps);
    }
}

/* Adam+CM past a tensor's first call: x <- (1 - lr wd) x;  m <- m + (1 - beta1)(g - m);
 * u <- m + sum / count;  if replace: slot <- m and sum <- sum + m - old slot;
 * v <- beta2 v + (1 - beta2) u^2;  x <- x + step_size u / (sqrt(v) / bc2_sqrt + eps).
 * slot[i] and sum[i] are NULL without a buffer (topc = 0: u = m); the host took the replace
 * decision (reading it is free on the CPU). inv_count = 1 / max(entries before, 1). */
void NAME(adam_cm_step)(int count, real **x, real **grad, real **m, real **v, real **slot,
                        real **sum, const int64_t *numel, const double *step_size,
                        const double *bc2_sqrt, double inv_count_, int replace, double lr_,
                        double beta1_, double beta2_, double eps_, double wd_, int decayed,
                        int threads) {
    const real one_minus_beta1 = (real)(1 - beta1_), beta2 = (real)beta2_, eps = (real)eps_;
    const real keep = decayed ? (real)(1 - lr_ * wd_) : (real)1, inv_count = (real)inv_count_;
    for (int t = 0; t < count; t++) {
        real *restrict xs = x[t], *restrict ms = m[t], *restrict vs = v[t];
        real *restrict slots = slot[t], *restrict sums = sum[t];
        const real *restrict gs = grad[t];
        const int64_t n = numel[t];
        const real step = (real)step_size[t], inv_bc2 = (real)(1 / bc2_sqrt[t]);
        const int buffered = sums != 0, write = buffered && replace;
#pragma omp parallel num_threads(n >= PARALLEL_MIN ? threads : 1)
        {
            int64_t first, last;
            my_range(n, &first, &last);
#define STEP(buffered_, write_)                                                            \
    adam_cm_range(xs, gs, ms, vs, slots, sums, first, last, one_minus_beta1, beta2, eps,   \
                  keep, inv_count, step, inv_bc2, buffered_, write_)
            if (write) STEP(1, 1); else if (buffered) STEP(1, 0); else STEP(0, 0);
#undef STEP
        }
    }
}

static inline __attribute__((always_inline)) void adam_cg_range(
    real *restrict xs, const real *restrict gs, real *restrict ms, real *restrict vs,
    real *restrict slots, real *restrict sums, int64_t first, int64_t last, real one_minus_beta1,
    real beta2, real eps, real wd, real inv_count, real step, real inv_bc2, const int buffered,
    const int write, const int decayed) {
    for (int64_t i = first; i < last; i++) {
        const real g = gs[i];
        real u = g;
        if (buffered) {
            const real s = sums[i];
            u = g + s * inv_count;
            if (write) {
                sums[i] = s + (g - slots[i]);
                slots[i] = g;
            }
        }
        if (decayed) u += wd * xs[i];
        const real mn = ms[i] + (u - ms[i]) * one_minus_beta1;
        const real vn = vs[i] * beta2 + u * u * ((real)1 - beta2);
        ms[i] = mn, vs[i] = vn;
        xs[i] = xs[i] + step * mn / (SQRT(vn) * inv_bc2 + eps);
    }
}

/* Adam+CG: u <- g + sum / count;  if replace: slot <- g and sum <- sum + g - old slot;
 * u <- u + wd x (coupled L2);  m, v <- Adam's moments of u;
 * x <- x + step_size m / (sqrt(v) / bc2_sqrt + eps). */
void NAME(adam_cg_step)(int count, real **x, real **grad, real **m, real **v, real **slot,
                        real **sum, const int64_t *numel, const double *step_size,
                        const double *bc2_sqrt, double inv_count_, int replace, double lr_,
                        double beta1_, double beta2_, double eps_, double wd_, int decayed,
                        int threads) {
    const real one_minus_beta1 = (real)(1 - beta1_), beta2 = (real)beta2_, eps = (real)eps_;
    const real wd = (real)wd_, inv_count = (real)inv_count_;
    (void)lr_;
    for (int t = 0; t < count; t++) {
        real *restrict xs = x[t], *restrict ms = m[t], *restrict vs = v[t];
        real *restrict slots = slot[t], *restrict sums = sum[t];
        const real *restrict gs = grad[t];
        const int64_t n = numel[t];
        const real step = (real)step_size[t], inv_bc2 = (real)(1 / bc2_sqrt[t]);
        const int buffered = sums != 0, write = buffered && replace;
#pragma omp parallel num_threads(n >= PARALLEL_MIN ? threads : 1)
        {
            int64_t first, last;
            my_range(n, &first, &last);
#define STEP(buffered_, write_, decayed_)                                                  \
    adam_cg_range(xs, gs, ms, vs, slots, sums, first, last, one_minus_beta1, beta2, eps,   \
                  wd, inv_count, step, inv_bc2, buffered_, write_, decayed_)
            if (decayed) {
                if (write) STEP(1, 1, 1); else if (buffered) STEP(1, 0, 1); else STEP(0, 0, 1);
            } else {
                if (write) STEP(1, 1, 0); else if (buffered) STEP(1, 0, 0); else STEP(0, 0, 0);
            }
#undef STEP
        }
    }
}

/* out[i] = sum of squares of tensor i (the priority of Adam+CM / Adam+CG is its root). */
void NAME(sum_squares)(int count, real **values, const int64_t *numel, double *out,
                       int threads) {
    for (int t = 0; t < count; t++) {
        const real *restrict vs = values[t];
        const int64_t n = numel[t];
        const int team = TEAM(n);
        double partial[team];
        memset(partial, 0, sizeof partial);
#pragma omp parallel num_threads(team)
        {
            double total = 0;
            int64_t first, last;
            my_chunks(n, &first, &last);
            for (int64_t k = first; k < last; k++) {
                const int64_t c = k * CHUNK, end = c + CHUNK < n ? c + CHUNK : n;
                double s = 0;
                for (int64_t i = c; i < end; i++) s += vs[i] * vs[i];
                total += s;
            }
            partial[omp_get_thread_num()] = total;
        }
        double total = 0;
        for (int k = 0; k < team; k++) total += partial[k];
        out[t] = total;
    }
}
