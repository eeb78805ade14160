// Where a batched f32 decode step's FMAs go, two weight layouts side by side (README "Serving engine", round 25).
// Build and run both vCPUs at once, as two ranks run:
//   gcc -O3 -march=native panel_layouts.c -o panel_layouts
//   for s in rows4 outer16; do taskset -c 0 ./panel_layouts $s 16 & taskset -c 1 ./panel_layouts $s 16; wait; done
// Each process streams 128 MB of f32 weights (n = 768 columns, llama-160m at two ranks) against R activation rows
// (1, 8 or 16) and prints its best pass of 12 in ms, GFLOP/s and GB/s.
//   rows4:   the 4-row layout (the 512-bit kernels before round 25; CPUs without AVX-512 keep it with 256-bit
//            kernels): panels of 4 output rows, 8 columns of each row in turn; a kernel call
//            takes 8 activation rows (two 512-bit accumulators each, the 8 activation floats broadcast to both
//            halves), so 16 rows are two groups over each chunk of 16 panels, the second from L2. One row: the
//            256-bit one-stream kernel (DotKernel.Panel4).
//   outer16: panels of 16 outputs stored k-major (one 512-bit load holds the 16 outputs' weights of one column),
//            every activation row one accumulator fed by an embedded scalar broadcast, so 16 rows take one pass and
//            the panel is read once. Each output is then one FMA chain over k, a different summation order from
//            the 4-row layout's 8 lanes per output. Adopted for AVX-512 CPUs in round 25 (DotKernel512.Panel16,
//            which also takes two panels at once for up to 8 rows).
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>

#define N 768
#define MAX_ROWS 16

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

static float *huge_zeroed(size_t bytes)
{
    void *p = aligned_alloc(2 << 20, (bytes + (2 << 20) - 1) / (2 << 20) * (2 << 20));
    madvise(p, bytes, MADV_HUGEPAGE);
    memset(p, 0, bytes);
    return p;
}

// rows4: 8 activation rows against one 4-row panel; prefetch 8 KB ahead on the pass that reads it from memory.
static void rows4_panel8(const float *panel, const float *x, float *y, long ystride, int prefetch)
{
    __m512 p[8], q[8];
    for (int r = 0; r < 8; r++) p[r] = q[r] = _mm512_setzero_ps();
    for (int k = 0; k < N; k += 8) {
        if (prefetch) { _mm_prefetch((const char *)panel + 8192, _MM_HINT_T0); _mm_prefetch((const char *)panel + 8192 + 64, _MM_HINT_T0); }
        __m512 w01 = _mm512_load_ps(panel), w23 = _mm512_load_ps(panel + 16);
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) {
            __m512 v = _mm512_broadcast_f32x8(_mm256_loadu_ps(x + r * N + k));
            p[r] = _mm512_fmadd_ps(w01, v, p[r]);
            q[r] = _mm512_fmadd_ps(w23, v, q[r]);
        }
        panel += 32;
    }
    for (int r = 0; r < 8; r++) { y[r * ystride] = _mm512_reduce_add_ps(p[r]); y[r * ystride + 1] = _mm512_reduce_add_ps(q[r]); }
}

// rows4, one row: four 256-bit chains over one sequential stream.
static void rows4_panel1(const float *panel, const float *x, float *y)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    for (int k = 0; k < N; k += 8) {
        __m256 v = _mm256_loadu_ps(x + k);
        s0 = _mm256_fmadd_ps(_mm256_load_ps(panel), v, s0);
        s1 = _mm256_fmadd_ps(_mm256_load_ps(panel + 8), v, s1);
        s2 = _mm256_fmadd_ps(_mm256_load_ps(panel + 16), v, s2);
        s3 = _mm256_fmadd_ps(_mm256_load_ps(panel + 24), v, s3);
        panel += 32;
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3));
    _mm256_storeu_ps(y, s); // a stand-in for the four horizontal sums: what is timed is the stream
}

static void rows4(const float *w, long outs, const float *x, int rows, float *y)
{
    long panels = outs / 4;
    if (rows == 1) { for (long p = 0; p < panels; p++) rows4_panel1(w + p * 4 * N, x, y + p * 4); return; }
    for (long first = 0; first < panels; first += 16) {
        long chunk = panels - first < 16 ? panels - first : 16;
        for (int g = 0; g < rows; g += 8)
            for (long p = 0; p < chunk; p++) rows4_panel8(w + (first + p) * 4 * N, x + g * N, y + g * outs + (first + p) * 4, outs, g == 0);
    }
}

// outer16: R rows (compile-time in the unrolled loop) against one 16-output k-major panel; xt is [k][MAX_ROWS].
#define OUTER(R)                                                                                      \
    static void outer16_panel##R(const float *panel, const float *xt, float *y, long ystride)        \
    {                                                                                                 \
        __m512 a[R];                                                                                  \
        for (int r = 0; r < R; r++) a[r] = _mm512_setzero_ps();                                       \
        for (int k = 0; k < N; k++) {                                                                 \
            _mm_prefetch((const char *)panel + 4096, _MM_HINT_T0);                                    \
            __m512 w = _mm512_load_ps(panel);                                                         \
            _Pragma("GCC unroll 16") for (int r = 0; r < R; r++)                                      \
                a[r] = _mm512_fmadd_ps(w, _mm512_set1_ps(xt[k * MAX_ROWS + r]), a[r]);                \
            panel += 16;                                                                              \
        }                                                                                             \
        for (int r = 0; r < R; r++) _mm512_storeu_ps(y + r * ystride, a[r]);                          \
    }
OUTER(1)
OUTER(8)
OUTER(16)

static void outer16(const float *w, long outs, const float *xt, int rows, float *y)
{
    for (long p = 0; p < outs / 16; p++) {
        const float *panel = w + p * 16 * N;
        if (rows == 1) outer16_panel1(panel, xt, y + p * 16, outs);
        else if (rows == 8) outer16_panel8(panel, xt, y + p * 16, outs);
        else outer16_panel16(panel, xt, y + p * 16, outs);
    }
}

int main(int argc, char **argv)
{
    if (argc < 3 || (strcmp(argv[1], "rows4") && strcmp(argv[1], "outer16"))) { fprintf(stderr, "usage: %s rows4|outer16 1|8|16\n", argv[0]); return 2; }
    int outer = !strcmp(argv[1], "outer16"), rows = atoi(argv[2]);
    if (rows != 1 && rows != 8 && rows != 16) { fprintf(stderr, "rows: 1, 8 or 16\n"); return 2; }
    long outs = (128L << 20) / 4 / N / 64 * 64;
    size_t bytes = (size_t)outs * N * 4;
    float *w = huge_zeroed(bytes);
    for (size_t i = 0; i < (size_t)outs * N; i += 1024) w[i] = 1e-3f * (i % 7);
    float *x = huge_zeroed(MAX_ROWS * N * 4), *xt = huge_zeroed(MAX_ROWS * N * 4), *y = huge_zeroed((size_t)MAX_ROWS * outs * 4);
    for (int r = 0; r < MAX_ROWS; r++)
        for (int k = 0; k < N; k++) xt[k * MAX_ROWS + r] = x[r * N + k] = 0.01f * ((r * N + k) % 13);
    double best = 1e9;
    for (int pass = 0; pass < 12; pass++) {
        double t = now();
        if (outer) outer16(w, outs, xt, rows, y); else rows4(w, outs, x, rows, y);
        t = now() - t;
        if (t < best) best = t;
    }
    printf("%s rows %d: best %.2f ms per pass, %.1f GFLOP/s, %.1f GB/s (check %g)\n", argv[1], rows, best * 1e3,
           2.0 * outs * N * rows / best / 1e9, bytes / best / 1e9, y[5]);
    return 0;
}
