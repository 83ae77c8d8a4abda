/* A Mandelbrot tile renderer: one work unit is a line of text on stdin,
 *
 *     X0 Y0 STEP WIDTH HEIGHT MAXITER
 *
 * (the tile's top-left point in the complex plane, the distance between pixels, its size
 * in pixels, the iteration limit). The tile is written to stdout as a binary PGM (P5,
 * 8-bit grey): smooth escape-time shading, black inside the set.
 *
 * Built to WASI for kith's sandbox and natively for the benchmark (build.sh). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    double x0, y0, step;
    int w, h, maxiter;
    if (scanf("%lf %lf %lf %d %d %d", &x0, &y0, &step, &w, &h, &maxiter) != 6 || w <= 0 ||
        h <= 0 || w > 4096 || h > 4096 || maxiter <= 0) {
        fprintf(stderr, "a unit is: X0 Y0 STEP WIDTH HEIGHT MAXITER\n");
        return 2;
    }
    unsigned char *img = malloc((size_t)w * h);
    if (!img) return 3;
    for (int py = 0; py < h; py++) {
        double ci = y0 - py * step;
        for (int px = 0; px < w; px++) {
            double cr = x0 + px * step, zr = 0, zi = 0, zr2 = 0, zi2 = 0;
            int i = 0;
            while (i < maxiter && zr2 + zi2 <= 4.0) {
                zi = 2 * zr * zi + ci;
                zr = zr2 - zi2 + cr;
                zr2 = zr * zr;
                zi2 = zi * zi;
                i++;
            }
            unsigned char v = 0;
            if (i < maxiter) {
                double smooth = i + 1 - log(log(sqrt(zr2 + zi2))) / log(2.0);
                double t = smooth / maxiter;
                v = (unsigned char)(255.0 * sqrt(t < 0 ? 0 : t > 1 ? 1 : t));
            }
            img[(size_t)py * w + px] = v;
        }
    }
    printf("P5\n%d %d\n255\n", w, h);
    fwrite(img, 1, (size_t)w * h, stdout);
    free(img);
    return 0;
}
