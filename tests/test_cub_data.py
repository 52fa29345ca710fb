"""CUB with captions: the real reader on small files in Shi et al.'s layout, the caption
vocabulary and encoding, the ResNet-101 features, and the SyntheticCUB stand-in."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from data_prep import DataPrepError, cub
from data_prep.__main__ import main
from data_prep.synthetic_cub import ATTRIBUTES, TEMPLATES, SyntheticCUB, parse_caption
from mopoe_lib.captions import to_text
from mopoe_lib.datasets import CubCaptions, DatasetNotPreparedError

CLASSES = {"train": ["001.Black_footed_Albatross", "002.Laysan_Albatross"],
           "test": ["003.Sooty_Albatross"]}  # fmt: skip


def write_cub(directory, per_class=2, seed=0):
    """Shi et al.'s cub/ folder: ImageFolder splits and ten captions per image, in order.
    Caption k of image j reads "this bird number img<j> has a <colour> crown ." so each
    caption names its image (img<j> appears ten times, enough for the vocabulary); the test
    images are numbered from 100, words the training vocabulary lacks."""
    g = np.random.default_rng(seed)
    base = directory / "cub"
    colours = ["red", "blue", "white", "black", "brown"]
    for split, text in cub.TEXT_FILES.items():
        lines, j = [], 0 if split == "train" else 100
        for c in CLASSES[split]:
            (base / split / c).mkdir(parents=True)
            for k in range(per_class):
                h, w = int(g.integers(180, 260)), int(g.integers(200, 300))  # CUB's vary
                image = g.integers(0, 256, (h, w, 3), dtype=np.uint8)
                Image.fromarray(image).save(base / split / c / f"{c.split('.')[1]}_{k:04d}.jpg")
                lines += [f"this bird number img{j} has a {colours[(j + i) % 5]} crown ."
                          for i in range(10)]  # fmt: skip
                j += 1
        (base / text).write_text("\n".join(lines) + "\n")
    return base


# --- tokens, vocabulary, encoding ------------------------------------------------------------


@pytest.mark.parametrize(
    "line, tokens",
    [  # real CUB captions, split as nltk's word_tokenize splits them (written out by hand)
        ("a medium bird with a gray body, feet,wings and bill.",
         ["a", "medium", "bird", "with", "a", "gray", "body", ",", "feet", ",", "wings", "and",
          "bill", "."]),
        ("a wide wing span, it's body is a light brown color.",
         ["a", "wide", "wing", "span", ",", "it", "'s", "body", "is", "a", "light", "brown",
          "color", "."]),
        ("a white belly, long tarsus', and webbed black feet.",
         ["a", "white", "belly", ",", "long", "tarsus", "'", ",", "and", "webbed", "black",
          "feet", "."]),
        ("thicker than most waterfowl's beaks", ["thicker", "than", "most", "waterfowl", "'s",
                                                 "beaks"]),
        ("The Bird doesn't have a blue-grey crest", ["the", "bird", "does", "n't", "have", "a",
                                                     "blue-grey", "crest"]),
    ],
)  # fmt: skip
def test_tokenize_splits_words_clitics_and_punctuation(line, tokens):
    assert cub.tokenize(line) == tokens


def test_vocabulary_keeps_words_seen_more_than_three_times_in_first_occurrence_order():
    captions = [["zeta", "alpha"]] * 4 + [["beta", "alpha"]] * 3 + [["<eos>"]] * 9
    words = cub.build_vocabulary(captions)
    # alpha 7, zeta 4 (kept: more than 3), beta 3 (dropped); special tokens never repeated
    assert words == ["<exc>", "<pad>", "<eos>", "zeta", "alpha"]
    ids, lengths = cub.encode_captions([["beta", "alpha", "zeta"], ["alpha"] * 40], words)
    assert ids.dtype == np.int16 and ids.shape == (2, 32)
    assert ids[0].tolist() == [0, 4, 3, 2] + [1] * 28  # beta -> <exc>, then <eos>, <pad>s
    assert ids[1].tolist() == [4] * 31 + [2] and lengths.tolist() == [4, 32]  # cut to 31
    assert to_text(ids[0], words) == "<exc> alpha zeta"


# --- the real files ----------------------------------------------------------------------------


def test_real_cub_images_in_imagefolder_order_and_captions_paired_by_index(tmp_path):
    write_cub(tmp_path / "raw")
    root = tmp_path / "out"
    code = main(["cub", "--root", str(root), "--source", "real", "--source-dir",
                 str(tmp_path / "raw"), "--quiet"])  # fmt: skip
    assert code == 0
    ds = CubCaptions(root, "train", require_real=True)
    assert not ds.stand_in and ds.comparable_to_paper and len(ds) == 40 and ds.per_image == 10
    # the images: torchvision's ImageFolder order and Resize([64, 64]) on the same files
    reference = torchvision.datasets.ImageFolder(
        tmp_path / "raw" / "cub" / "train",
        transform=torchvision.transforms.Compose([
            torchvision.transforms.Resize([64, 64]), torchvision.transforms.PILToTensor()]))  # fmt: skip
    assert len(ds.img) == len(reference) == 4
    for j, (image, label) in enumerate(reference):
        assert torch.equal(ds.img[j], image) and int(ds.image_labels[j]) == label
    # caption i describes image i // 10, and every word of the captions is in the vocabulary
    for i in range(len(ds)):
        x, label = ds[i]
        text = ds.caption(x["sent"])
        assert f"img{i // 10} " in text and text.startswith("this bird number")
        assert torch.equal(x["img"], ds.img[i // 10].float() / 255) and label == i // 20
    assert "<exc>" not in " ".join(ds.caption(c) for c in ds.captions)
    test = CubCaptions(root, "test")
    assert len(test) == 20 and test.words == ds.words  # the training vocabulary
    assert test.caption(test.captions[15]) == "this bird number <exc> has a blue crown ."
    data, labels = ds.tensors()
    assert data["sent"].shape == (40, 32) and labels.tolist() == [i // 20 for i in range(40)]


def test_real_cub_errors_name_the_missing_file_and_where_to_get_it(tmp_path):
    with pytest.raises(DataPrepError, match=r"text_trainvalclasses.txt.*cub.zip"):
        cub.prepare(tmp_path / "o", "real", source_dir=tmp_path, quiet=True)
    base = write_cub(tmp_path / "raw")
    lines = (base / "text_testclasses.txt").read_text().splitlines()
    (base / "text_testclasses.txt").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataPrepError, match=r"19 captions for the 2 images.*exactly 10 per image"):
        cub.prepare(tmp_path / "o", "real", source_dir=tmp_path / "raw", quiet=True)
    with pytest.raises(DataPrepError, match="needs --resnet-weights"):
        cub.prepare(tmp_path / "o", "real", source_dir=tmp_path / "raw", features="resnet101")
    with pytest.raises(DataPrepError, match="does not exist.*resnet101-63fe2227.pth"):
        cub.prepare(tmp_path / "o", "real", source_dir=tmp_path / "raw", features="resnet101",
                    resnet_weights=tmp_path / "none.pth", quiet=True)  # fmt: skip
    assert not (tmp_path / "o" / "cub").exists()
    with pytest.raises(DatasetNotPreparedError, match="python -m data_prep cub --root"):
        CubCaptions(tmp_path / "o")


def test_resnet_features_as_shi_et_al_computed_them(tmp_path):
    base = write_cub(tmp_path / "raw", per_class=1)
    torch.manual_seed(0)
    net = torchvision.models.resnet101()
    torch.save(net.state_dict(), tmp_path / "r101.pth")
    root = tmp_path / "out"
    cub.prepare(root, "real", source_dir=tmp_path / "raw", features="resnet101",
                resnet_weights=tmp_path / "r101.pth", quiet=True)  # fmt: skip
    ds = CubCaptions(root, "test")
    # reference: torchvision's Resize(224) + ToTensor, the network with fc removed
    net.fc = torch.nn.Identity()
    net.eval()
    tx = torchvision.transforms.Compose([torchvision.transforms.Resize(224),
                                         torchvision.transforms.ToTensor()])  # fmt: skip
    files = sorted((base / "test").rglob("*.jpg"))
    with torch.no_grad(), Image.open(files[0]) as im:
        expected = net(tx(im.convert("RGB"))[None])[0]
    assert ds.features.shape == (1, 2048)
    torch.testing.assert_close(ds.features[0], expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(DataPrepError, match="not a ResNet-101 state dict"):
        torch.save({"w": torch.zeros(1)}, tmp_path / "bad.pth")
        cub.prepare(tmp_path / "o2", "real", source_dir=tmp_path / "raw", features="resnet101",
                    resnet_weights=tmp_path / "bad.pth", quiet=True)  # fmt: skip


# --- the stand-in ----------------------------------------------------------------------------


def test_synthetic_cub_is_seeded_and_does_not_depend_on_the_workers():
    a = SyntheticCUB(3).generate("train", 12, workers=1)
    b = SyntheticCUB(3).generate("train", 12, workers=2)
    c = SyntheticCUB(4).generate("train", 12, workers=1)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    assert not np.array_equal(a[0], c[0])
    assert a[0].shape == (12, 3, 64, 64) and a[1].shape == (12, len(ATTRIBUTES))
    assert len(a[2]) == 120


def test_every_caption_states_only_the_attributes_of_its_bird():
    """parse_caption reads the stated attributes back from the words, independently of the
    generator: each caption must state at least two, all of them true of its image."""
    images, labels, captions = SyntheticCUB(0).generate("test", 60)
    truth = [{k: ATTRIBUTES[k][v] for k, v in zip(ATTRIBUTES, row, strict=True)} for row in labels]
    stated = set()
    for i, tokens in enumerate(captions):
        found = parse_caption(tokens)
        assert len(found) >= 2, " ".join(tokens)
        assert all(truth[i // 10][k] == v for k, v in found.items()), (
            " ".join(tokens),
            truth[i // 10],
        )
        stated |= set(found)
    assert stated == set(ATTRIBUTES)  # every attribute is described somewhere
    phrasings = {" ".join(t) for t in captions}
    assert len(phrasings) > 200 and len({t[0] for t in captions}) >= 4  # word-order variety
    assert len(TEMPLATES) >= 8


def test_offline_cub_is_a_named_stand_in(tmp_path):
    root = tmp_path / "out"
    assert main(["cub", "--root", str(root), "--small", "--quiet"]) == 0
    ds = CubCaptions(root, "train")
    assert ds.stand_in and not ds.comparable_to_paper and "STAND-IN" in ds.description
    assert len(ds) == 1000 and ds.attribute_names == tuple(ATTRIBUTES)
    assert "STAND-IN" in repr(ds)
    with pytest.raises(ValueError, match="stand-in.*--source real"):
        CubCaptions(root, "train", require_real=True)
    with pytest.raises(DataPrepError, match="--source real"):
        cub.prepare(tmp_path / "o", features="resnet101", resnet_weights=tmp_path / "w.pth")
