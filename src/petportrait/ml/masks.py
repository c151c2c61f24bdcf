"""Subject masks: where the animal is in a photo, as a soft mask in memory; never written anywhere.

The default needs no downloaded weights: OpenCV's GrabCut, seeded from the photo's saliency map (the
salient middle is probably the animal, a thin border is the background) and, where OpenCV's bundled
cat-face cascade finds a face, with that face fixed as the animal. A learned segmenter
(``PETPORTRAIT__ML__SEGMENTER``: a hub id or a folder holding a transformers semantic-segmentation model
and its image processor) is loaded with ``from_pretrained`` and used instead when it is configured.

A mask is a PIL image of mode ``L`` (0 background, 255 animal) at a working size of at most ``MASK_SIDE``
pixels on the long side, covering the whole upright photo; ``photos.mask_under_crop`` cuts it to a crop
box at a resolution. Masks are derived data: they live in the memory of the process that asked for them.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from petportrait.ml.photos import MaskMaker, saliency_map

MASK_SIDE = 256
_BORDER = 0.03  # the share of each side taken as sure background
_PROBABLE = 0.2  # saliency (of its maximum) from which a pixel is probably the animal
_CASCADE = "haarcascade_frontalcatface_extended.xml"
# Label names a learned segmenter's classes are matched against to find the animal.
ANIMAL_LABELS = frozenset(
    {"animal", "pet", "cat", "dog", "bird", "rabbit", "horse", "sheep", "cow", "foreground", "subject"}
)


class SegmenterError(RuntimeError):
    """A configured segmenter that cannot be loaded or used; the message says what to do."""


def _working_copy(image: Image.Image) -> Image.Image:
    small = image.convert("RGB")
    small.thumbnail((MASK_SIDE, MASK_SIDE), Image.Resampling.BILINEAR)
    return small


def _cat_faces(image: Image.Image) -> list[tuple[int, int, int, int]]:
    """Cat faces found by OpenCV's bundled cascade, as (x, y, w, h) in ``image``'s pixels."""
    import cv2

    cascade = cv2.CascadeClassifier(str(cv2.data.haarcascades) + _CASCADE)  # type: ignore[attr-defined]
    if cascade.empty():
        return []
    gray = cv2.equalizeHist(np.asarray(image.convert("L")))
    found = cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=4, minSize=(24, 24))
    return [tuple(int(v) for v in box) for box in found]  # type: ignore[misc]


def _keep_main_region(foreground: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The connected parts of ``foreground`` that hold most of ``weights``, with their holes filled."""
    import cv2

    count, labels = cv2.connectedComponents(foreground.astype(np.uint8), connectivity=8)
    if count <= 1:
        return foreground
    mass = np.bincount(labels.ravel(), weights=weights.ravel(), minlength=count)[1:]
    keep = np.flatnonzero(mass >= 0.2 * mass.max()) + 1
    kept = np.isin(labels, keep)
    # Fill holes: what the background cannot reach from the border belongs to the animal.
    filled = kept.astype(np.uint8)
    flood = np.pad(1 - filled, 1, constant_values=1)
    reach = np.zeros((flood.shape[0] + 2, flood.shape[1] + 2), np.uint8)
    cv2.floodFill(flood, reach, (0, 0), 2)
    return kept | (flood[1:-1, 1:-1] == 1)


def grabcut_mask(image: Image.Image, *, iterations: int = 5) -> Image.Image:
    """The animal in ``image`` by GrabCut seeded from saliency (and cat faces): mode L, working size."""
    import cv2

    small = _working_copy(image)
    width, height = small.size
    saliency = saliency_map(small)
    saliency = cv2.resize(saliency, (width, height), interpolation=cv2.INTER_LINEAR)
    saliency = saliency / (saliency.max() + 1e-12)

    seeds = np.full((height, width), cv2.GC_PR_BGD, np.uint8)
    seeds[saliency >= _PROBABLE] = cv2.GC_PR_FGD
    seeds[saliency >= 0.8] = cv2.GC_FGD
    border_y, border_x = max(1, round(height * _BORDER)), max(1, round(width * _BORDER))
    seeds[:border_y], seeds[-border_y:] = cv2.GC_BGD, cv2.GC_BGD
    seeds[:, :border_x], seeds[:, -border_x:] = cv2.GC_BGD, cv2.GC_BGD
    for x, y, w, h in _cat_faces(small):
        seeds[y + h // 4 : y + 3 * h // 4, x + w // 4 : x + 3 * w // 4] = cv2.GC_FGD
    if not (seeds == cv2.GC_FGD).any() and not (seeds == cv2.GC_PR_FGD).any():
        return Image.new("L", small.size, 255)

    pixels = np.ascontiguousarray(np.asarray(small)[:, :, ::-1])  # OpenCV wants BGR
    background = np.zeros((1, 65), np.float64)
    foreground_model = np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)
    cv2.grabCut(pixels, seeds, (0, 0, 0, 0), background, foreground_model, iterations, cv2.GC_INIT_WITH_MASK)
    foreground = (seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)
    foreground = _keep_main_region(foreground, saliency)
    share = float(foreground.mean())
    if share < 0.02:  # GrabCut lost the animal: fall back on the salient region itself
        foreground = saliency >= _PROBABLE
    mask = Image.fromarray((foreground * 255).astype(np.uint8), mode="L")
    return mask.filter(ImageFilter.GaussianBlur(radius=1.0))


@dataclass
class LearnedSegmenter:
    """A transformers semantic-segmentation model and its image processor, loaded with ``from_pretrained``."""

    source: str
    processor: Any = field(repr=False)
    model: Any = field(repr=False)
    animal_ids: list[int]

    @classmethod
    def from_pretrained(cls, source: str) -> LearnedSegmenter:
        """Load the segmenter at ``source`` (hub id or folder); SegmenterError says what went wrong."""
        from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

        try:
            processor = AutoImageProcessor.from_pretrained(source)  # type: ignore[no-untyped-call]
            model = AutoModelForSemanticSegmentation.from_pretrained(source)
        except (OSError, ValueError, KeyError) as exc:
            raise SegmenterError(
                f"could not load the segmenter {source!r} ({type(exc).__name__}: {exc}); set "
                "PETPORTRAIT__ML__SEGMENTER to a semantic-segmentation model's hub id or folder, or unset it "
                "to use GrabCut"
            ) from exc
        model.eval()
        labels = {int(i): str(name).lower() for i, name in (model.config.id2label or {}).items()}
        animal_ids = sorted(i for i, name in labels.items() if name.split()[-1] in ANIMAL_LABELS)
        if not animal_ids:  # no animal class by name: everything but class 0 (background) is the subject
            animal_ids = sorted(i for i in labels if i != 0)
        return cls(source=source, processor=processor, model=model, animal_ids=animal_ids)

    def __call__(self, image: Image.Image) -> Image.Image:
        """The probability that each pixel shows the animal: mode L, working size."""
        import torch

        small = _working_copy(image)
        inputs = self.processor(images=small, return_tensors="pt")
        with torch.no_grad():
            logits = self.model(**inputs).logits  # (1, labels, h, w)
        probabilities = logits.float().softmax(dim=1)[0, self.animal_ids].sum(dim=0)
        resized = torch.nn.functional.interpolate(
            probabilities[None, None], size=(small.height, small.width), mode="bilinear", align_corners=False
        )[0, 0]
        return Image.fromarray((resized.clamp(0, 1).numpy() * 255).round().astype(np.uint8), mode="L")


@functools.lru_cache(maxsize=2)
def _loaded_segmenter(source: str) -> LearnedSegmenter:
    return LearnedSegmenter.from_pretrained(source)


def mask_function(segmenter: str | None) -> MaskMaker:
    """The mask maker for a ``PETPORTRAIT__ML__SEGMENTER`` value: the learned segmenter (loaded once per
    process), or GrabCut."""
    if segmenter:
        return _loaded_segmenter(segmenter)
    return grabcut_mask


def overlay(image: Image.Image, mask: Image.Image, *, side: int = 512) -> Image.Image:
    """``image`` at most ``side`` px with the background dimmed and tinted, for a person to check a mask."""
    shown = image.convert("RGB")
    shown.thumbnail((side, side), Image.Resampling.BILINEAR)
    alpha = mask.resize(shown.size, Image.Resampling.BILINEAR)
    tint = Image.new("RGB", shown.size, (40, 40, 120))
    dimmed = Image.blend(shown, tint, 0.65)
    return Image.composite(shown, dimmed, alpha)
