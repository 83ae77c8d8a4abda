#!/usr/bin/env python3
"""Splits a Mandelbrot image into tiles, one work unit each: DIR/t00_00 ... (row_col).

Usage: make_tiles.py DIR [WIDTH] [HEIGHT] [TILE] [MAXITER]"""
import os, sys

out = sys.argv[1]
W = int(sys.argv[2]) if len(sys.argv) > 2 else 1024
H = int(sys.argv[3]) if len(sys.argv) > 3 else 768
T = int(sys.argv[4]) if len(sys.argv) > 4 else 256
maxiter = int(sys.argv[5]) if len(sys.argv) > 5 else 1000
x_min, x_max, y_max = -2.5, 1.0, 1.3125
step = (x_max - x_min) / W
os.makedirs(out, exist_ok=True)
n = 0
for r in range(0, H, T):
    for c in range(0, W, T):
        w, h = min(T, W - c), min(T, H - r)
        with open(os.path.join(out, f"t{r // T:02d}_{c // T:02d}"), "w") as f:
            f.write(f"{x_min + c * step!r} {y_max - r * step!r} {step!r} {w} {h} {maxiter}\n")
        n += 1
print(f"{n} tiles of up to {T}x{T} for a {W}x{H} image")
