"""MultiVae (PyPI ``multivae``) models on mopoe_lib's networks, for side-by-side benchmarks.

The peer library wants pythae ``BaseEncoder``/``BaseDecoder`` modules that return
``ModelOutput`` records; the adapters below wrap *copies* of the very modules that
mopoe_lib's model uses, so both sides run identical networks with identical weights and
differ only in the code around them. Install the peer with ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from .model import MultimodalVAE


def available() -> str | None:
    """The installed multivae version, or None when it cannot be imported."""
    try:
        import multivae  # noqa: F401
    except ImportError:
        return None
    from importlib.metadata import version

    return version("multivae")


def _require():
    try:
        import multivae  # noqa: F401
        from pythae.models.base.base_utils import ModelOutput
        from pythae.models.nn import BaseDecoder, BaseEncoder
    except ImportError as e:
        raise ImportError(
            "the peer benchmark needs multivae (pip install -e '.[bench]' or "
            f"pip install multivae==1.0.3): {e}"
        ) from e
    return ModelOutput, BaseEncoder, BaseDecoder


def _wrap(model: MultimodalVAE):
    ModelOutput, BaseEncoder, BaseDecoder = _require()

    class Encoder(BaseEncoder):
        def __init__(self, net: nn.Module):
            BaseEncoder.__init__(self)
            self.net = net

        def forward(self, x):
            mu, logvar = self.net(x)
            return ModelOutput(embedding=mu, log_covariance=logvar)

    class Decoder(BaseDecoder):
        def __init__(self, net: nn.Module):
            BaseDecoder.__init__(self)
            self.net = net

        def forward(self, z):
            return ModelOutput(reconstruction=self.net(z))

    encoders = {m: Encoder(copy.deepcopy(model.encoders[m])) for m in model.modalities}
    decoders = {m: Decoder(copy.deepcopy(model.decoders[m])) for m in model.modalities}
    return encoders, decoders


def build(model: MultimodalVAE, which: str, *, K: int = 1, laplace_scale: float = 0.75):
    """multivae's ``which`` ("mopoe", "mvae" or "mmvae") on copies of ``model``'s networks.

    Settings follow mopoe_lib's model: its likelihood (Laplace with a fixed scale, or a
    Gaussian with a fixed standard deviation as under the ``cpu`` profile), Gaussian
    posteriors, its beta; MVAE with the joint and unimodal ELBOs (multivae's sub-sampling
    with k=0) and no KL warm-up; MMVAE with the DReG estimator at ``K`` samples.
    """
    _require()
    from multivae.models import MMVAE, MVAE, MMVAEConfig, MoPoE, MoPoEConfig, MVAEConfig

    encoders, decoders = _wrap(model)
    mods = list(model.modalities)
    dists = {m: _decoder_dist(model.likelihoods[m], laplace_scale) for m in mods}
    common = dict(
        n_modalities=len(mods),
        latent_dim=model.latent_dim,
        input_dims={m: tuple(model.data_shapes[m]) for m in mods},
        decoders_dist={m: dists[m][0] for m in mods},
        decoder_dist_params={m: {"scale": dists[m][1]} for m in mods},
    )
    if which == "mopoe":
        net = MoPoE(MoPoEConfig(**common, beta=model.beta), encoders, decoders)
    elif which == "mvae":
        cfg = MVAEConfig(**common, beta=model.beta, use_subsampling=True, k=0, warmup=0)
        net = MVAE(cfg, encoders, decoders)
    elif which == "mmvae":
        cfg = MMVAEConfig(**common, K=K, beta=model.beta, loss="dreg_looser",
                          prior_and_posterior_dist="normal", learn_prior=False)  # fmt: skip
        net = MMVAE(cfg, encoders, decoders)
    else:
        raise ValueError(f"which must be 'mopoe', 'mvae' or 'mmvae', got {which!r}")
    return net.to(model.device)


def _decoder_dist(likelihood, laplace_scale: float) -> tuple[str, float]:
    """multivae's name and scale for our likelihood: a Gaussian's own sigma, else Laplace."""
    from .likelihoods import Gaussian

    if isinstance(likelihood, Gaussian):
        return "normal", float(likelihood.log_scale.exp())
    return "laplace", laplace_scale


def dataset(x: dict[str, torch.Tensor], labels: torch.Tensor):
    """A multivae batch (a ``MultimodalBaseDataset``) of the same tensors."""
    _require()
    from multivae.data.datasets.base import MultimodalBaseDataset

    return MultimodalBaseDataset(data=dict(x), labels=labels)
