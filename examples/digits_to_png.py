"""Export scikit-learn's bundled digits (1,797 8x8 grayscale images, no download) as PNG files in labelled folders.

    python examples/digits_to_png.py OUTDIR       # writes OUTDIR/<digit>/digit_<index>.png

The folder name is the label: `embstore ingest OUTDIR` stores it in the `folder` column.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("outdir", type=Path)
    a = p.parse_args()
    digits = load_digits()
    # pixel values are 0..16; scale to 8-bit grayscale
    pixels = np.rint(digits.images * (255 / 16)).clip(0, 255).astype(np.uint8)
    for i, (img, label) in enumerate(zip(pixels, digits.target)):
        folder = a.outdir / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"digit_{i:04d}.png")
    print(f"wrote {len(pixels)} PNG files ({len(set(digits.target))} labels) under {a.outdir}")


if __name__ == "__main__":
    main()
