#!/usr/bin/env python3
"""Draws the menu-bar icons (icons/tray/*.png): 44x44 template images (black + alpha, macOS tints them).

One glyph, a server box, and a badge per state that differs in shape, not only in fill, so that the states
tell apart at a glance in a monochrome menu bar:

    ready         solid dot
    starting      a ring with a quarter cut out (a spinner at rest)
    degraded      a cross
    alert         an exclamation mark
    stopped       a small solid square (the stop symbol)
    disconnected  the box itself dashed and struck through (no daemon: nothing to badge)

Pure standard library (zlib): `python3 scripts/tray_icons.py` rewrites the files.
"""
import math
import os
import struct
import zlib

SIZE = 44
OUT = os.path.join(os.path.dirname(__file__), "..", "icons", "tray")


def png(pixels):
    """pixels: SIZE rows of SIZE alpha values 0..1 → RGBA PNG bytes (black, alpha)."""
    raw = b"".join(b"\x00" + b"".join(bytes((0, 0, 0, round(255 * min(1.0, max(0.0, a))))) for a in row) for row in pixels)

    def chunk(kind, data):
        c = kind + data
        return struct.pack(">I", len(data)) + c + struct.pack(">I", zlib.crc32(c) & 0xFFFFFFFF)

    head = struct.pack(">IIBBBBB", SIZE, SIZE, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", head) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def coverage(d):
    """Signed distance (px, negative inside) → anti-aliased coverage."""
    return min(1.0, max(0.0, 0.5 - d))


def rounded_box(x, y, x0, y0, x1, y1, r):
    cx, cy = min(max(x, x0 + r), x1 - r), min(max(y, y0 + r), y1 - r)
    outside = math.hypot(x - cx, y - cy) - r
    return outside


def draw(state):
    rows = []
    for j in range(SIZE):
        row = []
        for i in range(SIZE):
            x, y = i + 0.5, j + 0.5
            a = 0.0
            # The box (a server): a 3.5 px outline, its top-right corner left open for the badge.
            d = abs(rounded_box(x, y, 5, 12, 33, 38, 5)) - 1.75
            in_badge_gap = x > 22 and y < 23
            if state == "disconnected":
                # Dashed: every other 5 px of the outline, measured along x + y.
                dashed = int((x + y) / 5) % 2 == 0
                if dashed:
                    a = max(a, coverage(d))
                # The strike, corner to corner.
                t = abs((x - y) - 0) / math.sqrt(2) - 1.75
                if 6 < x < 38:
                    a = max(a, coverage(t))
            else:
                if not in_badge_gap:
                    a = max(a, coverage(d))
                # The box's inner bar (a drive slot).
                a = max(a, coverage(max(abs(y - 30) - 1.75, abs(x - 15) - 5)))
                bx, by = 33, 11
                r = math.hypot(x - bx, y - by)
                if state == "ready":
                    a = max(a, coverage(r - 7))
                elif state == "starting":
                    ring = abs(r - 5.5) - 1.75
                    angle = math.atan2(y - by, x - bx)
                    if not (-math.pi / 2 < angle < 0):  # the top-right quarter is cut out
                        a = max(a, coverage(ring))
                elif state == "degraded":
                    u, v = (x - bx + y - by) / math.sqrt(2), (x - bx - (y - by)) / math.sqrt(2)
                    bar = lambda p, q: max(abs(p) - 1.75, abs(q) - 7)  # noqa: E731
                    a = max(a, coverage(min(bar(u, v), bar(v, u))))
                elif state == "alert":
                    stem = max(abs(x - bx) - 2, abs(y - 7.5) - 5)
                    dot = math.hypot(x - bx, y - 17) - 2.2
                    a = max(a, coverage(min(stem, dot)))
                elif state == "stopped":
                    a = max(a, coverage(max(abs(x - bx), abs(y - by)) - 5.5))
            row.append(a)
        rows.append(row)
    return rows


def main():
    for state in ("ready", "starting", "degraded", "alert", "stopped", "disconnected"):
        with open(os.path.join(OUT, f"{state}.png"), "wb") as f:
            f.write(png(draw(state)))


if __name__ == "__main__":
    main()
