"""``SyntheticCUB``: a STAND-IN for CUB with captions, procedurally drawn birds with known
attributes and ten captions each from a grammar.

CUB-200-2011 and Reed et al.'s captions cannot be had offline. This renderer draws a bird
with Pillow's ImageDraw at 128x128 and downsamples it to 64x64: body, belly, wing, head with
crown, eye, beak, tail and legs, facing right, shifted by a few pixels and scaled by a few
per cent, on one of four backgrounds (sky, foliage, water, sand) with texture and noise. The
pose varies little on purpose: a first version also mirrored half the birds and moved them
by up to 10 pixels, and at the cpu profile's 624 updates neither model drew birds whose
attributes a classifier could read (vision → vision 0.42-0.46 of the attributes, chance
0.29; seed 0, attributes of 300 training birds). Seven attributes are drawn
from :data:`ATTRIBUTES` (``attribute_values`` lists each one's values) and are stored as the
labels; the captions describe them. Colours are jittered around their named value, and the
backgrounds, pose and jitter are nuisances that no caption mentions.

Captions: ten per image, each from one of :data:`TEMPLATES` (a few attributes per caption,
in several word orders), with paraphrases of the words (beak / bill, small / little, large /
big, grey / gray) as in the real captions. Templates are drawn with Zipf weights (the first
template most often), as a few phrasings dominate CUB's ("this bird has ..."). Because every
caption is generated from known attributes, :func:`parse_caption` reads them back, which
gives the stand-in numbers that real CUB lacks (attribute coherence of generated captions).

It is a stand-in: results on it are never results on CUB.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .common import map_chunks, rng, split_range

COLOURS = {
    "red": (200, 40, 40),
    "blue": (45, 80, 200),
    "yellow": (235, 205, 40),
    "black": (30, 30, 30),
    "white": (240, 240, 235),
    "brown": (130, 85, 45),
    "green": (60, 150, 60),
    "grey": (140, 140, 145),
}
ATTRIBUTES = {
    "size": ("small", "large"),
    "body": tuple(COLOURS),
    "wing": tuple(COLOURS),
    "crown": tuple(COLOURS),
    "belly": tuple(COLOURS),
    "beak": ("short", "long"),
    "tail": ("short", "long"),
}
# One caption template per line of CUB-like phrasing; {a} is the word of attribute a.
TEMPLATES = (
    "this bird has a {body} body , {wing} wings and a {beak} beak .",
    "a {size} {body} bird with {wing} wings and a {crown} crown .",
    "this {size} bird has a {belly} belly and a {tail} tail .",
    "the bird has a {crown} crown and a {beak} beak .",
    "a {body} bird with a {belly} belly .",
    "this is a {size} bird with {wing} wings , a {body} body and a {crown} crown .",
    "{wing} wings , a {body} body and a {tail} tail .",
    "the {size} bird has a {beak} beak and {wing} wings .",
    "this bird is {body} with a {belly} belly and a {crown} crown .",
    "a bird with a {tail} tail , a {beak} beak and {wing} wings .",
)
# Paraphrases: the caption word for a value is drawn from its list.
WORDS = {"small": ("small", "little"), "large": ("large", "big"), "grey": ("grey", "gray")}
NOUNS = {"beak": ("beak", "bill")}
BACKGROUNDS = ("sky", "foliage", "water", "sand")
_S = 128  # drawing resolution; the output is _S / 2


def sample_attributes(g: np.random.Generator) -> dict[str, int]:
    """An index into ATTRIBUTES[a] for every attribute; crown and belly differ from the body
    colour more often than not, so that they are worth mentioning (as in field guides)."""
    a = {k: int(g.integers(len(v))) for k, v in ATTRIBUTES.items()}
    for part in ("crown", "belly"):
        if g.random() < 0.5:
            a[part] = a["body"]
    return a


def caption(attributes: dict[str, int], g: np.random.Generator) -> str:
    """One caption of a bird, a template drawn with Zipf weights and words paraphrased."""
    weights = 1.0 / np.arange(1, len(TEMPLATES) + 1)
    template = TEMPLATES[int(g.choice(len(TEMPLATES), p=weights / weights.sum()))]
    words = {}
    for k, v in attributes.items():
        value = ATTRIBUTES[k][v]
        options = WORDS.get(value, (value,))
        words[k] = options[int(g.integers(len(options)))]
    text = template.format(**words)
    noun = NOUNS["beak"][int(g.integers(2))]
    return text.replace(" beak ", f" {noun} ")


def parse_caption(tokens: list[str]) -> dict[str, str]:
    """The attributes a caption states, read back from its words ({} if none): a colour or
    length word followed by the part it describes, and "small"/"large" before "bird"."""
    canon = {w: k for k, ws in WORDS.items() for w in ws} | {"bill": "beak"}
    words = [canon.get(t, t) for t in tokens]
    out: dict[str, str] = {}
    for i, w in enumerate(words):
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if w in ATTRIBUTES["size"] and nxt in ("bird", *COLOURS):
            out.setdefault("size", w)
        if w in COLOURS:
            part = {"body": "body", "wings": "wing", "crown": "crown", "belly": "belly"}.get(nxt)
            if part:
                out.setdefault(part, w)
            elif nxt == "bird":
                out.setdefault("body", w)
            elif i > 0 and words[i - 1] == "is":  # "this bird is red with ..."
                out.setdefault("body", w)
        if w in ("short", "long") and nxt in ("beak", "tail"):
            out.setdefault(nxt, w)
    return out


# --- drawing ----------------------------------------------------------------------------------


def _jitter(colour, g, amount=18):
    return tuple(int(np.clip(c + g.integers(-amount, amount + 1), 0, 255)) for c in colour)


def _background(g: np.random.Generator) -> Image.Image:
    kind = BACKGROUNDS[int(g.integers(len(BACKGROUNDS)))]
    y = np.linspace(0, 1, _S)[:, None, None]
    top, bottom = {
        "sky": ((120, 170, 230), (225, 235, 245)),
        "foliage": ((40, 90, 40), (110, 150, 70)),
        "water": ((60, 110, 150), (30, 70, 110)),
        "sand": ((210, 190, 150), (170, 140, 100)),
    }[kind]
    img = (1 - y) * np.array(top) + y * np.array(bottom)
    img = np.repeat(img, _S, axis=1)
    img += g.normal(0, 12, (_S, _S, 1)) + g.normal(0, 6, (_S, _S, 3))
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(im)
    for _ in range(int(g.integers(3, 9))):  # leaves, ripples, clouds or pebbles
        x0, y0 = g.integers(0, _S, 2)
        w, h = g.integers(6, 30, 2)
        shade = tuple(int(c) for c in np.clip(np.array(top) + g.integers(-35, 36, 3), 0, 255))
        d.ellipse((x0, y0, x0 + w, y0 + h // 2 + 2), fill=shade)
    return im.filter(ImageFilter.GaussianBlur(1.5))


def render(attributes: dict[str, int], g: np.random.Generator) -> np.ndarray:
    """One bird as (3, 64, 64) uint8."""
    im = _background(g)
    d = ImageDraw.Draw(im)
    colour = {k: _jitter(COLOURS[ATTRIBUTES[k][attributes[k]]], g)
              for k in ("body", "wing", "crown", "belly")}  # fmt: skip
    s = (0.75 if attributes["size"] == 0 else 1.15) * g.uniform(0.95, 1.05)
    cx, cy = _S / 2 + g.uniform(-4, 4), _S / 2 + g.uniform(-2, 6)
    bw, bh = 30 * s, 19 * s  # body half-axes
    # tail (behind the body, to the left; every bird faces right)
    tl = (10 if attributes["tail"] == 0 else 36) * s
    d.polygon([(cx - bw * 0.7, cy - bh * 0.3), (cx - bw * 0.7 - tl, cy - bh * 0.1 - tl * 0.25),
               (cx - bw * 0.7 - tl, cy + bh * 0.35), (cx - bw * 0.7, cy + bh * 0.3)],
              fill=colour["wing"])  # fmt: skip
    # legs
    for dx in (-6 * s, 6 * s):
        d.line([(cx + dx, cy + bh * 0.8), (cx + dx, cy + bh + 12 * s)], fill=(60, 50, 40),
               width=max(1, int(3 * s)))  # fmt: skip
    d.ellipse((cx - bw, cy - bh, cx + bw, cy + bh), fill=colour["body"])
    d.chord((cx - bw * 0.85, cy - bh * 0.2, cx + bw * 0.85, cy + bh), 0, 180,
            fill=colour["belly"])  # fmt: skip
    d.ellipse((cx - bw * 0.75, cy - bh * 0.75, cx + bw * 0.35, cy + bh * 0.25),
              fill=colour["wing"])  # fmt: skip
    # head with crown, eye and beak
    hr = 15 * s
    hx, hy = cx + bw * 0.85, cy - bh * 0.85
    d.ellipse((hx - hr, hy - hr, hx + hr, hy + hr), fill=colour["body"])
    d.pieslice((hx - hr, hy - hr, hx + hr, hy + hr), 180, 360, fill=colour["crown"])
    bl = (8 if attributes["beak"] == 0 else 28) * s
    d.polygon([(hx + hr * 0.8, hy - hr * 0.3), (hx + hr * 0.8 + bl, hy + hr * 0.1),
               (hx + hr * 0.8, hy + hr * 0.4)], fill=_jitter((225, 140, 30), g))  # fmt: skip
    er = max(1.5, 2.6 * s)
    d.ellipse((hx + hr * 0.2 - er, hy - hr * 0.2 - er, hx + hr * 0.2 + er, hy - hr * 0.2 + er),
              fill=(10, 10, 10))  # fmt: skip
    im = im.resize((_S // 2, _S // 2), Image.BILINEAR)
    x = np.asarray(im).astype(np.float64) + g.normal(0, 4, (_S // 2, _S // 2, 3))
    return np.clip(x, 0, 255).astype(np.uint8).transpose(2, 0, 1)


def _render_range(indices: range, seed: int, split: str):
    images, labels, captions = [], [], []
    for i in indices:
        g = rng(seed, "cub", split, i)
        a = sample_attributes(g)
        images.append(render(a, g))
        labels.append([a[k] for k in ATTRIBUTES])
        captions.extend(caption(a, g) for _ in range(10))
    return np.stack(images), np.array(labels, dtype=np.int16), captions


class SyntheticCUB:
    """The stand-in's generator: ``generate(split, n)`` -> (images, attributes, token lists)."""

    attribute_names = tuple(ATTRIBUTES)
    attribute_values = ATTRIBUTES

    def __init__(self, seed: int = 0):
        self.seed = seed

    def generate(self, split: str, n: int, workers: int = 1, quiet: bool = True):
        from .cub import tokenize

        fn = partial(_render_range, seed=self.seed, split=split)
        parts = map_chunks(fn, split_range(n), workers, quiet, f"SyntheticCUB {split} (stand-in)")
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        return images, labels, [tokenize(c) for p in parts for c in p[2]]
