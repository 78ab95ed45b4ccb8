/* plantnseek's training kernel: R masked ReLU MLPs trained for S steps each, one run at a time.
 *
 * Why native: a stacked PyTorch step streams every run's weights, gradients and optimizer moments
 * through memory several times per step (a 64-run stack of the paper's d5 w100 network is ~30 MB, more
 * than the cache two workers share), so the step was bound by memory, not arithmetic. Here one run's
 * weights, masks and moments (~0.4 MB) are copied into private padded buffers that stay in the core's
 * own cache for all S steps of the call: forward, backward and the optimizer update happen there, and
 * the run is copied back once. The matrix products are small register-blocked kernels (no BLAS call or
 * packing per product); every loop has a fixed order, so a run's numbers do not depend on how many
 * runs share the call or where its slice lies in memory (a stack of one equals a run alone, bit for bit).
 *
 * The mathematics is the PyTorch path's (plantnseek/layers.py, torch.optim): forward with the stored
 * weights (pruned entries are kept at zero), the loss's gradient (cross-entropy or MSE, batch mean),
 * backpropagation through relu(W h + b), then the optimizer's elementwise update and the masks
 * multiplied in. Compiled on first use by plantnseek/kernel_build.py, once per machine and source.
 *
 * The file instantiates itself twice, for float and for double (tests compare the double kernel with
 * autograd and torch.optim in float64).
 */
#ifndef REAL
#include <tgmath.h> /* sqrt, exp, log of the operand's own type */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { ADAM = 0, SGD = 1, MOMENTUM = 2, RMSPROP = 3 };
enum { MAX_LAYERS = 64 };

#define REAL float
#define SUFFIX f32
#define SPLAT(s) {s, s, s, s, s, s, s, s}
#include __FILE__
#undef REAL
#undef SUFFIX
#undef SPLAT
#define REAL double
#define SUFFIX f64
#define SPLAT(s) {s, s, s, s}
#include __FILE__

#else
#define CAT2(a, b) a##_##b
#define CAT(a, b) CAT2(a, b)
#define NAME(x) CAT(x, SUFFIX)
#define V ((int)(32 / sizeof(REAL))) /* lanes of a 32-byte vector */

typedef REAL NAME(vec) __attribute__((vector_size(32), aligned(sizeof(REAL)), may_alias));
#define VEC NAME(vec)

static inline int NAME(pad)(int n) { return (n + V - 1) / V * V; }

static inline VEC NAME(splat)(REAL s) { /* a broadcast; `(VEC){0} + s` would cost a scalar add first */
    return (VEC)SPLAT(s);
}

/* The sum of n entries (a multiple of V), in a fixed order: V partial sums, then the lanes in turn. */
static inline REAL NAME(sum)(const REAL *p, int n) {
    VEC acc = NAME(splat)(0);
    for (int i = 0; i < n; i += V) acc += *(const VEC *)(p + i);
    REAL total = 0;
    for (int t = 0; t < V; t++) total += acc[t];
    return total;
}

/* C[r][:] = init[r] + sum_k A(r, k) * Bm[k][:] for RB rows and CV vectors of columns, A(r, k) at
 * A[r * ars + k * acs]: the register block of every product here (forward, weight gradient, input
 * gradient differ only in strides). */
#define BLOCK(RB, CV)                                                                                        \
    static inline void NAME(block_##RB##_##CV)(int K, const REAL *A, long ars, long acs, const REAL *Bm,       \
                                               long brs, REAL *C, long crs, const REAL *init) {               \
        VEC acc[RB][CV];                                                                                      \
        for (int q = 0; q < RB; q++)                                                                          \
            for (int c = 0; c < CV; c++) acc[q][c] = NAME(splat)(init ? init[q] : (REAL)0);                   \
        for (int k = 0; k < K; k++) {                                                                         \
            VEC b[CV];                                                                                        \
            for (int c = 0; c < CV; c++) b[c] = *(const VEC *)(Bm + k * brs + c * V);                         \
            for (int q = 0; q < RB; q++) {                                                                    \
                VEC a = NAME(splat)(A[q * ars + k * acs]);                                                      \
                for (int c = 0; c < CV; c++) acc[q][c] += a * b[c];                                           \
            }                                                                                                 \
        }                                                                                                     \
        for (int q = 0; q < RB; q++)                                                                          \
            for (int c = 0; c < CV; c++) *(VEC *)(C + q * crs + c * V) = acc[q][c];                           \
    }
BLOCK(6, 2)
BLOCK(6, 1)
BLOCK(2, 2)
BLOCK(2, 1)
BLOCK(1, 2)
BLOCK(1, 1)

/* One band of RB rows across all NV vectors of columns. */
#define BAND(RB)                                                                                              \
    static void NAME(band_##RB)(int NV, int K, const REAL *A, long ars, long acs, const REAL *Bm, long brs,    \
                                REAL *C, long crs, const REAL *init) {                                        \
        int c = 0;                                                                                            \
        for (; c + 2 <= NV; c += 2) NAME(block_##RB##_2)(K, A, ars, acs, Bm + c * V, brs, C + c * V, crs, init); \
        if (c < NV) NAME(block_##RB##_1)(K, A, ars, acs, Bm + c * V, brs, C + c * V, crs, init);             \
    }
BAND(6)
BAND(2)
BAND(1)

/* C (M rows of NV vectors) = init + A Bm, in register blocks of 6 rows x 2 vectors (12 accumulators,
 * two loads and six broadcasts per 12 multiply-adds: bound by arithmetic, not loads). */
static void NAME(product)(int M, int NV, int K, const REAL *A, long ars, long acs, const REAL *Bm, long brs,
                          REAL *C, long crs, const REAL *init) {
    int r = 0;
    for (; r + 6 <= M; r += 6) NAME(band_6)(NV, K, A + r * ars, ars, acs, Bm, brs, C + r * crs, crs, init ? init + r : NULL);
    for (; r + 2 <= M; r += 2) NAME(band_2)(NV, K, A + r * ars, ars, acs, Bm, brs, C + r * crs, crs, init ? init + r : NULL);
    for (; r < M; r++) NAME(band_1)(NV, K, A + r * ars, ars, acs, Bm, brs, C + r * crs, crs, init ? init + r : NULL);
}

/* The optimizer's elementwise update of n entries, then the mask: a pruned entry stays exactly zero. */
static void NAME(update)(int kind, int n, REAL *restrict p, const REAL *restrict g, REAL *restrict s1,
                         REAL *restrict s2, const REAL *restrict mask, const double *h, double step) {
    REAL lr = (REAL)h[0], wd = (REAL)h[4];
    if (kind == ADAM) {
        REAL b1 = (REAL)h[1], b2 = (REAL)h[2], eps = (REAL)h[3];
        REAL step_size = (REAL)(h[0] / (1.0 - pow(h[1], step)));
        REAL inv_bc2_sqrt = (REAL)(1.0 / sqrt(1.0 - pow(h[2], step))); /* torch divides by its inverse */
        for (int i = 0; i < n; i++) {
            REAL gi = g[i] + wd * p[i];
            REAL m = s1[i] + (1 - b1) * (gi - s1[i]);
            REAL v = b2 * s2[i] + (1 - b2) * gi * gi;
            s1[i] = m;
            s2[i] = v;
            p[i] = (p[i] - step_size * m / (sqrt(v) * inv_bc2_sqrt + eps)) * mask[i];
        }
    } else if (kind == SGD) {
        for (int i = 0; i < n; i++) p[i] = (p[i] - lr * (g[i] + wd * p[i])) * mask[i];
    } else if (kind == MOMENTUM) { /* Nesterov, no dampening: torch.optim.SGD(momentum, nesterov=True) */
        REAL mu = (REAL)h[1];
        for (int i = 0; i < n; i++) {
            REAL gi = g[i] + wd * p[i];
            REAL buf = mu * s1[i] + gi;
            s1[i] = buf;
            p[i] = (p[i] - lr * (gi + mu * buf)) * mask[i];
        }
    } else { /* RMSPROP: torch.optim.RMSprop(alpha, eps), not centered, no momentum */
        REAL alpha = (REAL)h[1], eps = (REAL)h[3];
        for (int i = 0; i < n; i++) {
            REAL gi = g[i] + wd * p[i];
            REAL v = alpha * s1[i] + (1 - alpha) * gi * gi;
            s1[i] = v;
            p[i] = (p[i] - lr * gi / (sqrt(v) + eps)) * mask[i];
        }
    }
}

/* Copy `rows` rows of `cols` entries between a dense [rows][cols] slice and a [rows][ld] padded buffer. */
static void NAME(pad_in)(REAL *dst, const REAL *src, int rows, int cols, int ld) {
    for (int j = 0; j < rows; j++) memcpy(dst + (long)j * ld, src + (long)j * cols, sizeof(REAL) * cols);
}
static void NAME(pad_out)(REAL *dst, const REAL *src, int rows, int cols, int ld) {
    for (int j = 0; j < rows; j++) memcpy(dst + (long)j * cols, src + (long)j * ld, sizeof(REAL) * cols);
}

/* The loss of one batch at the output z ([d_out][Bp], feature-major) and its gradient into delta
 * (same layout, padding columns zero); returns the batch-mean loss. */
static double NAME(loss)(int classification, int dout, int B, int Bp, const REAL *z, const void *y, REAL *delta) {
    double total = 0.0;
    memset(delta, 0, sizeof(REAL) * (size_t)dout * Bp);
    if (classification) {
        const int64_t *label = (const int64_t *)y;
        for (int i = 0; i < B; i++)
            if (label[i] < 0 || label[i] >= dout) return NAN; /* never indexes outside (callers check labels) */
        for (int i = 0; i < B; i++) {
            REAL mx = z[i];
            for (int c = 1; c < dout; c++) mx = z[c * Bp + i] > mx ? z[c * Bp + i] : mx;
            REAL sum = 0;
            for (int c = 0; c < dout; c++) sum += exp(z[c * Bp + i] - mx);
            REAL lse = mx + log(sum);
            total += lse - z[label[i] * Bp + i];
            for (int c = 0; c < dout; c++) delta[c * Bp + i] = exp(z[c * Bp + i] - lse) / B;
            delta[label[i] * Bp + i] -= (REAL)1 / B;
        }
        return total / B;
    }
    const REAL *target = (const REAL *)y; /* [B][d_out] */
    REAL scale = (REAL)2 / ((REAL)B * dout);
    for (int i = 0; i < B; i++)
        for (int c = 0; c < dout; c++) {
            REAL e = z[c * Bp + i] - target[i * dout + c];
            total += (double)e * e;
            delta[c * Bp + i] = scale * e;
        }
    return total / ((double)B * dout);
}

/* Train R runs for S steps of batch B. For each layer l, ptrs[8l .. 8l+7] are the [R, out, in] weight, the
 * [R, out] bias, their masks, and the optimizer state of weight and bias (s1_w, s2_w, s1_b, s2_b;
 * NULL where the optimizer keeps less). x is [S, R, B, d_in]; y is [S, R, B] labels (int64) or
 * [S, R, B, d_out] targets. hyper = lr, beta1 / momentum / alpha, beta2, eps, weight decay; step0 is
 * the number of steps already taken (Adam's bias correction). loss_sum[r] += sum over steps of
 * batch-mean loss x B. Returns 0; -1 if memory ran out, -2 for sizes it does not take (nothing is changed). */
int NAME(pns_train)(int L, const int *widths, int R, int S, int B, void *const *ptrs, const REAL *x, const void *y,
                    int classification, int kind, const double *hyper, double step0, double *loss_sum) {
    if (L < 1 || L > MAX_LAYERS || B < 1) return -2;
    int Bp = NAME(pad)(B), inP[MAX_LAYERS], maxw = 0;
    size_t params = 0, biases = 0;
    for (int l = 0; l < L; l++) {
        inP[l] = NAME(pad)(widths[l]);
        params += (size_t)widths[l + 1] * inP[l];
        biases += widths[l + 1];
    }
    for (int l = 0; l <= L; l++) maxw = widths[l] > maxw ? widths[l] : maxw;
    int maxP = NAME(pad)(maxw), din = widths[0], dout = widths[L];
    if ((size_t)maxP * Bp > INT32_MAX || (size_t)maxw * maxP > INT32_MAX) return -2; /* int indices below */
    int states = kind == ADAM ? 2 : (kind == SGD ? 0 : 1);
    /* per run: weights, masks, states (padded); biases, bias masks, states; activations (L + 1 feature-major,
     * L batch-major), two deltas, a weight and a bias gradient */
    size_t n = (2 + states) * (params + biases) + (size_t)(2 * L + 1) * maxP * Bp + 2 * (size_t)maxP * Bp +
               (size_t)maxw * maxP + maxP;
    REAL *mem = aligned_alloc(64, ((n * sizeof(REAL)) + 63) / 64 * 64);
    if (!mem) return -1;
    memset(mem, 0, n * sizeof(REAL));
    REAL *W[MAX_LAYERS], *M[MAX_LAYERS], *S1[MAX_LAYERS], *S2[MAX_LAYERS];
    REAL *b[MAX_LAYERS], *bm[MAX_LAYERS], *bs1[MAX_LAYERS], *bs2[MAX_LAYERS];
    REAL *cur = mem;
    for (int l = 0; l < L; l++) {
        size_t sz = (size_t)widths[l + 1] * inP[l];
        W[l] = cur; cur += sz;
        M[l] = cur; cur += sz;
        S1[l] = states > 0 ? cur : NULL; cur += states > 0 ? sz : 0;
        S2[l] = states > 1 ? cur : NULL; cur += states > 1 ? sz : 0;
        b[l] = cur; cur += widths[l + 1];
        bm[l] = cur; cur += widths[l + 1];
        bs1[l] = states > 0 ? cur : NULL; cur += states > 0 ? widths[l + 1] : 0;
        bs2[l] = states > 1 ? cur : NULL; cur += states > 1 ? widths[l + 1] : 0;
    }
    REAL *act[MAX_LAYERS + 1], *bat[MAX_LAYERS]; /* layer inputs: feature-major [w][Bp], batch-major [B][wP] */
    for (int l = 0; l <= L; l++) {
        act[l] = cur; cur += (size_t)maxP * Bp;
        if (l < L) {
            bat[l] = cur; cur += (size_t)maxP * Bp; /* the output's batch-major copy is never needed */
        }
    }
    REAL *delta = cur, *other = cur + (size_t)maxP * Bp;
    cur += 2 * (size_t)maxP * Bp;
    REAL *gW = cur, *gb = cur + (size_t)maxw * maxP;

    for (int r = 0; r < R; r++) {
        for (int l = 0; l < L; l++) { /* this run's slice into the padded buffers */
            int in = widths[l], out = widths[l + 1];
            size_t wo = (size_t)r * out * in, bo = (size_t)r * out;
            NAME(pad_in)(W[l], (const REAL *)ptrs[8 * l] + wo, out, in, inP[l]);
            NAME(pad_in)(M[l], (const REAL *)ptrs[8 * l + 2] + wo, out, in, inP[l]);
            memcpy(b[l], (const REAL *)ptrs[8 * l + 1] + bo, sizeof(REAL) * out);
            memcpy(bm[l], (const REAL *)ptrs[8 * l + 3] + bo, sizeof(REAL) * out);
            if (states > 0) {
                NAME(pad_in)(S1[l], (const REAL *)ptrs[8 * l + 4] + wo, out, in, inP[l]);
                memcpy(bs1[l], (const REAL *)ptrs[8 * l + 6] + bo, sizeof(REAL) * out);
            }
            if (states > 1) {
                NAME(pad_in)(S2[l], (const REAL *)ptrs[8 * l + 5] + wo, out, in, inP[l]);
                memcpy(bs2[l], (const REAL *)ptrs[8 * l + 7] + bo, sizeof(REAL) * out);
            }
        }
        double run_loss = 0.0;
        for (int s = 0; s < S; s++) {
            const REAL *xs = x + ((size_t)s * R + r) * B * din;
            for (int i = 0; i < B; i++)
                for (int k = 0; k < din; k++) {
                    act[0][k * Bp + i] = xs[i * din + k];
                    bat[0][i * inP[0] + k] = xs[i * din + k];
                }
            for (int l = 0; l < L; l++) { /* forward: act[l+1] = relu(W act[l] + b) */
                int in = widths[l], out = widths[l + 1];
                NAME(product)(out, Bp / V, in, W[l], inP[l], 1, act[l], Bp, act[l + 1], Bp, b[l]);
                if (l < L - 1) {
                    REAL *h = act[l + 1], *hb = bat[l + 1];
                    for (int k = 0; k < out * Bp; k++) h[k] = h[k] > 0 ? h[k] : 0;
                    for (int i = 0; i < B; i++)
                        for (int k = 0; k < out; k++) hb[i * inP[l + 1] + k] = h[k * Bp + i];
                }
            }
            const void *ys = classification ? (const void *)((const int64_t *)y + ((size_t)s * R + r) * B)
                                            : (const void *)((const REAL *)y + ((size_t)s * R + r) * B * dout);
            run_loss += NAME(loss)(classification, dout, B, Bp, act[L], ys, delta) * B;
            for (int l = L - 1; l >= 0; l--) { /* backward and update, last layer first */
                int in = widths[l], out = widths[l + 1];
                NAME(product)(out, inP[l] / V, B, delta, Bp, 1, bat[l], inP[l], gW, inP[l], NULL);
                for (int j = 0; j < out; j++) gb[j] = NAME(sum)(delta + j * Bp, Bp); /* padding is zero */
                if (l > 0) { /* the input's gradient, through the ReLU, before W changes */
                    NAME(product)(in, Bp / V, out, W[l], 1, inP[l], delta, Bp, other, Bp, NULL);
                    const REAL *h = act[l];
                    for (int k = 0; k < in * Bp; k++) other[k] = h[k] > 0 ? other[k] : 0;
                }
                double step = step0 + s + 1;
                NAME(update)(kind, out * inP[l], W[l], gW, S1[l], S2[l], M[l], hyper, step);
                NAME(update)(kind, out, b[l], gb, bs1[l], bs2[l], bm[l], hyper, step);
                REAL *t = delta;
                delta = other;
                other = t;
            }
        }
        loss_sum[r] += run_loss;
        for (int l = 0; l < L; l++) { /* and back into the stack */
            int in = widths[l], out = widths[l + 1];
            size_t wo = (size_t)r * out * in, bo = (size_t)r * out;
            NAME(pad_out)((REAL *)ptrs[8 * l] + wo, W[l], out, in, inP[l]);
            memcpy((REAL *)ptrs[8 * l + 1] + bo, b[l], sizeof(REAL) * out);
            if (states > 0) {
                NAME(pad_out)((REAL *)ptrs[8 * l + 4] + wo, S1[l], out, in, inP[l]);
                memcpy((REAL *)ptrs[8 * l + 6] + bo, bs1[l], sizeof(REAL) * out);
            }
            if (states > 1) {
                NAME(pad_out)((REAL *)ptrs[8 * l + 5] + wo, S2[l], out, in, inP[l]);
                memcpy((REAL *)ptrs[8 * l + 7] + bo, bs2[l], sizeof(REAL) * out);
            }
        }
    }
    free(mem);
    return 0;
}

#undef CAT2
#undef CAT
#undef NAME
#undef V
#undef VEC
#undef BLOCK
#undef BAND
#endif
