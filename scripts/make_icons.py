#!/usr/bin/env python3
"""Draws mlx-box's icons with the standard library only (no Pillow), so they are reproducible:

- icons/tray/<level>.png: 44x44 monochrome template images (black + alpha; macOS recolours them for the menu
  bar) for each tray level: ready, starting, degraded, stopped, alert, disconnected. A box (the "mlx-box")
  with a mark that tells the level at a glance.
- icons/{32x32,128x128,128x128@2x,icon}.png: the app icon (white box on a dark rounded square).

Run: python3 scripts/make_icons.py   (writes into icons/)
"""
import math
import os
import struct
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "icons")
SS = 4  # supersampling per axis


def png(path, w, h, rgba):
    raw = b"".join(b"\x00" + bytes(rgba[y * w * 4:(y + 1) * w * 4]) for y in range(h))
    def chunk(t, d):
        c = struct.pack(">I", len(d)) + t + d
        return c + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0))
    data += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)


# Shapes as signed-distance functions in unit coordinates (0..1, y down); inside when < 0.
def rounded_box(cx, cy, hw, hh, r):
    def f(x, y):
        qx, qy = abs(x - cx) - hw + r, abs(y - cy) - hh + r
        return math.hypot(max(qx, 0), max(qy, 0)) + min(max(qx, qy), 0) - r
    return f


def ring(f, width):
    return lambda x, y: abs(f(x, y)) - width / 2


def circle(cx, cy, r):
    return lambda x, y: math.hypot(x - cx, y - cy) - r


def segment(ax, ay, bx, by, width):
    def f(x, y):
        px, py, dx, dy = x - ax, y - ay, bx - ax, by - ay
        t = max(0.0, min(1.0, (px * dx + py * dy) / (dx * dx + dy * dy)))
        return math.hypot(px - dx * t, py - dy * t) - width / 2
    return f


def union(*fs):
    return lambda x, y: min(f(x, y) for f in fs)


def minus(a, b):
    return lambda x, y: max(a(x, y), -b(x, y))


def raster(size, layers):
    """layers: list of (sdf, (r, g, b, a)); later layers paint over earlier ones."""
    out = [0] * (size * size * 4)
    for py in range(size):
        for px in range(size):
            acc = [0.0, 0.0, 0.0, 0.0]
            for sy in range(SS):
                for sx in range(SS):
                    x = (px + (sx + 0.5) / SS) / size
                    y = (py + (sy + 0.5) / SS) / size
                    col = (0, 0, 0, 0)
                    for f, c in layers:
                        if f(x, y) < 0:
                            col = c
                    a = col[3] / 255
                    for i in range(3):
                        acc[i] += col[i] * a
                    acc[3] += a
            n = SS * SS
            a = acc[3] / n
            i = (py * size + px) * 4
            if a > 0:
                out[i:i + 4] = [round(acc[0] / acc[3]), round(acc[1] / acc[3]), round(acc[2] / acc[3]), round(a * 255)]
    return out


BLACK = (0, 0, 0, 255)
CLEAR = (0, 0, 0, 0)

# The box: a rounded square outline with a lid line, left part of the icon.
BOX = rounded_box(0.40, 0.55, 0.30, 0.30, 0.07)
BOX_OUTLINE = union(ring(BOX, 0.09), segment(0.12, 0.40, 0.68, 0.40, 0.08))
# The status mark sits at the top right, cut out of the box so it reads at 22 pt.
MARK_C = (0.76, 0.26)
MARK_CLEAR = circle(*MARK_C, 0.25)


def tray(level):
    cx, cy = MARK_C
    marks = {
        "ready": circle(cx, cy, 0.17),
        "starting": ring(circle(cx, cy, 0.13), 0.08),
        "degraded": union(segment(cx - 0.11, cy - 0.11, cx + 0.11, cy + 0.11, 0.08),
                          segment(cx - 0.11, cy + 0.11, cx + 0.11, cy - 0.11, 0.08)),
        "alert": union(segment(cx, cy - 0.16, cx, cy + 0.04, 0.09), circle(cx, cy + 0.14, 0.05)),
        "stopped": segment(cx - 0.13, cy, cx + 0.13, cy, 0.08),
        "disconnected": ring(circle(cx, cy, 0.13), 0.05),
    }
    shape = union(minus(BOX_OUTLINE, MARK_CLEAR), marks[level])
    if level == "disconnected":
        # A dimmed box: the daemon is not there.
        return [(minus(BOX_OUTLINE, MARK_CLEAR), (0, 0, 0, 110)), (marks[level], BLACK)]
    return [(shape, BLACK)]


def app_icon():
    bg = rounded_box(0.5, 0.5, 0.44, 0.44, 0.1)
    box = rounded_box(0.5, 0.56, 0.25, 0.22, 0.05)
    outline = union(ring(box, 0.06), segment(0.27, 0.45, 0.73, 0.45, 0.05))
    dot = circle(0.70, 0.26, 0.08)
    return [(bg, (28, 32, 40, 255)), (outline, (240, 242, 245, 255)), (dot, (80, 200, 120, 255))]


def main():
    os.makedirs(os.path.join(ROOT, "tray"), exist_ok=True)
    for level in ["ready", "starting", "degraded", "stopped", "alert", "disconnected"]:
        png(os.path.join(ROOT, "tray", f"{level}.png"), 44, 44, raster(44, tray(level)))
    for name, size in [("32x32", 32), ("128x128", 128), ("128x128@2x", 256), ("icon", 512)]:
        png(os.path.join(ROOT, f"{name}.png"), size, size, raster(size, app_icon()))


if __name__ == "__main__":
    main()
