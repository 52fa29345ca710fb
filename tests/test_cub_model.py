"""CUB's networks (Shi et al.'s architecture), sentence decoding, and the stand-in's
attribute-coherence evaluation, each against a reference written here."""

from __future__ import annotations

import pytest
import torch

from mopoe_lib import captions as C
from mopoe_lib import networks
from mopoe_lib.config import ConfigError, make_config
from mopoe_lib.data import load
from mopoe_lib.evaluation import cub as E
from mopoe_lib.model import build_model
from mopoe_lib.networks import cub as N


def _conv(c_in, c_out, k=16, bias=True):  # parameters of a 4x4 (k = 16 taps) convolution
    return c_in * c_out * k + (c_out if bias else 0)


def test_image_networks_have_shi_et_al_s_layers_and_shapes():
    enc, dec = N.ImageEncoder(64, 64), N.ImageDecoder(64, 64)
    # 3-64-128-256-512 stride-2 convolutions, two 4x4 heads to 64; the decoder mirrors it
    expected = (_conv(3, 64) + _conv(64, 128) + _conv(128, 256) + _conv(256, 512)
                + 2 * _conv(512, 64))  # fmt: skip
    assert sum(p.numel() for p in enc.parameters()) == expected
    assert sum(p.numel() for p in dec.parameters()) == (
        _conv(64, 512) + _conv(512, 256) + _conv(256, 128) + _conv(128, 64) + _conv(64, 3)
    )
    mu, logvar = enc(torch.rand(2, 3, 64, 64))
    assert mu.shape == logvar.shape == (2, 64)
    out = dec(torch.randn(5, 64))
    assert out.shape == (5, 3, 64, 64) and 0 <= out.min() and out.max() <= 1


def test_sentence_networks_embed_one_hot_words_and_tie_the_output_layer():
    v = 50
    enc = N.SentenceEncoder(64, v, 32)
    dec = N.SentenceDecoder(64, enc.embedding, 32)
    ids = torch.randint(0, v, (3, 32))
    one_hot = torch.nn.functional.one_hot(ids, v).float()
    # the embedding of a one-hot word is the word's row, as nn.Embedding looks it up
    looked_up = enc.embedding.weight.T[ids]
    torch.testing.assert_close(enc.embedding(one_hot), looked_up)
    mu, _ = enc(one_hot)
    assert mu.shape == (3, 64)
    logits = dec(torch.randn(3, 64))
    assert logits.shape == (3, 32, v)
    assert dec.embedding.weight is enc.embedding.weight  # tied, as Shi et al.
    # convolutions without bias (batch norm follows): 1-32-64-128, then two (1x4) 128-128
    convs = (_conv(1, 32, bias=False) + _conv(32, 64, bias=False) + _conv(64, 128, bias=False)
             + 2 * _conv(128, 128, k=4, bias=False) + 2 * _conv(128, 64, bias=False))  # fmt: skip
    norms = 2 * (32 + 64 + 128 + 128 + 128)
    assert sum(p.numel() for p in enc.parameters()) == v * 128 + convs + norms


def test_cub_models_train_every_method_and_weigh_the_sentence_by_its_words():
    cfg = make_config("cub", "mopoe", "smoke")
    with pytest.raises(ConfigError, match="vocab_size must be the number of words"):
        make_config("cub", "mopoe", "smoke", {"model.vocab_size": 2})
    with pytest.raises(ValueError, match="cub needs vocab_size"):
        build_model(make_config("cub", "mopoe", "paper"))  # None: train_or_load reads it
    with pytest.raises(ConfigError, match="curve_every_steps must be 0 for cub"):
        make_config("cub", "mopoe", "smoke", {"train.curve_every_steps": 5})
    # Shi et al.'s llik_scaling: the image by 32 / (3 * 64 * 64), the sentence by 1
    official = networks.rec_weights("cub", "official")
    torch.testing.assert_close(official, torch.tensor([32 / 12288, 1.0]))
    size = networks.rec_weights("cub", "size")
    assert float(size[1] / size[0]) == pytest.approx(12288 / 32)  # the same ratio
    g = torch.Generator().manual_seed(0)
    x = {"img": torch.rand(4, 3, 64, 64, generator=g),
         "sent": torch.nn.functional.one_hot(torch.randint(0, 35, (4, 32), generator=g), 35).float()}  # fmt: skip
    for method in ("mopoe", "mvae", "mmvae", "mmvae_dreg"):
        model = build_model(make_config("cub", method, "smoke", {"model.importance_samples": 2}))
        loss = model.objective(x).loss()
        loss.backward()
        assert torch.isfinite(loss), method
    assert cfg.model.vocab_size == N.STANDIN_VOCABULARY


def test_sentences_are_read_to_the_first_end_token():
    words = ["<exc>", "<pad>", "<eos>", "a", "red", "bird"]
    ids = torch.tensor([3, 4, 1, 5, 2, 3, 3])
    assert C.truncate(ids) == [3, 4, 5] and C.to_text(ids, words) == "a red bird"
    logits = torch.full((7, 6), -9.0).scatter_(1, ids[:, None], 9.0)
    assert torch.equal(C.greedy(logits), ids) and C.to_text(logits, words) == "a red bird"
    g = torch.Generator().manual_seed(0)
    draws = C.sample(logits[None].repeat(500, 1, 1), g)
    assert (draws == ids).float().mean() > 0.99  # e^18 odds for the likely word
    flat = C.sample(torch.zeros(4000, 1, 6), g).flatten()
    counts = torch.bincount(flat, minlength=6).float() / 4000
    assert (counts - 1 / 6).abs().max() < 0.03  # uniform logits: every word alike
    with pytest.raises(ValueError, match="temperature must be positive"):
        C.sample(logits, temperature=0)


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    root = tmp_path_factory.mktemp("cub")
    prepare = {"n_train": 120, "n_test": 40}
    return (load("cub", root, "train", prepare=prepare, log=lambda s: None),
            load("cub", root, "test", prepare=prepare, log=lambda s: None))  # fmt: skip


class _Oracle:
    """A "model" whose generations are the inputs themselves (or another bird's)."""

    modalities = ("img", "sent")
    device = torch.device("cpu")

    def __init__(self, shift: int = 0):
        self.shift = shift

    def conditional_generate(self, x, subsets, n=1):
        img, sent = x["img"].roll(self.shift, 0), x["sent"].roll(self.shift, 0)
        return {"img": torch.stack([img, img])[None], "sent": torch.stack([sent, sent])[None]}

    def prior_sample(self, n):
        return torch.zeros(n, 1)

    def decode(self, z):
        return {"img": self.prior_img[: len(z)], "sent": self.prior_sent[: len(z)]}


def test_attribute_coherence_of_an_oracle_is_one_and_of_another_bird_is_near_chance(standin):
    train, test = standin
    values = test.info["attribute_values"]
    words = test.info["vocabulary"]
    rows = test.rows["img"]
    first = E._first_caption_of_each_image(rows)
    assert torch.equal(rows[first], torch.arange(40))  # one caption per image, in order
    # an instrument that reads the truth: a classifier replaced by the labels themselves
    truth = test.labels[first].long()
    sizes = [len(v) for v in values.values()]

    class Reader(torch.nn.Module):
        def forward(self, images):  # the bird whose stored image this is (exact match)
            stored = test.data["img"].float() / 255
            i = ((images[:, None] - stored[None]).abs().flatten(2).sum(-1)).argmin(1)
            return torch.cat([torch.nn.functional.one_hot(truth[i, a], s).float()
                              for a, s in enumerate(sizes)], -1)  # fmt: skip

    oracle = _Oracle()
    x = test.batch(first)
    oracle.prior_img, oracle.prior_sent = x["img"], x["sent"]
    c = E.attribute_coherence(oracle, test, Reader(), values, words, n=40)
    for d in ("img->sent", "sent->sent", "sent->img", "img->img", "prior"):
        assert c[d]["coherence"] == 1.0, (d, c[d])
    assert c["classifier_on_test_images"] == 1.0 and c["prior"]["well_formed"] == 1.0
    # chance: each stated colour counts 1/8, a size, beak or tail 1/2
    assert 0.125 < c["img->sent"]["chance"] < 0.5
    other = _Oracle(shift=1)  # every generation describes the next bird
    other.prior_img, other.prior_sent = x["img"], x["sent"].roll(1, 0)
    d = E.attribute_coherence(other, test, Reader(), values, words, n=40)
    for k in ("img->sent", "sent->img", "prior"):
        assert d[k]["coherence"] < 0.6, (k, d[k])


def test_the_attribute_classifier_learns_the_stand_in(standin, tmp_path):
    train, test = standin
    values = train.info["attribute_values"]
    clf = E.train_attribute_classifier(train, values, epochs=3, lr=3e-3, width=8,
                                       cache_dir=tmp_path, log=lambda s: None)  # fmt: skip
    again = E.train_attribute_classifier(train, values, epochs=3, lr=3e-3, width=8,
                                         cache_dir=tmp_path, log=lambda s: None)  # fmt: skip
    first = E._first_caption_of_each_image(test.rows["img"])
    x = test.batch(first)["img"]
    sizes = [len(v) for v in values.values()]
    assert torch.equal(E.read_attributes(clf, x, sizes), E.read_attributes(again, x, sizes))
    assert len(list(tmp_path.glob("cub_img_attributes_*.pt"))) == 1  # cached once


def test_a_vocabulary_that_differs_from_the_model_s_is_named(standin, tmp_path):
    from mopoe_lib.data import DataError, cub_vocab_size
    from mopoe_lib.train import run

    train, test = standin
    cfg = make_config("cub", "mopoe", "smoke", {"model.vocab_size": 40})
    with pytest.raises(DataError, match="has 35 words but model.vocab_size is 40"):
        run(cfg, tmp_path / "r", train_data=train, test_data=test, device="cpu",
            progress=False, log=lambda s: None)  # fmt: skip
    assert cub_vocab_size(train.info["root"]) == 35
    with pytest.raises(DataError, match="CUB is not prepared.*data_prep cub"):
        cub_vocab_size(tmp_path)


def test_a_claim_needs_coherence_two_standard_errors_above_chance():
    from mopoe_lib.figures.cub import above_chance

    # 400 attributes at chance 0.25: one standard error is sqrt(0.25 * 0.75 / 400) = 0.0217
    assert above_chance({"coherence": 0.30, "chance": 0.25, "count": 400}) == (
        True, pytest.approx(0.021651, abs=1e-6))  # fmt: skip
    assert above_chance({"coherence": 0.29, "chance": 0.25, "count": 400})[0] is False
    assert above_chance({"coherence": float("nan"), "chance": 0.25, "count": 0})[0] is False


def test_the_feature_model_of_shi_et_al_and_its_nearest_neighbour_display(tmp_path):
    from test_cub_data import write_cub

    from data_prep import cub as prep
    from mopoe_lib.train import run

    enc, dec = N.FeatureEncoder(64), N.FeatureDecoder(64)
    lin = lambda i, o: i * o + o  # noqa: E731
    assert sum(p.numel() for p in enc.parameters()) == (
        lin(2048, 1024) + lin(1024, 512) + lin(512, 256) + 2 * lin(256, 64)
    )
    assert sum(p.numel() for p in dec.parameters()) == (
        lin(64, 256) + lin(256, 512) + lin(512, 1024) + lin(1024, 2048)
    )
    # Shi et al.'s README: llik_scaling 0.002 for the features (cubISft)
    torch.testing.assert_close(networks.rec_weights("cub", "official", ["feat", "sent"]),
                               torch.tensor([0.002, 1.0]))  # fmt: skip
    write_cub(tmp_path / "raw", per_class=2)
    torch.manual_seed(0)
    import torchvision

    torch.save(torchvision.models.resnet101().state_dict(), tmp_path / "r101.pth")
    prep.prepare(tmp_path / "d", "real", source_dir=tmp_path / "raw", features="resnet101",
                 resnet_weights=tmp_path / "r101.pth", quiet=True)  # fmt: skip
    train = load("cub", tmp_path / "d", "train", log=lambda s: None)
    test = load("cub", tmp_path / "d", "test", log=lambda s: None)
    assert train.modalities == ("img", "sent", "feat") and torch.equal(
        train.rows["feat"], train.rows["img"])  # fmt: skip
    vocab = len(train.info["vocabulary"])
    # a random ResNet's features lie far outside a trained one's: train on features in [0, 1]
    for d in (train, test):
        d.data["feat"] = torch.rand_like(d.data["feat"])
    cfg = make_config("cub", "mmvae", "smoke", {"model.modalities": ["feat", "sent"],
                                                "model.vocab_size": vocab})  # fmt: skip
    metrics = run(cfg, tmp_path / "r", train_data=train, test_data=test, device="cpu",
                  progress=False, log=lambda s: None)  # fmt: skip
    assert set(metrics["eval"]["log_likelihood"]["per_subset"]) == {"feat", "sent", "feat,sent"}
    # a stored feature's nearest training image is its own image
    shown = E.nearest_images(train.data["feat"][[2, 0]], train.data["feat"], train.data["img"])
    assert torch.equal(shown, train.data["img"][[2, 0]])
    # the default CUB model stays the pixel model, whatever the data also hold
    pixels = run(make_config("cub", "mopoe", "smoke", {"model.vocab_size": vocab}),
                 tmp_path / "p", train_data=train, test_data=test, device="cpu",
                 progress=False, log=lambda s: None)  # fmt: skip
    assert set(pixels["eval"]["log_likelihood"]["per_subset"]) == {"img", "sent", "img,sent"}
