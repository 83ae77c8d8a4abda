#!/usr/bin/env bash
# Builds the cycle-sharing examples: each kernel to WASI (for kith's sandbox) and natively
# (for the benchmark), and their work units.
#   Needs: clang, lld, wasi-libc, libclang-rt-dev-wasm32 (Debian), python3.
set -euo pipefail
cd "$(dirname "$0")"
for k in seti/seti mandelbrot/mandel; do
    clang --target=wasm32-wasi -O2 -o "$k.wasm" "$k.c" -lm
    clang -O2 -o "$k.native" "$k.c" -lm
done
python3 seti/make_units.py seti/units "${SETI_UNITS:-16}" "${SETI_SAMPLES:-16384}"
python3 mandelbrot/make_tiles.py mandelbrot/tiles "${MANDEL_W:-1024}" "${MANDEL_H:-768}"
echo "built: seti/seti.wasm, mandelbrot/mandel.wasm (and .native), their units"
