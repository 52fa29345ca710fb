"""The multimodal VAE: per-modality networks around one objective chosen by name.

A :class:`MultimodalVAE` holds an encoder, a decoder and a likelihood per modality and the
reconstruction weights lambda_m. Encoders give unimodal Gaussian experts (M, B, D); the
objectives of :mod:`mopoe_lib.objectives` fuse them, and call back
:meth:`MultimodalVAE.decode_loglik`, which runs each decoder once on every row that needs it.

Subset posteriors, for inference and evaluation:
  MoPoE, Eq. (5), MVAE: the product of the subset's experts (:class:`GaussianPosterior`),
      computed for all subsets at once by :func:`mopoe_lib.fusion.subset_posteriors`;
  MMVAE: the uniform mixture of the subset's unimodal experts (:class:`MixturePosterior`).
With ``style_dim > 0`` (CelebA) every modality also has a style latent s_m ~ q(s_m | x_m) that
only its own decoder reads; decoders receive [content, style].
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from . import objectives as O
from . import subsets as S
from .experts import (
    batch_noise,
    kl_std_normal,
    laplace_noise,
    log_laplace,
    log_normal,
    log_std_normal,
    reparameterize,
    reparameterize_laplace,
)
from .fusion import subset_posteriors

METHODS = ("mopoe", "mvae", "mmvae", "mmvae_iwae", "mmvae_dreg", "eq5")


def _full_precision(t: torch.Tensor) -> torch.Tensor:
    """float32 for autocast outputs (bf16/fp16); float64 models stay float64."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


@dataclass
class Encoded:
    """Unimodal posteriors: content (M, B, D) and, with style latents, style (M, B, Ds)."""

    mu: torch.Tensor
    logvar: torch.Tensor
    style_mu: torch.Tensor | None = None
    style_logvar: torch.Tensor | None = None


class GaussianPosterior:
    """One diagonal Gaussian per subset and sample: mu, logvar of shape (K, B, D)."""

    def __init__(self, mu: torch.Tensor, logvar: torch.Tensor):
        self.mu, self.logvar = mu, logvar

    def mean(self) -> torch.Tensor:
        return self.mu

    def sample(self, n: int = 1) -> torch.Tensor:
        """(n, K, B, D) reparameterized samples."""
        return reparameterize(
            self.mu.expand(n, *self.mu.shape), self.logvar.expand(n, *self.mu.shape)
        )

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """z (n, K, B, D) -> (n, K, B)."""
        return log_normal(z, self.mu, self.logvar)


class MixturePosterior:
    """Uniform mixture over the unimodal experts of each subset (MMVAE), for all subsets.

    ``mu, logvar``: (M, B, D) experts; ``subsets``: (K, M); ``mask``: optional (B, M).
    ``experts="laplace"``: ``logvar`` holds log-scales of Laplace experts.
    """

    def __init__(self, mu, logvar, subsets: torch.Tensor, mask: torch.Tensor | None = None,
                 experts: str = "gaussian"):  # fmt: skip
        self.mu, self.logvar, self.experts = mu, logvar, experts
        w = subsets.to(mu.device).unsqueeze(1)  # (K, 1, M)
        self.weights = w & mask.unsqueeze(0) if mask is not None else w.expand(-1, mu.shape[1], -1)
        self.count = self.weights.sum(-1).clamp_min(1).to(mu.dtype)  # (K, B)

    def mean(self) -> torch.Tensor:
        """The mixture mean (K, B, D): the average of the member experts' means."""
        w = self.weights.to(self.mu.dtype)
        return torch.einsum("kbm,mbd->kbd", w, self.mu) / self.count.unsqueeze(-1)

    def sample(self, n: int = 1) -> torch.Tensor:
        """(n, K, B, D): a uniformly chosen member expert per draw, then its Gaussian."""
        k, b, m = self.weights.shape
        probs = self.weights.reshape(k * b, m).to(self.mu.dtype)
        comp = torch.multinomial(probs, n, replacement=True).view(k, b, n).permute(2, 0, 1)
        rows = torch.arange(b, device=self.mu.device).view(1, 1, b)
        mu, lv = self.mu[comp, rows], self.logvar[comp, rows]
        if self.experts == "laplace":
            return reparameterize_laplace(mu, lv, laplace_noise(mu.shape, 2, like=mu))
        return reparameterize(mu, lv)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """z (n, K, B, D) -> (n, K, B): log (1/|S_k|) sum_{m in S_k} N(z; mu_m, sigma_m)."""
        density = log_laplace if self.experts == "laplace" else log_normal
        comp = density(z.unsqueeze(-2), self.mu.transpose(0, 1), self.logvar.transpose(0, 1))
        comp = comp.masked_fill(~self.weights, -torch.inf)  # (n, K, B, M)
        return torch.logsumexp(comp, dim=-1) - torch.log(self.count)


# Rows per decoder call on the CPU (see MultimodalVAE._group_chunk).
DECODE_CHUNK_ROWS = 1024


class MultimodalVAE(nn.Module):
    """Encoders, decoders and likelihoods of M modalities trained with one named objective.

    method: ``"mopoe"`` (Eq. (6)), ``"mvae"`` (products with the prior expert),
    ``"mmvae"`` (stratified MoE ELBO), ``"mmvae_iwae"`` / ``"mmvae_dreg"`` (Shi et al.'s
    importance-weighted bound with K = ``importance_samples``), ``"eq5"`` (the average of
    the subset ELBOs). ``prior_expert``, ``sampling`` and ``kl`` are the MoPoE switches of
    :func:`mopoe_lib.objectives.mopoe` (official code: "full", "batch_split", "subset_average").
    """

    def __init__(
        self,
        modalities: Sequence[str],
        encoders: Mapping[str, nn.Module],
        decoders: Mapping[str, nn.Module],
        likelihoods: Mapping[str, nn.Module],
        data_shapes: Mapping[str, Sequence[int]],
        *,
        latent_dim: int,
        style_dim: int = 0,
        method: str = "mopoe",
        rec_weights=None,
        beta: float = 1.0,
        beta_content: float = 1.0,
        beta_style: float = 1.0,
        style_weights=None,
        prior_expert: str = "none",
        sampling: str = "stochastic",
        kl: str = "mixture",
        mvae_variant: str = "joint_unimodal",
        importance_samples: int = 1,
        logvar_bound: float | None = 80.0,
        dreg_grad: str = "intended",
        mmvae_bound: str = "looser",
        mmvae_elbo: str = "mixture",
        experts: str = "gaussian",
        posterior_scale: str = "exp",
        learn_prior_scale: bool = False,
        split_rows: str = "floor_div",
        variance_eps: float = 0.0,
        mvae_rec_weights: str = "all",
    ):
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.modalities = tuple(modalities)
        for part, d in (
            ("encoders", encoders),
            ("decoders", decoders),
            ("likelihoods", likelihoods),
        ):
            if set(d) != set(self.modalities):
                raise ValueError(f"{part} must have one entry per modality {self.modalities}")
        self.encoders = nn.ModuleDict({m: encoders[m] for m in self.modalities})
        self.decoders = nn.ModuleDict({m: decoders[m] for m in self.modalities})
        self.likelihoods = nn.ModuleDict({m: likelihoods[m] for m in self.modalities})
        self.data_shapes = {m: tuple(data_shapes[m]) for m in self.modalities}
        num_mod = len(self.modalities)
        lam = torch.ones(num_mod) if rec_weights is None else torch.as_tensor(rec_weights)
        self.register_buffer("rec_weights", lam.float().reshape(num_mod).clone())
        sw = torch.ones(num_mod) if style_weights is None else torch.as_tensor(style_weights)
        self.register_buffer("style_weights", sw.float().reshape(num_mod).clone())
        self.latent_dim, self.style_dim = latent_dim, style_dim
        self.method = method
        self.beta, self.beta_content, self.beta_style = beta, beta_content, beta_style
        self.prior_expert, self.sampling, self.kl = prior_expert, sampling, kl
        self.mvae_variant, self.importance_samples = mvae_variant, importance_samples
        self.logvar_bound = logvar_bound
        # The official-code switches (config.py, book/appendix/official_code.md).
        self.dreg_grad, self.mmvae_bound, self.mmvae_elbo = dreg_grad, mmvae_bound, mmvae_elbo
        self.experts, self.posterior_scale = experts, posterior_scale
        self.split_rows, self.variance_eps = split_rows, variance_eps
        self.mvae_rec_weights = mvae_rec_weights
        if experts == "laplace" and not method.startswith("mmvae"):
            raise ValueError("Laplace experts have no closed-form product: use an mmvae method")
        if learn_prior_scale and experts != "laplace":
            raise ValueError("learn_prior_scale is implemented for Laplace experts only")
        # Laplace prior scale D softmax(theta), theta = 0 (scale 1) unless learned (Shi et al.).
        if experts == "laplace":  # (Gaussian models keep their state_dict as before)
            theta = torch.zeros(latent_dim)
            if learn_prior_scale:
                self.prior_logits = nn.Parameter(theta)
            else:
                self.register_buffer("prior_logits", theta)
        self.decode_chunk_rows: int | None = DECODE_CHUNK_ROWS  # CPU only; None: one call
        self._decoders_have_batch_stats = any(
            isinstance(mod, nn.modules.batchnorm._BatchNorm) for mod in self.decoders.modules()
        )

    # -- inputs -----------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.rec_weights.device

    def complete(self, x: Mapping[str, torch.Tensor], mask=None) -> dict[str, torch.Tensor]:
        """Every modality present: absent ones and masked-out rows become zeros."""
        self.check_inputs(x)
        given = [v for v in x.values() if v is not None]
        batch = given[0].shape[0]
        out = {}
        for i, m in enumerate(self.modalities):
            v = x.get(m)
            if v is None:
                v = torch.zeros(batch, *self.data_shapes[m], device=given[0].device)
            elif mask is not None:
                keep = mask[:, i].view(-1, *([1] * (v.dim() - 1)))
                v = torch.where(keep, v, torch.zeros_like(v))
            out[m] = v
        return out

    def check_inputs(self, x: Mapping[str, torch.Tensor]) -> None:
        """Names, per-sample shapes, batch sizes, dtypes and devices of a batch (metadata
        only: no device synchronization). Raises ValueError/TypeError saying what to fix."""
        if not isinstance(x, Mapping):
            raise TypeError(f"a batch is a dict modality -> tensor, got {type(x).__name__}")
        unknown = [m for m in x if m not in self.modalities]
        if unknown:
            raise ValueError(
                f"unknown modalities {unknown} in the batch; the model's are {list(self.modalities)}"
            )
        given = {m: v for m, v in x.items() if v is not None}
        if not given:
            raise ValueError(
                f"the batch holds no modality; give at least one of {list(self.modalities)}"
            )
        batch = None
        for m, v in given.items():
            if not isinstance(v, torch.Tensor):
                raise TypeError(f"modality {m!r} must be a torch.Tensor, got {type(v).__name__}")
            if tuple(v.shape[1:]) != self.data_shapes[m] or v.dim() < 1:
                raise ValueError(
                    f"modality {m!r} has shape {tuple(v.shape)}, expected (B, "
                    f"{', '.join(map(str, self.data_shapes[m]))}) in model format"
                )
            if not v.is_floating_point():
                raise TypeError(
                    f"modality {m!r} is {v.dtype}; the model takes floating-point tensors "
                    "(decode storage-format data with TensorData.batch)"
                )
            param = next(self.encoders[m].parameters(), None)
            if param is not None and v.dtype != param.dtype:
                raise TypeError(
                    f"modality {m!r} is {v.dtype} but its encoder computes in {param.dtype}; "
                    f"convert the batch with .to({param.dtype})"
                )
            if v.device != self.device:
                raise ValueError(
                    f"modality {m!r} is on device {v.device} but the model is on "
                    f"{self.device}; move the batch with .to({str(self.device)!r})"
                )
            if batch is None:
                batch = v.shape[0]
            elif v.shape[0] != batch:
                raise ValueError(
                    f"modalities hold different batch sizes ({batch} vs {v.shape[0]} for {m!r})"
                )

    @staticmethod
    def presence_mask(x: Mapping[str, torch.Tensor], modalities, batch: int, device):
        """A (B, M) mask for a batch that lacks some modalities entirely (None if complete)."""
        if all(x.get(m) is not None for m in modalities):
            return None
        cols = [torch.full((batch,), x.get(m) is not None, device=device) for m in modalities]
        return torch.stack(cols, dim=1)

    # -- encoding ---------------------------------------------------------------
    def encode(self, x: Mapping[str, torch.Tensor]) -> Encoded:
        """Unimodal experts of every modality (at least float32, also under autocast)."""
        mus, lvs = zip(*(self.encoders[m](x[m]) for m in self.modalities), strict=True)
        mu, lv = _full_precision(torch.stack(mus)), _full_precision(torch.stack(lvs))
        if self.posterior_scale == "softmax":
            # Shi et al.: scale = D softmax(h) + 1e-6, bounded, so no guard is needed.
            lv = torch.log(torch.softmax(lv, dim=-1) * lv.shape[-1] + 1e-6)
        else:
            if self.logvar_bound:
                # Under the MVAE's prior expert nothing stops an expert's log-variance from
                # drifting upwards (it reached +200 within 20 steps on PolyMNIST). Fusion
                # stays finite for any spread, but the KL terms and log-densities take
                # exp(+-lv), which overflows float32 past ~88. soft_bound is the identity on
                # [-L/2, L/2], where training lives, and saturates at +-L beyond.
                lv = soft_bound(lv, self.logvar_bound)
            if self.experts == "laplace":
                lv = 0.5 * lv  # log b = h / 2: b = exp(h / 2), as a standard deviation
        if not self.style_dim:
            return Encoded(mu, lv)
        d = self.latent_dim
        return Encoded(mu[..., :d], lv[..., :d], mu[..., d:], lv[..., d:])

    def posterior(self, x: Mapping[str, torch.Tensor], subsets=None, mask=None, enc=None):
        """The content posterior q(z | X_k) of every subset k, from one encoder pass.

        ``subsets``: (K, M) bool, or lists of modality names such as ``[["m0"], ["m0",
        "m1"]]`` (default: all 2^M - 1 non-empty subsets, by size). An empty subset is an
        error unless the prior expert joins it (MVAE). Returns a :class:`GaussianPosterior`
        or :class:`MixturePosterior` over (K, B, D).
        """
        subsets = self._subsets(subsets)
        if enc is None:
            enc = self.encode(self.complete(x, mask))
        if self.method.startswith("mmvae"):
            return MixturePosterior(enc.mu, enc.logvar, subsets, mask, self.experts)
        prior = "all" if self.method == "mvae" else self.prior_expert
        return GaussianPosterior(
            *subset_posteriors(enc.mu, enc.logvar, subsets, prior, mask, self.variance_eps)
        )

    def prior_log_scale(self) -> torch.Tensor | None:
        """log b of the Laplace prior (D,), None for the N(0, I) prior of Gaussian experts."""
        if self.experts != "laplace":
            return None
        d = self.prior_logits.shape[-1]
        return torch.log(torch.softmax(self.prior_logits, dim=-1) * d)

    def prior_log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z), summed over the last dimension."""
        log_b = self.prior_log_scale()
        if log_b is None:
            return log_std_normal(z)
        return log_laplace(z, torch.zeros_like(log_b), log_b.to(z.dtype))

    def prior_sample(self, n: int) -> torch.Tensor:
        """(n, D) codes from p(z)."""
        log_b = self.prior_log_scale()
        if log_b is None:
            return torch.randn(n, self.latent_dim, device=self.device)
        e = laplace_noise((n, self.latent_dim), 0, like=log_b)
        return reparameterize_laplace(torch.zeros_like(log_b), log_b, e)

    def _subsets(self, subsets) -> torch.Tensor:
        num_mod = len(self.modalities)
        if subsets is None:
            return S.powerset(num_mod)
        if not isinstance(subsets, torch.Tensor):
            subsets = S.from_names(subsets, self.modalities)
        subsets = S.check_subsets(subsets, num_mod)
        empty = (~subsets.cpu().any(1)).nonzero().flatten().tolist()
        if empty and not (self.method == "mvae" or self.prior_expert == "all"):
            raise ValueError(
                f"subsets {empty} are empty: a {self.method} posterior needs at least one "
                f"modality of {list(self.modalities)} (only the MVAE's prior expert defines "
                "the empty product)"
            )
        return subsets

    # -- decoding ---------------------------------------------------------------
    def _with_style(self, z: torch.Tensor, m: int, style) -> torch.Tensor:
        if not self.style_dim:
            return z
        s = style[m].expand(*z.shape[:-1], self.style_dim)
        return torch.cat([z, s.to(z.dtype)], dim=-1)

    def decode_loglik(self, x, z: torch.Tensor, need=None, style=None) -> torch.Tensor:
        """log p(x_m | z) for codes z (T, B, D): returns (M, T, B), not weighted.

        Each decoder runs on all (T * B) rows it needs, flattened; on the CPU in chunks of
        at most ``decode_chunk_rows`` rows (see :meth:`_group_chunk`). ``need`` (T, M)
        skips groups whose modality is not needed (their entries are 0). ``style``:
        (M, B, Ds) style codes, one per modality, shared by the T groups.
        """
        t, b, _ = z.shape
        need_cpu = None if need is None else need.detach().to("cpu", torch.bool)
        out = []
        for i, m in enumerate(self.modalities):
            groups = None if need_cpu is None else need_cpu[:, i].nonzero().squeeze(1)
            if groups is not None and len(groups) == 0:
                out.append(z.new_zeros(t, b))
                continue
            zm = z if groups is None or len(groups) == t else z[groups.to(z.device)]
            zm = self._with_style(zm, i, style)
            parts = []
            for zc in zm.split(self._group_chunk(zm.shape[0], b, zm.device)):
                params = _full_precision(self.decoders[m](zc.reshape(-1, zc.shape[-1])))
                params = params.view(zc.shape[0], b, *params.shape[1:])
                parts.append(self.likelihoods[m].log_prob(x[m].unsqueeze(0), params))  # (T', B)
            ll = parts[0] if len(parts) == 1 else torch.cat(parts)
            if zm.shape[0] != t:
                ll = ll.new_zeros(t, b).index_copy(0, groups.to(z.device), ll)
            out.append(ll)
        return torch.stack(out)

    def _group_chunk(self, groups: int, batch: int, device: torch.device) -> int:
        """How many groups of ``batch`` codes one decoder call takes.

        All of them, except on the CPU when they exceed ``decode_chunk_rows`` rows: there
        one call on tens of thousands of rows (MMVAE with K=10 decodes 12,800 per decoder;
        the importance-sampled likelihood 29,760) allocates activations of hundreds of MB,
        which the C allocator maps and unmaps at every step; the page faults made such a
        call about 2x slower per row than calls of ~1,000 rows (bench.py measures it).
        Decoders with batch statistics (BatchNorm) are never split in training mode, as
        that would change their normalization.
        """
        rows = self.decode_chunk_rows
        if not rows or device.type != "cpu" or groups * batch <= rows:
            return groups
        if self.training and self._decoders_have_batch_stats:
            return groups
        return max(1, rows // batch)

    def decode(self, z: torch.Tensor, style=None) -> dict[str, torch.Tensor]:
        """The mean of p(x_m | z) for codes z (..., D); style (M, ..., Ds), default prior."""
        if self.style_dim and style is None:
            style = torch.randn(
                len(self.modalities), *z.shape[:-1], self.style_dim, device=z.device
            )
        out = {}
        for i, m in enumerate(self.modalities):
            zm = self._with_style(z, i, style).reshape(-1, z.shape[-1] + self.style_dim)
            params = _full_precision(self.decoders[m](zm))
            out[m] = self.likelihoods[m].mean(params).view(*z.shape[:-1], *params.shape[1:])
        return out

    # -- the objective ----------------------------------------------------------
    def objective(self, x: Mapping[str, torch.Tensor], mask=None) -> O.Objective:
        """The per-sample bound of ``self.method`` for a batch ``{modality: (B, ...)}``.

        ``mask`` (B, M) bool marks present modalities; a modality missing from ``x`` is
        treated as absent for every sample. ``.loss()`` of the result is what to minimize.
        """
        self.check_inputs(x)
        first = next(v for v in x.values() if v is not None)
        if mask is None:
            mask = self.presence_mask(x, self.modalities, first.shape[0], first.device)
        x = self.complete(x, mask)
        enc = self.encode(x)
        style = None
        if self.style_dim:
            eps = batch_noise(enc.style_mu.shape, 1, like=enc.style_mu)  # (M, B, Ds)
            style = reparameterize(enc.style_mu, enc.style_logvar, eps)

        def decode_loglik(z, need=None):
            return self.decode_loglik(x, z, need, style)

        beta = self.beta * (self.beta_content if self.style_dim else 1.0)
        common = {"beta": beta, "rec_weights": self.rec_weights, "mask": mask}
        mu, lv, name = enc.mu, enc.logvar, self.method
        if name == "mopoe":
            obj = O.mopoe(mu, lv, decode_loglik, prior_expert=self.prior_expert,
                          sampling=self.sampling, kl=self.kl, split_rows=self.split_rows,
                          variance_eps=self.variance_eps, **common)  # fmt: skip
        elif name == "eq5":
            obj = O.subset_elbo_average(
                mu, lv, decode_loglik, prior_expert=self.prior_expert, **common
            )
        elif name == "mvae":
            obj = O.mvae(mu, lv, decode_loglik, variant=self.mvae_variant,
                         rec_weight_terms=self.mvae_rec_weights,
                         variance_eps=self.variance_eps, **common)  # fmt: skip
        else:
            estimator = {"mmvae": "elbo", "mmvae_iwae": "iwae", "mmvae_dreg": "dreg"}[name]
            if name == "mmvae" and self.mmvae_elbo == "unimodal_kl":
                estimator = "m_elbo"
            k = 1 if name == "mmvae" else self.importance_samples
            obj = O.mmvae(mu, lv, decode_loglik, K=k, estimator=estimator,
                          bound=self.mmvae_bound, dreg_grad=self.dreg_grad,
                          experts=self.experts, prior_log_scale=self.prior_log_scale(),
                          **common)  # fmt: skip
        if self.style_dim:
            obj = self._add_style_kl(obj, enc, mask)
        return obj

    def forward(self, x: Mapping[str, torch.Tensor], mask=None) -> O.Objective:
        return self.objective(x, mask)

    def _add_style_kl(self, obj: O.Objective, enc: Encoded, mask) -> O.Objective:
        """Eq. (34): subtract beta * beta_style * sum_m w_m KL(q(s_m | x_m) || p(s_m))."""
        kl_s = kl_std_normal(enc.style_mu, enc.style_logvar)  # (M, B)
        if mask is not None:
            kl_s = torch.where(mask.t(), kl_s, torch.zeros_like(kl_s))
        kl_style = (self.style_weights.view(-1, 1) * kl_s).sum(0)
        penalty = self.beta * self.beta_style * kl_style
        surrogate = None if obj.surrogate is None else obj.surrogate - penalty
        extras = dict(obj.extras, kl_content=obj.kl, kl_style=kl_style)
        kl = self.beta_content * obj.kl + self.beta_style * kl_style
        return O.Objective(obj.value - penalty, obj.rec, kl, surrogate=surrogate, extras=extras)

    # -- generation -------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int) -> dict[str, torch.Tensor]:
        """Unconditional generation: z ~ N(0, I) (and styles from their prior)."""
        return self.decode(self.prior_sample(n))

    @torch.no_grad()
    def conditional_generate(self, x, subsets=None, n: int = 1, mask=None):
        """Means of p(x_m | z) for z ~ q(z | X_k): dict m -> (n, K, B, ...).

        Styles come from the prior (the official code's conditional generation).
        """
        z = self.posterior(x, subsets, mask).sample(n)
        return self.decode(z)

    @torch.no_grad()
    def reconstruct(self, x, mask=None) -> dict[str, torch.Tensor]:
        """Decode the mean of the joint posterior (all modalities given)."""
        full = S.full(len(self.modalities))
        return {m: v[0] for m, v in self.decode(self.posterior(x, full, mask).mean()).items()}


def build_model(cfg) -> MultimodalVAE:
    """The model of a :class:`mopoe_lib.config.Config` (networks of ``cfg.dataset``)."""
    from . import networks

    mc = cfg.model
    nets = networks.build(
        cfg.dataset,
        latent_dim=mc.latent_dim,
        style_dim=mc.style_dim,
        width=mc.width,
        laplace_scale=mc.laplace_scale,
        rec_weight_rule=mc.rec_weights,
        modalities=mc.modalities,
        width_multiplier=mc.width_multiplier,
        image_likelihood=mc.image_likelihood,
        gaussian_scale=mc.gaussian_scale,
        text_likelihood=mc.text_likelihood,
        vocab_size=mc.vocab_size,
    )
    return MultimodalVAE(
        nets.modalities,
        nets.encoders,
        nets.decoders,
        nets.likelihoods,
        nets.data_shapes,
        latent_dim=mc.latent_dim,
        style_dim=mc.style_dim,
        method=cfg.method,
        rec_weights=nets.rec_weights,
        beta=mc.beta,
        beta_content=mc.beta_content,
        beta_style=mc.beta_style,
        style_weights=mc.style_weights,
        prior_expert=mc.prior_expert,
        sampling=mc.sampling,
        kl=mc.kl,
        mvae_variant=mc.mvae_variant,
        importance_samples=mc.importance_samples,
        logvar_bound=mc.logvar_bound,
        dreg_grad=mc.dreg_grad,
        mmvae_bound=mc.mmvae_bound,
        mmvae_elbo=mc.mmvae_elbo,
        experts=mc.experts,
        posterior_scale=mc.posterior_scale,
        learn_prior_scale=mc.learn_prior_scale,
        split_rows=mc.batch_split_rows,
        variance_eps=mc.variance_eps,
        mvae_rec_weights=mc.mvae_rec_weights,
    )


def soft_bound(lv: torch.Tensor, bound: float) -> torch.Tensor:
    """The identity on [-bound/2, bound/2]; beyond, c + c tanh((|lv| - c) / c) with c = bound/2
    (sign kept), which is continuous with slope 1 at +-c and saturates at +-bound. So
    log-variances inside the range that training uses pass exactly, and exp(+-lv) stays
    below float32's overflow (exp(88)) for bound = 80."""
    c = 0.5 * bound
    a = lv.abs()
    outer = torch.sign(lv) * (c + c * torch.tanh((a - c) / c))
    return torch.where(a <= c, lv, outer)


def log_mean_exp(t: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.logsumexp(t, dim=dim) - math.log(t.shape[dim])
