"""Shapes of every network of the datasets, and the reconstruction weights."""

import pytest
import torch

from mopoe_lib import networks as N


@pytest.mark.parametrize("dataset", N.DATASETS)
def test_encoders_decoders_classifiers_have_the_data_shapes(dataset):
    style = 4 if dataset == "celeba" else 0
    # CUB: every modality (pixels, sentence and ResNet features), a vocabulary of 11 words
    extra = {"vocab_size": 11, "modalities": N.MODALITIES["cub"]} if dataset == "cub" else {}
    nets = N.build(dataset, latent_dim=6, style_dim=style, width=4, **extra)
    assert nets.modalities == N.MODALITIES[dataset]
    for m in nets.modalities:
        shape = nets.data_shapes[m]
        x = torch.rand(3, *shape)
        mu, logvar = nets.encoders[m](x)
        assert mu.shape == logvar.shape == (3, 6 + style)
        params = nets.decoders[m](mu)
        assert params.shape == (3, *shape)
        assert nets.likelihoods[m].log_prob(x, params).shape == (3,)
        if dataset == "cub" and m != "img":
            continue  # captions are read by parsing; features have no classifier
        logits = N.classifier(dataset, m, 7, width=4)(x)
        assert logits.shape == (3, 7)


def test_polymnist_sizes_match_the_official_networks():
    enc = N.polymnist.Encoder(512)
    # conv 3-32-64-128, fc 2048-512, two 512-512 heads
    expected = (3 * 32 * 9 + 32) + (32 * 64 * 9 + 64) + (64 * 128 * 9 + 128)
    expected += 2048 * 512 + 512 + 2 * (512 * 512 + 512)
    assert sum(p.numel() for p in enc.parameters()) == expected
    clf = N.polymnist.Classifier()
    assert clf(torch.rand(2, 3, 28, 28)).shape == (2, 10)


def test_reconstruction_weights():
    mst = N.rec_weights("mnist_svhn_text")
    torch.testing.assert_close(mst, torch.tensor([3072 / 784, 1.0, 384.0]))
    assert N.rec_weights("polymnist").tolist() == [1.0] * 5
    torch.testing.assert_close(N.rec_weights("celeba"), torch.tensor([1.0, 48.0]))
    torch.testing.assert_close(N.rec_weights("celeba", "official"), torch.tensor([1 / 3, 16.0]))
    assert N.rec_weights("celeba", [2, 3]).tolist() == [2.0, 3.0]
    with pytest.raises(ValueError, match="one value per modality"):
        N.rec_weights("celeba", [1.0])


def test_mnist_decoder_is_bounded_and_text_gives_logits():
    nets = N.build("mnist_svhn_text", latent_dim=5)
    z = 10 * torch.randn(4, 5)
    assert 0 <= nets.decoders["mnist"](z).min() and nets.decoders["mnist"](z).max() <= 1
    assert nets.decoders["text"](z).shape == (4, 8, 71)


def test_bad_arguments():
    with pytest.raises(ValueError, match="dataset must be one of"):
        N.build("mnist", latent_dim=2)
    with pytest.raises(ValueError, match="celeba only"):
        N.build("polymnist", latent_dim=2, style_dim=2)
