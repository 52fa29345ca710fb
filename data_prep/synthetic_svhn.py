"""``SyntheticSVHN``: an SVHN-like STAND-IN (SVHN itself cannot be had offline).

Each 32x32 RGB image shows a centre digit (the label) rendered from one of matplotlib's bundled
fonts (DejaVu Sans/Serif/Mono in their weights and slants, STIX General; bundled, so the output
does not depend on the machine's system fonts). Every image draws its own nuisances:

- digit height 44-60 px on a 64 px canvas (later halved: 22-30 of the image's 32 rows, as in
  SVHN's cropped digits, whose character box is widened to a square before resizing, so the
  digit spans most of the height), horizontal stretch 0.75-1.25, centre shifted by N(0, 2.5)
  px, rotation U(-12, 12) degrees;
- neighbouring house-number digits left and right (each with probability 0.75, same font and
  size, gap 1-8 px), usually cut by the frame, as in SVHN's cropped digits;
- random muted background and foreground colours with a minimum luminance contrast of 0.2,
  a linear lighting gradient, 0-4 clutter shapes (rectangles, ellipses, lines);
- downsampling to 32x32, Gaussian blur (radius 0-1.2 px with probability 0.7) and Gaussian
  pixel noise (sigma 0.01-0.08).

Difficulty of format 2, measured with ``python -m data_prep.difficulty`` on the default offline
set (10,000 train / 2,000 test images, seed 0, CPU): logistic regression on standardized pixels
12.2 % test accuracy (chance 10 %; lbfgs stopped at 300 iterations), a small 3-layer CNN (8
epochs) 95.7 %. For scale, the same two classifiers on the offline MNIST digits (4,000 /
1,000): 91.6 % and 94.4 %. So, like SVHN, it is not linearly separable from pixels but easy for a CNN. It is a
stand-in: results on it are never results on SVHN.

Format 2 (``DIGIT_HEIGHT``): the first version drew digits 14-23 px high in the 32 px image,
about half of SVHN's, with the same nuisances around them: 11.1 % / 87.9 % on the two
classifiers above, and no model of chapter 9 learned it (MoPoE's SVHN-only latent probe at
chance after 1,872 steps, seed 0). At SVHN's height the same MoPoE reaches 0.82, and the
official SVHN encoder trained as a classifier reads 42 % of the test digits after one epoch
instead of 10 % (chapter 9's profile comment has the numbers).

Format 3 (``LIGHT_DIGIT``): format 2 drew the digit lighter or darker than its background with
equal probability, so the average image of every digit was the same flat grey (pixel standard
deviation 0.005). A decoder that generates SVHN from another modality's code, which carries the
digit but not the SVHN image's style, outputs about that average (the conditional mean under a
Gaussian likelihood): chapter 9's MoPoE and MMVAE generated grey for every input and their
S<-M, S<-T coherence sat at chance. Format 3 draws the digit lighter 3 times in 4, the smallest
of 0.5 / 0.75 / 0.9 / 1.0 at which chapter 9's SVHN classifier (trained on format 2) reads all
ten class-mean images of 2,000 renderings (0.5: it reads every mean as a 7).
Measured as above on format 3: logistic regression 35.3 % (format 2: 12.2 %; the class means
now differ, which a linear classifier on pixels can use), small CNN 96.5 % (95.7 %).
"""

from __future__ import annotations

import os
from functools import partial

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from .common import map_chunks, rng, split_range

FONT_FILES = (
    "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf", "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf", "STIXGeneral.ttf", "STIXGeneralBol.ttf",
)  # fmt: skip
_CANVAS = 64
# Digit height on the canvas. It was 28-46 until data format 2 of this stand-in: digits of
# half the image height, smaller than SVHN's, which no model of chapter 9 learned under the
# `cpu` profile (see the module docstring and data_prep.mnist_svhn_text).
DIGIT_HEIGHT = (44.0, 60.0)
# Probability that the digit is lighter than its background (format 3; 0.5 before, see the
# module docstring).
LIGHT_DIGIT = 0.75
_glyph_cache: dict | None = None


def font_paths() -> list[str]:
    import matplotlib

    directory = os.path.join(matplotlib.get_data_path(), "fonts", "ttf")
    return [os.path.join(directory, f) for f in FONT_FILES]


def _glyphs() -> dict:
    """Per (font, digit): the glyph as a tight uint8 mask, rendered once per process."""
    global _glyph_cache
    if _glyph_cache is None:
        _glyph_cache = {}
        for f, path in enumerate(font_paths()):
            font = ImageFont.truetype(path, 64)
            for d in range(10):
                im = Image.new("L", (96, 96))
                ImageDraw.Draw(im).text((16, 8), str(d), fill=255, font=font)
                _glyph_cache[f, d] = im.crop(im.getbbox())
    return _glyph_cache


def _luminance(c: np.ndarray) -> float:
    return float(c @ np.array([0.299, 0.587, 0.114]))


def _colour(g: np.random.Generator) -> np.ndarray:
    """A muted random colour: a grey level plus a partly saturated tint (SVHN is rarely vivid)."""
    tint = g.random(3)
    return np.clip(g.uniform(0.05, 0.95) + g.uniform(0, 0.7) * (tint - tint.mean()), 0, 1)


def render(seed: int, split: str, index: int, label: int) -> np.ndarray:
    """One (3, 32, 32) uint8 image of digit ``label``; fully determined by its arguments."""
    g = rng(seed, "synthetic-svhn", split, index)
    glyphs = _glyphs()
    font = int(g.integers(len(FONT_FILES)))
    height = g.uniform(*DIGIT_HEIGHT)
    stretch = g.uniform(0.75, 1.25)
    mask = Image.new("L", (_CANVAS, _CANVAS))

    def place(digit: int, cx: float, cy: float) -> float:
        glyph = glyphs[font, digit]
        w = max(2, round(glyph.width * height / glyph.height * stretch))
        sized = glyph.resize((w, round(height)), Image.BILINEAR)
        box = (round(cx - w / 2), round(cy - height / 2))
        mask.paste(255, box, sized)
        return w

    cx, cy = _CANVAS / 2 + g.normal(0, 2.5, 2)
    w = place(label, cx, cy)
    for side in (-1, 1):
        if g.random() < 0.75:
            gap = g.uniform(1, 8)
            other = int(g.integers(10))
            w_other = glyphs[font, other].width * height / glyphs[font, other].height * stretch
            place(other, cx + side * (w / 2 + gap + w_other / 2), cy)
    mask = mask.rotate(g.uniform(-12, 12), resample=Image.BILINEAR, center=(cx, cy))

    bg = _colour(g)
    for _ in range(50):
        fg = _colour(g)
        if abs(_luminance(fg) - _luminance(bg)) > 0.2:
            break
    if (_luminance(fg) > _luminance(bg)) != (g.random() < LIGHT_DIGIT):
        fg, bg = bg, fg
    scene = Image.new("RGB", (_CANVAS, _CANVAS), tuple(int(v * 255) for v in bg))
    draw = ImageDraw.Draw(scene)
    for _ in range(int(g.integers(0, 5))):
        colour = tuple(int(v) for v in (np.clip(bg + g.normal(0, 0.25, 3), 0, 1) * 255))
        x0, y0 = g.integers(-16, _CANVAS, 2)
        x1, y1 = x0 + g.integers(4, 40), y0 + g.integers(4, 40)
        kind = g.integers(3)
        if kind == 0:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
        elif kind == 1:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.line((x0, y0, x1, y1), fill=colour, width=int(g.integers(1, 5)))
    img = np.asarray(scene, dtype=np.float64) / 255
    alpha = np.asarray(mask, dtype=np.float64)[..., None] / 255 * g.uniform(0.75, 1.0)
    img = img * (1 - alpha) + fg * alpha
    yy, xx = np.mgrid[0:_CANVAS, 0:_CANVAS] / _CANVAS - 0.5
    theta = g.uniform(0, 2 * np.pi)
    img = img * (1 + g.uniform(0, 0.5) * (np.cos(theta) * xx + np.sin(theta) * yy))[..., None]
    small = Image.fromarray((img.clip(0, 1) * 255).round().astype(np.uint8))
    small = small.resize((32, 32), Image.BILINEAR, reducing_gap=2.0)
    if g.random() < 0.7:
        small = small.filter(ImageFilter.GaussianBlur(g.uniform(0, 1.2)))
    out = np.asarray(small, dtype=np.float64) / 255 + g.normal(
        0, g.uniform(0.01, 0.08), (32, 32, 3)
    )
    return (out.clip(0, 1) * 255).round().astype(np.uint8).transpose(2, 0, 1)


def _render_range(indices: range, seed: int, split: str, labels: np.ndarray) -> np.ndarray:
    return np.stack([render(seed, split, i, int(labels[i])) for i in indices])


class SyntheticSVHN:
    """Renders the SVHN-like stand-in: ``SyntheticSVHN(seed).generate("train", n)``.

    Labels are class-balanced (``n / 10`` per class, shuffled); image ``i`` of a split is a
    function of ``(seed, split, i)`` only, so any number of worker processes gives the same bytes.
    """

    name = "SyntheticSVHN (stand-in)"

    def __init__(self, seed: int = 0):
        self.seed = seed

    def labels(self, split: str, n: int) -> np.ndarray:
        return rng(self.seed, "synthetic-svhn-labels", split).permutation(np.arange(n) % 10)

    def generate(self, split: str, n: int, workers: int = 1, quiet: bool = True):
        """(n, 3, 32, 32) uint8 images and (n,) int64 labels."""
        labels = self.labels(split, n)
        fn = partial(_render_range, seed=self.seed, split=split, labels=labels)
        parts = map_chunks(fn, split_range(n), workers, quiet, f"SyntheticSVHN {split} (stand-in)")
        return np.concatenate(parts), labels
