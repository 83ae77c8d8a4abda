#!/usr/bin/env python3
"""Synthetic telescope data: UNITS blocks of SAMPLES float32 samples of Gaussian noise,
with a few narrow-band signals injected into some blocks. Writes DIR/u00, DIR/u01, ...
and DIR/../truth.txt ("u07 bin=1234" per injected signal).

Usage: make_units.py DIR [UNITS] [SAMPLES] [SEED]"""
import math, os, random, struct, sys

out = sys.argv[1]
units = int(sys.argv[2]) if len(sys.argv) > 2 else 16
samples = int(sys.argv[3]) if len(sys.argv) > 3 else 16384
rng = random.Random(int(sys.argv[4]) if len(sys.argv) > 4 else 42)
os.makedirs(out, exist_ok=True)
truth = []
for u in range(units):
    name = f"u{u:02d}"
    x = [rng.gauss(0.0, 1.0) for _ in range(samples)]
    if u % 3 == 1:  # every third block carries one or two signals
        for _ in range(1 + (u % 2)):
            b = rng.randrange(200, samples // 2 - 200)
            amp = 0.25
            for i in range(samples):
                x[i] += amp * math.sin(2 * math.pi * b * i / samples)
            truth.append(f"{name} bin={b}")
    with open(os.path.join(out, name), "wb") as f:
        f.write(struct.pack(f"<{samples}f", *x))
with open(os.path.join(os.path.dirname(os.path.abspath(out)), "truth.txt"), "w") as f:
    f.write("\n".join(sorted(truth)) + "\n")
print(f"{units} units of {samples} samples, {len(truth)} signals injected")
