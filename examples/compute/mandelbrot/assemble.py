#!/usr/bin/env python3
"""Assembles the tiles a job returned (DIR/tRR_CC, binary PGM each) into one PNG.

Usage: assemble.py DIR OUT.png"""
import os, struct, sys, zlib

src, dst = sys.argv[1], sys.argv[2]
tiles = {}
for name in sorted(os.listdir(src)):
    r, c = (int(x) for x in name[1:].split("_"))
    data = open(os.path.join(src, name), "rb").read()
    head, rest = data.split(b"\n", 1)
    size, rest = rest.split(b"\n", 1)
    _, pixels = rest.split(b"\n", 1)
    w, h = (int(x) for x in size.split())
    tiles[(r, c)] = (w, h, pixels)
rows = sorted({r for r, _ in tiles})
cols = sorted({c for _, c in tiles})
W = sum(tiles[(rows[0], c)][0] for c in cols)
H = sum(tiles[(r, cols[0])][1] for r in rows)
raw = bytearray()
for r in rows:
    h = tiles[(r, cols[0])][1]
    for y in range(h):
        raw.append(0)
        for c in cols:
            w, _, px = tiles[(r, c)]
            raw += px[y * w:(y + 1) * w]
def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 8, 0, 0, 0, 0))
png += chunk(b"IDAT", zlib.compress(bytes(raw), 6)) + chunk(b"IEND", b"")
open(dst, "wb").write(png)
print(f"{dst}: {W}x{H} from {len(tiles)} tiles")
