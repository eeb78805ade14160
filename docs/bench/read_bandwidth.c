// Streaming read bandwidth of one core: a 256-bit sum over 256 MB (written first, so no pass takes page faults),
// four passes, a line each. Build: gcc -O2 -mavx2 read_bandwidth.c -o read_bandwidth;
// run pinned: taskset -c 0 ./read_bandwidth (and, for both cores at once, a second copy under taskset -c 1).
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(void)
{
    size_t bytes = (size_t)256 << 20;
    float *a = aligned_alloc(64, bytes);
    for (size_t i = 0; i < bytes / 4; i++) a[i] = (float)i;
    __m256 s = _mm256_setzero_ps(), t = s; // two chains, so the adds do not bound the loop
    for (int pass = 0; pass < 4; pass++)
    {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (size_t i = 0; i < bytes / 4; i += 16)
        {
            s = _mm256_add_ps(s, _mm256_load_ps(a + i));
            t = _mm256_add_ps(t, _mm256_load_ps(a + i + 8));
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double seconds = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
        printf("%.1f GB/s\n", bytes / seconds / 1e9);
    }
    float out[8];
    _mm256_storeu_ps(out, _mm256_add_ps(s, t));
    return out[0] == 1; // uses the sum, so the compiler keeps the loop
}
