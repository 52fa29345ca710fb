"""The real-data readers on small files written in the real formats, and their error messages."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import scipy.io
import torch
import torchvision
from PIL import Image

from data_prep import DataPrepError, celeba, mnist_svhn_text, polymnist
from data_prep.__main__ import main
from data_prep.mnist import load_mnist, read_idx
from mopoe_lib.datasets import (
    CELEBA_ATTRIBUTES,
    DIGIT_WORDS,
    BimodalCelebA,
    DatasetNotPreparedError,
    MnistSvhnText,
    PolyMNIST,
    decode_text,
)

# --- writers for the real formats ------------------------------------------------------------


def write_idx(path, array, gz=False):
    array = np.asarray(array, dtype=np.uint8)
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(header + array.tobytes())


def fake_digits(n, seed):
    """n 28x28 uint8 'digits' (a random blob per image) with labels cycling through 0..9."""
    g = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    for i in range(n):
        y, x = g.integers(6, 16, 2)
        images[i, y : y + 10, x : x + 6] = g.integers(100, 256, (10, 6))
    return images, np.arange(n) % 10


def write_mnist(directory, n_train=60, n_test=30, gz=False):
    raw = directory / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    data = {}
    for split, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        images, labels = fake_digits(n, seed)
        suffix = ".gz" if gz else ""
        write_idx(raw / f"{split}-images-idx3-ubyte{suffix}", images, gz)
        write_idx(raw / f"{split}-labels-idx1-ubyte{suffix}", labels, gz)
        data[split] = (images, labels)
    return data


def write_svhn(directory, split="train", n=40, seed=3):
    g = np.random.default_rng(seed)
    x = g.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
    y = (np.arange(n) % 10).reshape(n, 1)
    y[y == 0] = 10  # SVHN's convention for the digit 0
    scipy.io.savemat(directory / mnist_svhn_text.SVHN_FILES[split], {"X": x, "y": y})
    return x, y


def write_celeba(directory, n=6):
    """CelebA's three inputs for n images; image k is in split k % 3."""
    images = directory / "img_align_celeba"
    images.mkdir(parents=True)
    g = np.random.default_rng(4)
    files, rows = [], []
    for k in range(n):
        name = f"{k + 1:06d}.jpg"
        Image.fromarray(g.integers(0, 256, (218, 178, 3), dtype=np.uint8)).save(images / name)
        values = np.where(g.random(40) < 0.3, 1, -1)
        files.append(name)
        rows.append(f"{name} " + " ".join(f"{v:2d}" for v in values))
    header = " ".join(CELEBA_ATTRIBUTES)
    (directory / "list_attr_celeba.txt").write_text(f"{n}\n{header}\n" + "\n".join(rows) + "\n")
    partition = "\n".join(f"{f} {k % 3}" for k, f in enumerate(files))
    (directory / "list_eval_partition.txt").write_text(partition + "\n")
    return files


def write_backgrounds(directory, count=5):
    directory.mkdir()
    g = np.random.default_rng(5)
    for k in range(count):
        image = g.integers(0, 256, (40 + k, 50, 3), dtype=np.uint8)
        Image.fromarray(image).save(directory / f"bg{k}.png")


def write_official(directory, n=(12, 5)):
    g = np.random.default_rng(6)
    for split, count in zip(("train", "test"), n, strict=True):
        for m in range(5):
            d = directory / split / f"m{m}"
            d.mkdir(parents=True)
            for i in range(count):
                image = g.integers(0, 256, (28, 28, 3), dtype=np.uint8)
                Image.fromarray(image).save(d / f"{i}.{(i * 7) % 10}.png")


# --- MNIST IDX -------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_raw_and_gzip(tmp_path, gz):
    data = write_mnist(tmp_path, gz=gz)
    images, labels = load_mnist(tmp_path, "train")
    np.testing.assert_array_equal(images, data["train"][0])
    np.testing.assert_array_equal(labels, data["train"][1])
    images, labels = load_mnist(tmp_path, "test")
    assert images.shape == (30, 28, 28) and labels.dtype == np.int64


def test_mnist_reader_agrees_with_torchvision(tmp_path):
    write_mnist(tmp_path)
    ours, labels = load_mnist(tmp_path, "train")
    theirs = torchvision.datasets.MNIST(tmp_path, train=True, download=False)
    np.testing.assert_array_equal(ours, theirs.data.numpy())
    np.testing.assert_array_equal(labels, theirs.targets.numpy())


def test_mnist_missing_files_are_named(tmp_path):
    with pytest.raises(DataPrepError, match="train-images-idx3-ubyte.*--download"):
        load_mnist(tmp_path, "train")


def test_idx_wrong_magic_and_truncation(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x00\x00\x0d\x03" + b"\x00" * 20)
    with pytest.raises(DataPrepError, match="magic number 00000d03"):
        read_idx(bad)
    short = tmp_path / "short"
    write_idx(short, np.zeros((3, 28, 28)))
    short.write_bytes(short.read_bytes()[:-10])
    with pytest.raises(DataPrepError, match="truncated"):
        read_idx(short)
    notgz = tmp_path / "x.gz"
    notgz.write_bytes(b"not gzip at all")
    with pytest.raises(DataPrepError, match="cannot read"):
        read_idx(notgz)


# --- SVHN .mat -------------------------------------------------------------------------------


def test_svhn_mat_matches_torchvision_and_maps_10_to_0(tmp_path, monkeypatch):
    x, y = write_svhn(tmp_path)
    images, labels = mnist_svhn_text.load_svhn(tmp_path, "train")
    assert images.shape == (40, 3, 32, 32)
    np.testing.assert_array_equal(images[5], x[..., 5].transpose(2, 0, 1))
    assert labels[0] == 0 and labels[10] == 0 and 10 not in labels
    # torchvision's reader checks the official md5; bypass it to compare on this small file
    monkeypatch.setattr(torchvision.datasets.SVHN, "_check_integrity", lambda self: True)
    theirs = torchvision.datasets.SVHN(tmp_path, split="train")
    np.testing.assert_array_equal(images, theirs.data)
    np.testing.assert_array_equal(labels, theirs.labels)


def test_svhn_errors(tmp_path):
    with pytest.raises(DataPrepError, match=r"missing file train_32x32\.mat.*--download"):
        mnist_svhn_text.load_svhn(tmp_path, "train")
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"y": np.ones((3, 1))})
    with pytest.raises(DataPrepError, match="no 'X' variable"):
        mnist_svhn_text.load_svhn(tmp_path, "test")
    (tmp_path / "train_32x32.mat").write_bytes(b"garbage")
    with pytest.raises(DataPrepError, match="cannot read"):
        mnist_svhn_text.load_svhn(tmp_path, "train")


def test_real_mnist_svhn_text_pairing(tmp_path):
    write_mnist(tmp_path, n_train=63, n_test=30)
    write_svhn(tmp_path, "train", n=45)
    write_svhn(tmp_path, "test", n=20, seed=9)
    root = tmp_path / "out"
    mnist_svhn_text.prepare(root, "real", seed=1, dm=3, max_d=5, source_dir=tmp_path, quiet=True)
    ds = MnistSvhnText(root, "train", require_real=True)
    assert not ds.stand_in and not ds.comparable_to_paper  # dm 3 / max_d 5 are not the paper's
    # per class: n = min(#MNIST (6 or 7), #SVHN (4 or 5), max_d 5) images, each used dm times
    for c in range(10):
        n = min(int((ds.mnist_labels == c).sum()), int((ds.svhn_labels == c).sum()), 5)
        rows = ds.pairs[ds.labels == c]
        assert len(rows) == 3 * n
        for column, labels in ((0, ds.mnist_labels), (1, ds.svhn_labels)):
            first = torch.nonzero(labels == c).flatten()[:n]
            used, counts = rows[:, column].unique(return_counts=True)
            assert torch.equal(used, first) and (counts == 3).all()
    assert torch.equal(ds.mnist_labels[ds.pairs[:, 0]], ds.svhn_labels[ds.pairs[:, 1]])
    x, label = ds[7]
    assert decode_text(x["text"]).strip() == DIGIT_WORDS[label]


# --- CelebA files ----------------------------------------------------------------------------


def test_celeba_real_files(tmp_path):
    files = write_celeba(tmp_path / "raw")
    root = tmp_path / "out"
    celeba.prepare(root, "real", seed=0, source_dir=tmp_path / "raw", quiet=True)
    ds = BimodalCelebA(root, "train", require_real=True)
    assert len(ds) == 2 and ds.attribute_names == CELEBA_ATTRIBUTES and ds.comparable_to_paper
    # image: torchvision's CenterCrop(148) + bicubic Resize(64) on the PIL image
    transform = torchvision.transforms.Compose(
        [
            torchvision.transforms.CenterCrop(148),
            torchvision.transforms.Resize(
                (64, 64), torchvision.transforms.InterpolationMode.BICUBIC
            ),
            torchvision.transforms.PILToTensor(),
        ]
    )
    with Image.open(tmp_path / "raw" / "img_align_celeba" / files[3]) as im:  # train's 2nd
        assert torch.equal(ds.img[1], transform(im))
    lines = (tmp_path / "raw" / "list_attr_celeba.txt").read_text().splitlines()
    values = [v == "1" for v in lines[2 + 3].split()[1:]]
    assert ds.labels[1].tolist() == values
    text = decode_text(ds.text[1])
    expected = ", ".join(n.replace("_", " ").lower() for n, v in zip(CELEBA_ATTRIBUTES, values, strict=True) if v)  # fmt: skip
    assert len(text) == 256 and text.strip("*") == expected
    assert celeba.SPLITS == ("train", "valid", "test")
    assert len(BimodalCelebA(root, "test")) == 2


def test_celeba_errors(tmp_path):
    raw = tmp_path / "raw"
    files = write_celeba(raw)
    attr = raw / "list_attr_celeba.txt"
    good = attr.read_text()
    attr.write_text(good.replace(f"{files[2]} ", f"{files[2]} 1 "))  # 41 values on line 5
    with pytest.raises(DataPrepError, match="line 5: expected a file name and 40 values"):
        celeba.prepare(tmp_path / "o", "real", source_dir=raw, quiet=True)
    attr.write_text(good)
    (raw / "img_align_celeba" / files[1]).unlink()
    with pytest.raises(DataPrepError, match=f"valid split are missing.*{files[1]}"):
        celeba.prepare(tmp_path / "o", "real", source_dir=raw, quiet=True)
    (raw / "list_eval_partition.txt").unlink()
    with pytest.raises(DataPrepError, match="missing file .*list_eval_partition.txt.*CelebA"):
        celeba.prepare(tmp_path / "o", "real", source_dir=raw, quiet=True)
    assert not (tmp_path / "o" / "celeba").exists()  # no stand-in fallback, nothing half-written
    assert list((tmp_path / "o").iterdir()) == []


# --- PolyMNIST from MNIST + backgrounds, and from the official folders -------------------------


def test_polymnist_from_mnist_and_background_files(tmp_path):
    write_mnist(tmp_path / "raw", gz=True)
    write_backgrounds(tmp_path / "bg")
    root = tmp_path / "out"
    polymnist.prepare(
        root, "mnist", seed=0, n_train=60, n_test=30, source_dir=tmp_path / "raw",
        backgrounds=tmp_path / "bg", quiet=True,
    )  # fmt: skip
    ds = PolyMNIST(root, "train")
    index = np.load(root / "polymnist" / "train_digit_index.npy")
    # with as many tuples as digits, every digit appears exactly once per modality
    for m in range(5):
        assert sorted(index[:, m]) == list(range(60))
    assert ds.manifest["args"]["backgrounds"] == [f"bg{k}.png" for k in range(5)]
    assert np.load(root / "polymnist" / "background_m3.npy").shape == (43, 50, 3)


def test_polymnist_background_errors(tmp_path):
    write_mnist(tmp_path / "raw")
    with pytest.raises(DataPrepError, match="--backgrounds DIR.*fractal_tree.jpg"):
        polymnist.prepare(tmp_path / "o", "mnist", source_dir=tmp_path / "raw", quiet=True)
    write_backgrounds(tmp_path / "bg", count=4)
    with pytest.raises(DataPrepError, match="exactly 5 background images.*found 4"):
        polymnist.prepare(
            tmp_path / "o", "mnist", source_dir=tmp_path / "raw", backgrounds=tmp_path / "bg"
        )
    write_backgrounds(tmp_path / "bg5")
    with pytest.raises(DataPrepError, match="t10k-images-idx3-ubyte"):
        (tmp_path / "raw" / "MNIST" / "raw" / "t10k-images-idx3-ubyte").unlink()
        polymnist.prepare(
            tmp_path / "o", "mnist", source_dir=tmp_path / "raw", backgrounds=tmp_path / "bg5",
            quiet=True,
        )  # fmt: skip


def test_official_polymnist_folders(tmp_path):
    write_official(tmp_path / "PolyMNIST")
    root = tmp_path / "out"
    polymnist.prepare(root, "official", source_dir=tmp_path / "PolyMNIST", quiet=True)
    ds = PolyMNIST(root, "train", require_real=True)
    assert len(ds) == 12 and ds.comparable_to_paper
    assert ds.labels.tolist() == [(i * 7) % 10 for i in range(12)]  # numeric order, not 0,1,10,11,2
    with Image.open(tmp_path / "PolyMNIST" / "train" / "m2" / "10.0.png") as im:
        assert torch.equal(ds.data["m2"][10], torch.from_numpy(np.array(im)).permute(2, 0, 1))
    sub = PolyMNIST(root, "test", modalities=("m4", "m0"))
    assert sub.modalities == ("m4", "m0") and set(sub[0][0]) == {"m4", "m0"}


def test_official_polymnist_errors(tmp_path):
    write_official(tmp_path / "P")
    (tmp_path / "P" / "train" / "m1" / "3.1.png").rename(
        tmp_path / "P" / "train" / "m1" / "3.2.png"
    )
    with pytest.raises(DataPrepError, match="label mismatch.*3.2.png"):
        polymnist.prepare(tmp_path / "o", "official", source_dir=tmp_path / "P", quiet=True)
    for f in (tmp_path / "P" / "test" / "m3").iterdir():
        f.unlink()
    (tmp_path / "P" / "test" / "m3").rmdir()
    (tmp_path / "P" / "train" / "m1" / "3.2.png").rename(
        tmp_path / "P" / "train" / "m1" / "3.1.png"
    )
    with pytest.raises(DataPrepError, match=r"missing folder .*test/m3.*4899160"):
        polymnist.prepare(tmp_path / "o", "official", source_dir=tmp_path / "P", quiet=True)


# --- CLI and loaders -------------------------------------------------------------------------


def test_cli_real_source_missing_files_fails_without_fallback(tmp_path, capsys):
    code = main(["mnist_svhn_text", "--root", str(tmp_path / "o"), "--source", "real",
                 "--source-dir", str(tmp_path), "--quiet"])  # fmt: skip
    assert code == 2
    assert "train-images-idx3-ubyte" in capsys.readouterr().err
    assert not (tmp_path / "o" / "mnist_svhn_text").exists()


def test_foreign_folder_in_root_is_never_replaced(tmp_path):
    (tmp_path / "celeba").mkdir()
    (tmp_path / "celeba" / "list_attr_celeba.txt").write_text("user data")
    with pytest.raises(DataPrepError, match="holds no manifest.json"):
        celeba.prepare(tmp_path, n_train=5, n_valid=5, n_test=5, quiet=True, force=True)
    assert (tmp_path / "celeba" / "list_attr_celeba.txt").read_text() == "user data"


def test_loader_says_which_command_to_run(tmp_path):
    with pytest.raises(DatasetNotPreparedError, match="python -m data_prep celeba --root"):
        BimodalCelebA(tmp_path)
    with pytest.raises(DatasetNotPreparedError, match="python -m data_prep polymnist --root"):
        PolyMNIST(tmp_path, "test")
