/* A SETI-like signal search: one work unit is a block of radio telescope samples
 * (little-endian float32, a power of two of them, at most 65536) on stdin. The unit is
 * windowed (Hann), transformed with an FFT, and every narrow-band peak whose power stands
 * SNR_MIN times above the block's median bin power is written to stdout, one line each:
 *
 *     signal bin=1234 snr=87.3
 *
 * Built to WASI for kith's sandbox and natively for the benchmark (build.sh). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_N 65536
#define SNR_MIN 25.0

static float raw[MAX_N];
static double re[MAX_N], im[MAX_N], power[MAX_N / 2], sorted[MAX_N / 2];

static void fft(double *x, double *y, int n) {
    for (int i = 1, j = 0; i < n; i++) {
        int bit = n >> 1;
        for (; j & bit; bit >>= 1) j ^= bit;
        j ^= bit;
        if (i < j) {
            double t = x[i]; x[i] = x[j]; x[j] = t;
            t = y[i]; y[i] = y[j]; y[j] = t;
        }
    }
    for (int len = 2; len <= n; len <<= 1) {
        double ang = -2.0 * M_PI / len;
        double wr = cos(ang), wi = sin(ang);
        for (int i = 0; i < n; i += len) {
            double cr = 1.0, ci = 0.0;
            for (int k = 0; k < len / 2; k++) {
                int a = i + k, b = i + k + len / 2;
                double tr = x[b] * cr - y[b] * ci;
                double ti = x[b] * ci + y[b] * cr;
                x[b] = x[a] - tr; y[b] = y[a] - ti;
                x[a] += tr; y[a] += ti;
                double ncr = cr * wr - ci * wi;
                ci = cr * wi + ci * wr;
                cr = ncr;
            }
        }
    }
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(void) {
    size_t got = fread(raw, sizeof(float), MAX_N, stdin);
    int n = 1;
    while (n * 2 <= (int)got) n *= 2;
    if (n < 64) {
        fprintf(stderr, "a unit needs at least 64 samples, got %zu\n", got);
        return 2;
    }
    for (int i = 0; i < n; i++) {
        double w = 0.5 - 0.5 * cos(2.0 * M_PI * i / (n - 1));
        re[i] = raw[i] * w;
        im[i] = 0.0;
    }
    fft(re, im, n);
    int half = n / 2;
    for (int i = 0; i < half; i++) power[i] = re[i] * re[i] + im[i] * im[i];
    memcpy(sorted, power, sizeof(double) * half);
    qsort(sorted, half, sizeof(double), cmp);
    double median = sorted[half / 2];
    if (median <= 0) median = 1e-30;
    for (int i = 2; i < half - 1; i++) {
        double snr = power[i] / median;
        if (snr >= SNR_MIN && power[i] >= power[i - 1] && power[i] > power[i + 1])
            printf("signal bin=%d snr=%.1f\n", i, snr);
    }
    return 0;
}
