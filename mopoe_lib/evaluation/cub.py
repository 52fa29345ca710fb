"""CUB image-caption evaluation: test log-likelihoods, and on the SyntheticCUB stand-in the
attribute coherence of generation in the four directions of Shi et al.'s slides.

Real CUB has no attribute labels for its captions, so its generations are judged by eye (and
by Shi et al. with CCA, not reproduced here); a model of image features instead of pixels
(``model.modalities = ["feat", "sent"]``) shows a generated feature as the training image
nearest to it (:func:`nearest_images`), and is evaluated by its log-likelihoods. The stand-in knows every bird's attributes:

- the attributes a caption *states* are read back from its words
  (:func:`data_prep.synthetic_cub.parse_caption`, the inverse of the caption grammar);
- the attributes an image *shows* are read by a classifier trained on the stand-in's training
  images (one linear head per attribute; its accuracy on the test images is reported).

Coherence of a direction is the share of stated (or shown) attributes that are right:

- ``img->sent``: captions generated from an image; their stated attributes against the bird's;
- ``sent->img``: images generated from a caption; the attributes that the caption states,
  read from the image;
- ``sent->sent`` and ``img->img``: the same within a modality (every attribute for images);
- ``prior``: an image and a caption from the same prior sample; the caption's stated
  attributes read from the image.

``chance`` is the same share for a guess uniform over each attribute's values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import captions as C
from .. import networks
from .. import progress as progress_mod
from .. import subsets as S
from ..data import TensorData
from . import test_log_likelihoods
from .classifiers import cache_key, freeze


def _attribute_sizes(values: dict) -> list[int]:
    return [len(v) for v in values.values()]


def train_attribute_classifier(train: TensorData, values: dict, *, epochs: int, lr: float,
                               width: int, batch_size: int = 256, device="cpu", seed: int = 0,
                               cache_dir: str | Path | None = None, log=print):  # fmt: skip
    """A classifier of the stand-in's attributes from images (cross-entropy per attribute),
    trained on the unique training images, cached under ``cache_dir``."""
    sizes = _attribute_sizes(values)
    settings = {"epochs": epochs, "lr": lr, "width": width, "seed": seed, "sizes": sizes}
    path = None
    if cache_dir is not None:
        key = cache_key("cub", "img", train.data_id(), settings)
        path = Path(cache_dir) / f"cub_img_attributes_{key}.pt"
        if path.is_file():
            clf = networks.classifier("cub", "img", sum(sizes), width)
            clf.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            log(f"[eval] cub attribute classifier: loaded {path.name}")
            return freeze(clf.to(device))
    rows = train.rows.get("img")
    first = _first_caption_of_each_image(rows) if rows is not None else torch.arange(len(train))
    images = train.data["img"] if rows is not None else None
    labels = train.labels[first].long()
    torch.manual_seed(seed)
    clf = networks.classifier("cub", "img", sum(sizes), width).to(device)
    opt = torch.optim.Adam(clf.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n = len(first)
    steps = epochs * -(-n // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    clf.train()
    for epoch in range(epochs):
        progress_mod.tick(f"[eval] cub attribute classifier: epoch {epoch + 1}/{epochs}")
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            if images is not None:
                x = images[rows[first[idx]].to(images.device)].float().div(255.0).to(device)
            else:
                x = train.batch(first[idx].to(train.labels.device), ("img",))["img"].to(device)
            loss = _loss(clf(x), labels[idx].to(device), sizes)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    clf = freeze(clf)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(clf.state_dict(), path)
        log(f"[eval] cub attribute classifier: trained {epochs} epochs on {n} images, saved "
            f"{path.name}")  # fmt: skip
    return clf


def _first_caption_of_each_image(rows: torch.Tensor) -> torch.Tensor:
    """The index of the first sample (caption) of every image row, in image order."""
    rows = rows.cpu()
    first = torch.full((int(rows.max()) + 1,), -1, dtype=torch.long)
    first.scatter_reduce_(0, rows.long(), torch.arange(len(rows)), "amin", include_self=False)
    return first[first >= 0]


def _loss(logits, y, sizes):
    parts = logits.split(sizes, -1)
    return sum(F.cross_entropy(p, y[:, a]) for a, p in enumerate(parts)) / len(sizes)


@torch.no_grad()
def read_attributes(clf, images: torch.Tensor, sizes: list[int], batch: int = 256):
    """(N, A) the classifier's value index of every attribute of ``images`` (N, 3, 64, 64)."""
    out = []
    for i in range(0, len(images), batch):
        logits = clf(images[i : i + batch])
        out.append(torch.stack([p.argmax(-1) for p in logits.split(sizes, -1)], -1).cpu())
    return torch.cat(out) if out else torch.empty(0, len(sizes), dtype=torch.long)


def stated(texts_tokens: list[list[str]], values: dict) -> list[dict[str, int]]:
    """The attributes each caption states, as value indices."""
    from data_prep.synthetic_cub import parse_caption

    index = {a: {v: i for i, v in enumerate(vs)} for a, vs in values.items()}
    return [{a: index[a][v] for a, v in parse_caption(t).items()} for t in texts_tokens]


def _share(pairs: list[tuple[dict, np.ndarray]], values: dict) -> dict:
    """Right / stated over (stated attributes, reference values) pairs, and the chance."""
    names = list(values)
    right = total = 0
    chance = 0.0
    empty = 0
    for said, ref in pairs:
        if not said:
            empty += 1
        for a, v in said.items():
            total += 1
            right += int(ref[names.index(a)] == v)
            chance += 1.0 / len(values[a])
    return {"coherence": right / total if total else float("nan"),
            "chance": chance / total if total else float("nan"),
            "count": total,
            "stated_per_caption": total / max(1, len(pairs)),
            "captions_stating_nothing": empty / max(1, len(pairs))}  # fmt: skip


@torch.no_grad()
def attribute_coherence(model, test: TensorData, clf, values: dict, words, *, n: int = 500,
                        seed: int = 0) -> dict:  # fmt: skip
    """Coherence of the four directions and of prior samples (see the module docstring),
    on the first caption of each of the first ``n`` test images."""
    sizes = _attribute_sizes(values)
    rows = test.rows.get("img")
    first = _first_caption_of_each_image(rows) if rows is not None else torch.arange(len(test))
    idx = first[:n].to(test.labels.device)
    x = {m: v.to(model.device) for m, v in test.batch(idx).items()}
    truth = test.labels[idx].long().cpu().numpy()
    subsets = S.from_names([["img"], ["sent"]], model.modalities).to(model.device)
    gen = model.conditional_generate(x, subsets, n=1)  # m -> (1, 2, B, ...)
    tokens = lambda sent: [C.to_tokens(s.argmax(-1), words) for s in sent]  # noqa: E731
    from_img = tokens(gen["sent"][0, 0])
    from_sent = tokens(gen["sent"][0, 1])
    input_caps = stated(tokens(x["sent"]), values)
    shown_sent_img = read_attributes(clf, gen["img"][0, 1], sizes).numpy()
    shown_img_img = read_attributes(clf, gen["img"][0, 0], sizes).numpy()
    shown_test = read_attributes(clf, x["img"], sizes).numpy()
    out = {
        "img->sent": _share(list(zip(stated(from_img, values), truth, strict=True)), values),
        "sent->sent": _share(list(zip(stated(from_sent, values), truth, strict=True)), values),
        "sent->img": _share(list(zip(input_caps, shown_sent_img, strict=True)), values),
        "img->img": _all_attributes(truth, shown_img_img, values),
        "classifier_on_test_images": _all_attributes(truth, shown_test, values)["coherence"],
        "n": len(idx),
    }
    torch.manual_seed(seed)
    z = model.prior_sample(len(idx))
    prior = model.decode(z)
    prior_caps = tokens(prior["sent"])
    shown_prior = read_attributes(clf, prior["img"], sizes).numpy()
    prior_stated = stated(prior_caps, values)  # parsed once, for both numbers
    out["prior"] = _share(list(zip(prior_stated, shown_prior, strict=True)), values)
    out["prior"]["well_formed"] = float(np.mean([bool(t) and t[-1] == "." and len(said) > 0
                                                 for t, said in zip(prior_caps, prior_stated,
                                                                    strict=True)]))  # fmt: skip
    return out


def _all_attributes(truth: np.ndarray, shown: np.ndarray, values: dict) -> dict:
    """Every attribute of an image against the reference: the share right and its chance."""
    chance = float(np.mean([1.0 / len(v) for v in values.values()]))
    return {"coherence": float((truth == shown).mean()), "chance": chance, "count": truth.size}


@torch.no_grad()
def nearest_images(queries: torch.Tensor, features: torch.Tensor, images: torch.Tensor,
                   batch: int = 256) -> torch.Tensor:  # fmt: skip
    """How Shi et al. show generated image features: the training image whose ResNet-101
    features are nearest (Euclidean) to each query, (N, 2048) -> (N, 3, 64, 64)."""
    feats = features.float().to(queries.device)
    idx = torch.cat([torch.cdist(q.float(), feats).argmin(1) for q in queries.split(batch)])
    return images[idx.to(images.device)]


def evaluate(model, train: TensorData, test: TensorData, ec, *, data_root, device, seed=0,
             log=print) -> dict:  # fmt: skip
    """The metrics of one CUB model (``ec``: :class:`~mopoe_lib.config.EvalConfig`)."""
    model.eval()
    out: dict = {}
    subsets = S.powerset(len(model.modalities)).to(model.device)
    n_ll = min(ec.ll_n_test or len(test), len(test))
    ll, joint = test_log_likelihoods(model, test.subset(n_ll), subsets,
                                     num_samples=ec.ll_samples, batch_size=ec.ll_batch_size)  # fmt: skip
    names = S.names(subsets.cpu(), model.modalities)
    out["log_likelihood"] = {"per_subset": dict(zip(names, ll.tolist(), strict=True)),
                             "joint": joint, "n_test": n_ll, "samples": ec.ll_samples}  # fmt: skip
    values = test.info.get("attribute_values") or {}
    words = test.info.get("vocabulary")
    if values and words and set(model.modalities) == {"img", "sent"}:
        cache = Path(ec.classifier_dir) if ec.classifier_dir else Path(data_root) / "classifiers"
        with torch.random.fork_rng(devices=[device] if str(device).startswith("cuda") else []):
            clf = train_attribute_classifier(train, values, epochs=ec.classifier_epochs,
                                             lr=ec.classifier_lr, width=ec.classifier_width,
                                             device=device, seed=ec.classifier_seed,
                                             cache_dir=cache, log=log)  # fmt: skip
        n = min(ec.n_test or len(test), len(test))
        out["attribute_coherence"] = attribute_coherence(model, test, clf, values, words, n=n,
                                                         seed=seed)  # fmt: skip
        c = out["attribute_coherence"]
        log("[eval] cub attribute coherence (chance): " + ", ".join(
            f"{k} {c[k]['coherence']:.3f} ({c[k]['chance']:.3f})"
            for k in ("img->sent", "sent->img", "sent->sent", "img->img", "prior")))  # fmt: skip
    return out
