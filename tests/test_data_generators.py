"""Invariants of the offline generators, determinism, manifests, text encodings, loaders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from data_prep import DataPrepError, celeba, mnist_svhn_text
from data_prep.__main__ import main
from data_prep.mnist import load_offline_pools
from data_prep.polymnist import draw_tuples
from data_prep.synthetic_celeba import ATTRIBUTES
from mopoe_lib.datasets import (
    ALPHABET,
    CELEBA_ATTRIBUTES,
    DIGIT_WORDS,
    BimodalCelebA,
    MnistSvhnText,
    PolyMNIST,
    decode_text,
    encode_text,
    one_hot_text,
)

DATASETS = ("polymnist", "mnist_svhn_text", "celeba")


def prepare_small(root, *extra):
    assert main(["all", "--root", str(root), "--small", "--quiet", *extra]) == 0


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    root = tmp_path_factory.mktemp("small")
    prepare_small(root, "--seed", "3", "--workers", "1")
    return root


def files_of(root):
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --- determinism and manifests ----------------------------------------------------------------


def test_same_seed_same_bytes_any_worker_count(small, tmp_path):
    prepare_small(tmp_path, "--seed", "3", "--workers", "2")
    ours, theirs = files_of(small), files_of(tmp_path)
    assert ours.keys() == theirs.keys()
    assert [k for k in ours if ours[k] != theirs[k]] == []
    assert {p.split("/")[1] for p in ours} >= {"manifest.json", "train_m0.npy", "train_text.npy"}


def test_different_seed_different_data(small, tmp_path):
    prepare_small(tmp_path, "--seed", "4")
    for dataset, name in (("polymnist", "train_m2.npy"), ("mnist_svhn_text", "train_svhn.npy"),
                          ("celeba", "train_img.npy")):  # fmt: skip
        assert (small / dataset / name).read_bytes() != (tmp_path / dataset / name).read_bytes()


def test_manifest_contents_and_checksums(small):
    from mopoe_lib.datasets import sha256_file

    for dataset, stand_in in (("polymnist", False), ("mnist_svhn_text", True), ("celeba", True)):
        manifest = json.loads((small / dataset / "manifest.json").read_text())
        assert manifest["dataset"] == dataset and manifest["seed"] == 3
        assert manifest["stand_in"] is stand_in and manifest["comparable_to_paper"] is False
        assert manifest["description"] and manifest["splits"]
        for name, info in manifest["files"].items():
            assert sha256_file(small / dataset / name) == info["sha256"]
    assert "STAND-IN" in json.loads((small / "celeba" / "manifest.json").read_text())["description"]


def test_idempotent_and_conflicting_arguments(small, capsys):
    before = {p: p.stat().st_mtime_ns for p in small.rglob("*.npy")}
    assert main(["all", "--root", str(small), "--small", "--seed", "3"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert before == {p: p.stat().st_mtime_ns for p in small.rglob("*.npy")}
    with pytest.raises(DataPrepError, match="other arguments.*seed.*--force"):
        mnist_svhn_text.prepare(small, seed=5, n_train=200, n_test=50, dm=2, max_d=20, quiet=True)


def test_corrupted_file_is_detected(tmp_path):
    assert main(["celeba", "--root", str(tmp_path), "--small", "--quiet"]) == 0
    target = tmp_path / "celeba" / "valid_text.npy"
    data = bytearray(target.read_bytes())
    data[-1] ^= 1
    target.write_bytes(bytes(data))
    with pytest.raises(DataPrepError, match="valid_text.npy .*sha256"):
        celeba.prepare(tmp_path, n_train=100, n_valid=20, n_test=30, quiet=True)
    BimodalCelebA(tmp_path, "valid")  # sizes still agree: only verify=True hashes
    with pytest.raises(FileNotFoundError, match="sha256"):
        BimodalCelebA(tmp_path, "valid", verify=True)
    assert main(["celeba", "--root", str(tmp_path), "--small", "--quiet", "--force"]) == 0
    BimodalCelebA(tmp_path, "valid", verify=True)


# --- PolyMNIST ---------------------------------------------------------------------------------


def test_polymnist_pixels_inverted_exactly_under_the_digit(small):
    d = small / "polymnist"
    pools = load_offline_pools(seed=3)
    ds = PolyMNIST(small, "train")
    index = np.load(d / "train_digit_index.npy")
    crops = np.load(d / "train_crop.npy")
    for i in (0, 17, 199):
        x, label = ds[i]
        for m in range(5):
            background = np.load(d / f"background_m{m}.npy")
            top, left = crops[i, m]
            crop = background[top : top + 28, left : left + 28].transpose(2, 0, 1)
            digit = pools["train"][0][index[i, m]]
            on = np.broadcast_to(digit > 128, crop.shape)
            assert 20 < on[0].sum() < 600
            stored = ds.data[f"m{m}"][i].numpy()
            np.testing.assert_array_equal(stored[on], 255 - crop[on])
            np.testing.assert_array_equal(stored[~on], crop[~on])
            pixel = x[f"m{m}"].numpy()
            np.testing.assert_allclose(pixel[on], 1 - crop[on] / 255, atol=1e-6)


def test_polymnist_labels_agree_and_train_test_disjoint(small):
    d = small / "polymnist"
    pools = load_offline_pools(seed=3)
    for split in ("train", "test"):
        ds = PolyMNIST(small, split)
        index = np.load(d / f"{split}_digit_index.npy")
        pool_labels = pools[split][1]
        assert (pool_labels[index] == ds.labels.numpy()[:, None]).all()
        # a tuple shares its label, not its digits
        assert (index[:, 0] != index[:, 1]).mean() > 0.9
    train_src = np.load(d / "train_pool_source_index.npy")
    test_src = np.load(d / "test_pool_source_index.npy")
    assert len(train_src) == 4000 and len(test_src) == 1000
    assert not set(train_src) & set(test_src)
    train_digits = {bytes(x) for x in pools["train"][0]}
    assert not any(bytes(x) in train_digits for x in pools["test"][0])
    assert np.bincount(pools["test"][1]).tolist() == [100] * 10


def test_draw_tuples_reuses_digits_evenly():
    labels = np.repeat(np.arange(10), 4)  # a pool of 4 digits per class
    index = draw_tuples(labels, 100, np.random.default_rng(0))
    assert (labels[index] == labels[index[:, :1]]).all()
    for m in range(5):
        counts = np.bincount(index[:, m], minlength=40)
        assert counts.max() - counts.min() <= 2 and counts.sum() == 100


# --- MNIST-SVHN-Text ---------------------------------------------------------------------------


def test_mst_pairing_counts_and_fixed_on_disk(small):
    ds = MnistSvhnText(small, "train")
    assert ds.stand_in and "stand-in" in repr(ds).lower()
    # --small: 200 stand-in SVHN (20 per class), max_d 20, dm 2 -> 20 * 2 pairs per class
    assert len(ds) == 400
    for c in range(10):
        rows = ds.pairs[ds.labels == c]
        assert len(rows) == 40
        assert (rows[:, 0].unique(return_counts=True)[1] == 2).all()
    assert torch.equal(ds.mnist_labels[ds.pairs[:, 0]], ds.labels)
    assert torch.equal(ds.svhn_labels[ds.pairs[:, 1]], ds.labels)
    assert torch.equal(MnistSvhnText(small, "train").pairs, ds.pairs)  # not redrawn


def test_stand_in_svhn_class_means_show_their_digit():
    """A model that generates SVHN from another modality's latent, which carries only the
    digit, outputs about the class-mean image (the conditional mean under a Gaussian
    likelihood). Format 3 draws the digit lighter than its background 3 times in 4, so that
    this mean shows the digit: the class means of two disjoint halves of the images agree
    with each other and not with other classes. With either polarity at 1/2 (format 2) every
    class mean was the same flat grey (same-class correlation -0.07 here)."""
    from data_prep.synthetic_svhn import SyntheticSVHN

    x, y = SyntheticSVHN(3).generate("train", 600)
    lum = x.astype(float).mean(1).reshape(len(x), -1)
    halves = [np.stack([lum[y == c][i::2].mean(0) for c in range(10)]) for i in (0, 1)]
    halves = [h - h.mean(0) for h in halves]  # what tells the classes apart
    corr = np.corrcoef(halves[0], halves[1])[:10, 10:]
    same, other = np.diag(corr).mean(), corr[~np.eye(10, dtype=bool)].mean()
    assert same > 0.3 and same - other > 0.3, (same, other)


def test_match_pairs_counts():
    a = np.array([0] * 5 + [1] * 3)
    b = np.array([1] * 7 + [0] * 2)
    pairs = mnist_svhn_text.match_pairs(a, b, max_d=10_000, dm=20, g=np.random.default_rng(0))
    assert len(pairs) == 20 * (2 + 3)
    assert (a[pairs[:, 0]] == b[pairs[:, 1]]).all()
    capped = mnist_svhn_text.match_pairs(a, b, max_d=1, dm=3, g=np.random.default_rng(0))
    assert capped.tolist() == [[0, 7]] * 3 + [[5, 0]] * 3


def test_mst_text_round_trip_and_offsets(small):
    ds = MnistSvhnText(small, "test")
    data, labels = ds.tensors()
    assert data["mnist"].shape == (len(ds), 1, 28, 28) and data["svhn"].shape[1:] == (3, 32, 32)
    offsets = set()
    for i in range(len(ds)):
        text = decode_text(data["text"][i])
        word = DIGIT_WORDS[int(labels[i])]
        assert len(text) == 8 and text.strip() == word
        offset = text.index(word)
        assert 0 <= offset <= 7 - len(word)
        offsets.add(offset)
    assert offsets == {0, 1, 2, 3, 4}  # "one", "two", "six" reach offset 4
    x, label = ds[3]
    assert x["text"].shape == (8, 71) and (x["text"].sum(-1) == 1).all()
    assert decode_text(x["text"]).strip() == DIGIT_WORDS[label]


def test_alphabet_and_encoding():
    assert len(ALPHABET) == 71 and ALPHABET.count("-") == 2 and "*" in ALPHABET
    assert ALPHABET[:36] == "abcdefghijklmnopqrstuvwxyz0123456789" and ALPHABET[-2:] == " \n"
    idx = encode_text("  seven ")
    assert decode_text(one_hot_text(torch.from_numpy(idx))) == "  seven "
    assert encode_text("-")[0] == 36  # first occurrence, as the official str.find
    with pytest.raises(ValueError, match="not in ALPHABET"):
        encode_text("É")


# --- CelebA ------------------------------------------------------------------------------------


def test_celeba_text_rule():
    g = np.random.default_rng(0)
    text = celeba.attribute_text(["Arched_Eyebrows", "Big_Lips", "Wearing_Hat"], g)
    assert len(text) == 256
    assert text.strip("*") == "arched eyebrows, big lips, wearing hat"
    assert text.startswith("*") or text.index("a") == 0
    starts = {celeba.attribute_text(["Male"], g).index("m") for _ in range(200)}
    assert min(starts) == 0 and max(starts) <= 254 - 4 and len(starts) > 50
    many = [f"Attribute_Number_{k:02d}" for k in range(20)]  # 19 chars each: too long together
    long = celeba.attribute_text(many, g)
    kept = long.strip("*").split(", ")
    assert len(long) == 256 and len(kept) == 12  # 12 * 19 + 11 * 2 = 250 <= 256 < 271
    assert kept == [n.replace("_", " ").lower() for n in many[:12]]
    assert long.index("a") <= 255 - 250 - 1
    assert celeba.attribute_text(["X" * 100, "Y" * 154], g) == "x" * 100 + ", " + "y" * 154
    assert celeba.attribute_text(["X" * 100, "Y" * 155], g).strip("*") == "x" * 100
    assert celeba.attribute_text([], g) == "*" * 256


def test_celeba_stand_in(small):
    ds = BimodalCelebA(small, "train")
    assert ds.stand_in and ds.attribute_names == ATTRIBUTES
    assert set(ATTRIBUTES) <= set(CELEBA_ATTRIBUTES) and len(ATTRIBUTES) == 33
    order = [CELEBA_ATTRIBUTES.index(a) for a in ATTRIBUTES]
    assert order == sorted(order)
    with pytest.raises(ValueError, match="stand-in"):
        BimodalCelebA(small, "train", require_real=True)
    data, labels = ds.tensors()
    assert data["img"].shape == (100, 3, 64, 64) and labels.shape == (100, 33)
    for i in range(0, 100, 9):
        text = decode_text(data["text"][i]).strip("*")
        positive = [a.replace("_", " ").lower() for a, v in zip(ATTRIBUTES, labels[i], strict=True) if v]  # fmt: skip
        assert text == ", ".join(positive)
    a = dict(zip(ATTRIBUTES, labels.bool().T, strict=True))
    assert torch.equal(a["No_Beard"], ~(a["Goatee"] | a["Mustache"] | a["5_o_Clock_Shadow"]))
    assert not (a["Goatee"] & ~a["Male"]).any()
    hair = torch.stack([a[f"{c}_Hair"] for c in ("Black", "Blond", "Brown", "Gray")]).sum(0)
    assert hair.max() <= 1 and not (a["Bald"] & (hair > 0)).any()
    x, y = ds[0]
    assert x["img"].dtype == torch.float32 and 0 <= x["img"].min() and x["img"].max() <= 1
    assert x["text"].shape == (256, 71) and y.dtype == torch.float32
    decoded = ds.decode({k: v[:4] for k, v in data.items()})
    assert torch.equal(decoded["img"][0], x["img"]) and torch.equal(decoded["text"][0], x["text"])
