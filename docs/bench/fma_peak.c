// Peak 256-bit FMA rate of one core: 12 independent accumulator chains, enough to cover the FMA latency on two
// pipes. Build: gcc -O2 -mavx2 -mfma fma_peak.c -o fma_peak; run pinned: taskset -c 0 ./fma_peak (and a second
// copy under taskset -c 1 to see whether the two vCPUs share an FMA unit).
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

int main(void)
{
    __m256 acc[12];
    for (int i = 0; i < 12; i++) acc[i] = _mm256_set1_ps(0.001f * i);
    __m256 b = _mm256_set1_ps(0.9999f), c = _mm256_set1_ps(0.0001f);
    long iterations = 200000000;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long k = 0; k < iterations; k++)
    {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) acc[i] = _mm256_fmadd_ps(acc[i], b, c);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double seconds = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    float sum = 0;
    for (int i = 0; i < 12; i++)
    {
        float lanes[8];
        _mm256_storeu_ps(lanes, acc[i]);
        sum += lanes[0];
    }
    // 12 FMAs of 8 lanes, 2 flops each, per iteration; the sum keeps the loop alive.
    printf("%.1f GFLOP/s (%.3f s, checksum %f)\n", iterations * 12.0 * 16 / seconds / 1e9, seconds, sum);
    return 0;
}
