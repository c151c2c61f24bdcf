"""A contact sheet of the default subject mask of every test photo, to judge the masks by eye.

Each cell shows a photo with its background dimmed and tinted blue (what the mask leaves out) and the
mask's outline in red; under it the photo's name, the share of the photo the mask covers and the seconds it
took. It writes a PNG (default ``masks.png``) and prints one line per photo.

    .venv/bin/python bench/masks.py [--photos ../shared/data/dreambooth-pets] [--out masks.png]
                                    [--segmenter ID]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from petportrait.ml.masks import mask_function, overlay
from petportrait.ml.photos import load_photo

ROOT = Path(__file__).resolve().parents[1]
CELL = 256
COLUMNS = 6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=Path, default=ROOT.parent / "shared" / "data" / "dreambooth-pets")
    parser.add_argument("--out", type=Path, default=Path("masks.png"))
    parser.add_argument("--segmenter", default=None, help="a segmenter hub id or folder (default: GrabCut)")
    args = parser.parse_args()

    make_mask = mask_function(args.segmenter)
    paths = sorted(p for p in args.photos.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    cells: list[Image.Image] = []
    for path in paths:
        image = load_photo(path)
        started = time.perf_counter()
        mask = make_mask(image)
        seconds = time.perf_counter() - started
        share = float(np.asarray(mask, dtype=np.float32).mean() / 255.0)
        shown = overlay(image, mask, side=CELL)
        edge = mask.resize(shown.size).point(lambda v: 255 if v >= 128 else 0).filter(ImageFilter.FIND_EDGES)
        shown.paste((230, 30, 30), mask=edge.filter(ImageFilter.MaxFilter(3)))
        cell = Image.new("RGB", (CELL, CELL + 18), "white")
        cell.paste(shown, ((CELL - shown.width) // 2, 0))
        name = f"{path.parent.name}/{path.name}"
        ImageDraw.Draw(cell).text((4, CELL + 3), f"{name}  {share:.0%}  {seconds:.2f}s", fill="black")
        cells.append(cell)
        print(f"{name}: mask covers {share:.1%} of the photo ({seconds:.2f} s)")
    rows = (len(cells) + COLUMNS - 1) // COLUMNS
    sheet = Image.new("RGB", (COLUMNS * CELL, rows * (CELL + 18)), "white")
    for index, cell in enumerate(cells):
        sheet.paste(cell, ((index % COLUMNS) * CELL, (index // COLUMNS) * (CELL + 18)))
    sheet.save(args.out)
    print(f"{len(cells)} photos -> {args.out}")


if __name__ == "__main__":
    main()
