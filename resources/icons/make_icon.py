"""Draw the application icon with Pillow: ``python resources/icons/make_icon.py``.

Writes ``mammo-review.png`` (512 px), ``mammo-review.ico`` (16-256 px, Windows) and
``mammo-review.icns`` (macOS) beside this script. The drawing: a dark rounded tile holding a
breast silhouette in mammogram greys, attached to the chest wall on the left, with one
bright finding circled in amber - what the app is for, readable down to 16 px. Deterministic:
running it again rewrites the same pixels.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

__all__ = ["draw_icon", "main"]

_TILE = (22, 32, 46, 255)
_RING = (245, 166, 35, 255)


def draw_icon(size: int = 512) -> Image.Image:
    """The icon as an RGBA image of `size` x `size` pixels (drawn at 4x, then reduced)."""
    s = size * 4
    tile = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    ImageDraw.Draw(tile).rounded_rectangle((0, 0, s - 1, s - 1), radius=int(s * 0.2), fill=_TILE)

    # Breast silhouette: a half-ellipse on the chest wall (left), grey shading brighter inward.
    mask = Image.new("L", (s, s), 0)
    ImageDraw.Draw(mask).ellipse((int(-0.42 * s), int(0.16 * s), int(0.74 * s), int(0.84 * s)), fill=255)
    clip = Image.new("L", (s, s), 0)
    ImageDraw.Draw(clip).rounded_rectangle((0, 0, s - 1, s - 1), radius=int(s * 0.2), fill=255)
    mask = ImageChops.multiply(mask, clip)
    shade = Image.linear_gradient("L").rotate(-90).resize((s, s))  # bright at the chest wall
    shade = shade.point(lambda v: 95 + v * 0.55)
    noise = np.random.default_rng(7).normal(128, 40, (s // 16, s // 16)).clip(0, 255).astype(np.uint8)
    texture = Image.fromarray(noise).resize((s, s), Image.BICUBIC).filter(ImageFilter.GaussianBlur(s / 90))
    grey = ImageChops.add(shade, texture, scale=1.0, offset=-128).filter(ImageFilter.GaussianBlur(s / 200))
    tissue = Image.merge("RGBA", (grey, grey, grey, mask.filter(ImageFilter.GaussianBlur(s / 300))))
    tile = Image.alpha_composite(tile, tissue)

    # One bright finding, circled.
    draw = ImageDraw.Draw(tile)
    cx, cy, r = 0.46 * s, 0.44 * s, 0.055 * s
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(250, 250, 250, 255))
    ring = 0.15 * s
    draw.ellipse((cx - ring, cy - ring, cx + ring, cy + ring), outline=_RING, width=int(0.035 * s))
    return tile.resize((size, size), Image.LANCZOS)


def main(argv: list[str] | None = None) -> int:
    """Write the PNG, ICO and ICNS files into the folder given (default: beside this script)."""
    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0]) if args else Path(__file__).resolve().parent
    folder.mkdir(parents=True, exist_ok=True)
    big = draw_icon(1024)
    big.resize((512, 512), Image.LANCZOS).save(folder / "mammo-review.png", optimize=True)
    big.save(folder / "mammo-review.ico", sizes=[(n, n) for n in (16, 24, 32, 48, 64, 128, 256)])
    big.save(folder / "mammo-review.icns")
    for name in ("mammo-review.png", "mammo-review.ico", "mammo-review.icns"):
        print(folder / name, (folder / name).stat().st_size, "bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
