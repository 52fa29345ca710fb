"""Run configuration: dataclasses, and the three profiles of every dataset in one table.

``make_config(dataset, method, profile, **overrides)`` starts from the dataclass defaults,
applies ``PROFILES[dataset][profile]`` and then the overrides (dotted keys such as
``"train.epochs"`` or nested dicts). Unknown keys raise :class:`ConfigError` naming the valid
ones. Profiles: ``smoke`` (CI: seconds), ``cpu`` (1-2 minutes per model on a 2-core laptop, on
the offline data), ``paper`` (the paper's hyperparameters; meant for a GPU and the real data).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from typing import Any

DATASETS = ("polymnist", "mnist_svhn_text", "celeba", "cub")
PROFILES_NAMES = ("smoke", "cpu", "paper")
# Objectives by name (see MultimodalVAE.objective): the paper's three models, Shi et al.'s
# importance-weighted MMVAE bounds, and the average of subset ELBOs of Eq. (5) (Table 7).
METHODS = ("mopoe", "mvae", "mmvae", "mmvae_iwae", "mmvae_dreg", "eq5")
# The official MoPoE code's choices where it differs from the paper (reference §2).
OFFICIAL_MOPOE = {"prior_expert": "full", "sampling": "batch_split", "kl": "subset_average"}


# Presets: model switches applied after the profile and before the overrides. "official":
# the official code of each model: thomassutter/MoPoE for mopoe and mvae (its poe method),
# iffsid/mmvae (Shi et al.) for the mmvae methods; eq5 has no official code.
_OFFICIAL_MOPOE_CODE = {
    "batch_split_rows": "float32_floor",
    "variance_eps": 1e-8,
    "text_likelihood": "official",
    "logvar_bound": None,
}
PRESETS: dict[str, dict[str, dict]] = {
    "official": {
        "mopoe": dict(OFFICIAL_MOPOE, **_OFFICIAL_MOPOE_CODE),
        "mvae": dict(_OFFICIAL_MOPOE_CODE, mvae_variant="joint_unimodal", mvae_rec_weights="joint"),
        # Shi et al.'s README: --obj dreg --looser --K 30 --learn-prior; their bound has no beta.
        **{m: {"experts": "laplace", "posterior_scale": "softmax", "learn_prior_scale": True,
               "dreg_grad": "released", "mmvae_bound": "looser", "mmvae_elbo": "unimodal_kl",
               "importance_samples": 30, "beta": 1.0, "logvar_bound": None}
           for m in ("mmvae", "mmvae_iwae", "mmvae_dreg")},
    },
}  # fmt: skip


class ConfigError(ValueError):
    """A configuration key or value that does not exist or does not fit."""


@dataclass
class ModelConfig:
    # A subset of the dataset's modalities (None: all), e.g. ["mnist", "svhn"] for Shi et
    # al.'s bimodal MNIST-SVHN from the MNIST-SVHN-Text data.
    modalities: list[str] | None = None
    latent_dim: int = 512
    style_dim: int = 0  # modality-specific latents (CelebA, Appendix E.1.1)
    width: int = 128  # CelebA residual base width (official 128); CUB image base (Shi: 64)
    # CUB: words of the vocabulary; None: the prepared data's (experiment.train_or_load reads
    # it from the manifest; Shi et al.'s captions give 1590)
    vocab_size: int | None = None
    beta: float = 2.5
    beta_content: float = 1.0
    beta_style: float = 1.0
    style_weights: list[float] | None = None
    laplace_scale: float = 0.75  # fixed, as in the official code
    # The likelihood of the image modalities: "laplace" (the paper's) or "gaussian" (fixed
    # standard deviation gaussian_scale; the cpu profiles, see PROFILES and model.py).
    image_likelihood: str = "laplace"
    gaussian_scale: float = 0.1
    width_multiplier: float = 1.0  # PolyMNIST networks: channels and hidden units (official 1)
    rec_weights: Any = "size"  # "size" (Appendix B), "official", "ones" or a list
    # MoPoE switches; paper values by default, official-code values in OFFICIAL_MOPOE.
    prior_expert: str = "none"
    sampling: str = "stochastic"
    kl: str = "mixture"
    mvae_variant: str = "joint_unimodal"  # as the official MoPoE code trains its MVAE
    importance_samples: int = 1  # K of mmvae_iwae / mmvae_dreg (Shi et al. use 30)
    # Float32 guard on encoder log-variances, model.soft_bound: the identity on [-L/2, L/2]
    # (training stays inside), saturating at +-L beyond; None turns it off (official presets).
    # Not in the paper or the official code.
    logvar_bound: float | None = 80.0
    # Official-code switches (paper's choice first; PRESETS["official"] sets the official
    # value; book/appendix/official_code.md lists them all).
    dreg_grad: str = "intended"  # "released": iffsid/mmvae's hook that never fires
    mmvae_bound: str = "looser"  # "tight": m_iwae / m_dreg instead of the *_looser ones
    mmvae_elbo: str = "mixture"  # method "mmvae": "unimodal_kl" is Shi et al.'s m_elbo
    experts: str = "gaussian"  # "laplace": Shi et al.'s posteriors and prior (mmvae only)
    posterior_scale: str = "exp"  # "softmax": scale = D softmax(h) + 1e-6 (Shi et al.)
    learn_prior_scale: bool = False  # Laplace prior scale D softmax(theta), theta learned
    batch_split_rows: str = "floor_div"  # "float32_floor": floor(B * w_k) in float32
    variance_eps: float = 0.0  # added to expert variances in products (official 1e-8)
    mvae_rec_weights: str = "all"  # "joint": lambda_m on the joint ELBO only (official)
    text_likelihood: str = "categorical"  # "official": OneHotCategorical(probs=log_softmax)


@dataclass
class TrainConfig:
    epochs: int = 300
    batch_size: int = 256
    lr: float = 1e-3
    adam_betas: tuple[float, float] = (0.9, 0.999)
    steps_per_epoch: int | None = None  # None: every full batch of the training set
    checkpoint_every: int = 5  # epochs; the last epoch is always saved
    # Also every this many optimizer steps within an epoch (0: off), so that an interrupted
    # long epoch loses at most this many steps; resuming continues at the exact step.
    checkpoint_every_steps: int = 0
    eval_every: int = 0  # epochs; 0: evaluate only at the end
    # KL warm-up: beta rises linearly from 0 to model.beta over the first this many optimizer
    # steps (0: off, as in the paper). A function of the global step, so resuming is exact.
    beta_warmup_steps: int = 0
    # Learning curve (mopoe_lib.evaluation.curve): a latent probe and the objective on test
    # tuples every this many optimizer steps, and before the first (0: off).
    curve_every_steps: int = 0
    # Stop after this many optimizer steps in all (None: every epoch). A run with a bound is
    # a check of the code path (bounded_overrides), never a reproduction: its metrics say so.
    max_steps: int | None = None
    bf16: bool = False  # bfloat16 autocast (CUDA, and the CPU)
    compile: bool = False  # torch.compile the encoders and decoders


@dataclass
class DataConfig:
    n_train: int | None = None  # use the first n training tuples (None: all)
    # Sizes for the offline preparation when the data root does not hold the dataset
    # (keyword arguments of data_prep.<dataset>.prepare); announced in the log and metrics.
    # None (the paper profile): never prepare; a missing dataset is an error that says how
    # to prepare the real (or offline) data.
    prepare: dict | None = None
    require_real: bool = False  # refuse stand-ins and never prepare offline data
    # Incomplete training data: every modality of every training sample is missing with this
    # probability (independently; at least one kept), drawn once from the run's seed
    # (mopoe_lib.data.drop_modalities). The mask travels with each batch into the objective.
    missing_ratio: float = 0.0


@dataclass
class EvalConfig:
    enabled: bool = True
    batch_size: int = 256
    n_test: int | None = None  # test tuples for coherence and latent classification
    lr_train_samples: int = 500  # Appendix B
    ll_samples: int = 15  # importance samples, Appendix B
    ll_n_test: int | None = None  # test tuples for the log-likelihoods
    ll_batch_size: int = 64
    joint_samples: int = 10_000  # prior samples for joint coherence
    classifier_epochs: int = 20
    classifier_lr: float = 1e-3
    classifier_lr_schedule: str = "constant"  # or "cosine" (annealed to 0 over training)
    classifier_n_train: int | None = None
    classifier_width: int = 128  # CelebA classifiers
    # "official" networks, or "cnn": another PolyMNIST classifier (networks.polymnist)
    classifier: str = "official"
    classifier_shift: int = 0  # random translation of up to this many pixels while training
    classifier_dir: str | None = None  # default: <data root>/classifiers
    # The classifiers are the instrument every coherence is read through: one per data set,
    # trained with this seed whatever the model's seed, so that differences between seeds
    # are the models' (and a fresh clone pays for them once, not once per seed).
    classifier_seed: int = 0
    curve_samples: int = 1000  # training tuples fitted and test tuples scored per curve point


@dataclass
class Config:
    dataset: str = "polymnist"
    method: str = "mopoe"
    profile: str = "paper"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> Config:
        cfg = cls()
        _apply(cfg, d, "")
        validate(cfg)
        return cfg


# ---------------------------------------------------------------------------
# The profiles, one table per dataset. Paper values cite the paper; where the official code
# (thomassutter/MoPoE job scripts) differs, the comment names its value.

PROFILES: dict[str, dict[str, dict]] = {
    "polymnist": {
        "paper": {
            # Appendix D.2: latent 512, beta 2.5, 300 epochs, Adam lr 1e-3 (job_polymnist: 5e-4);
            # batch 256 and Laplace scale 0.75 from the code.
            "model": {"latent_dim": 512, "beta": 2.5},
            "train": {"epochs": 300, "batch_size": 256, "lr": 1e-3},
            "eval": {"n_test": None, "ll_n_test": None, "joint_samples": 10_000},
        },
        "cpu": {
            # Chosen by MoPoE's unimodal linear probe (logistic regression on the posterior
            # means of 2,000 training tuples, scored on 1,000 other TRAINING tuples, averaged
            # over m0..m4; never the test split, never a claim of the paper), seed 0, batch
            # 128, quarter width, KL warm-up over 500 steps unless stated (steps: probe):
            #   Laplace 0.75 (the paper's), lr 1e-3: 1,000: 0.20; backgrounds blurred
            #     (sigma 4 px): 0.20; contrast-stretched: 0.23. With plain black backgrounds
            #     the model collapses (KL 2.7 nats, 500: 0.12), and even a Laplace (L1)
            #     autoencoder without KL stays at the per-pixel median (probe 0.17 after 400
            #     steps, where an L2 one reaches 0.90): the fixed-scale Laplace learns the
            #     digit only after many epochs.
            #   Gaussian sigma 0.1, lr 1e-3: 1,000: 0.41, 2,000: 0.67; lr 2e-3: 1,000: 0.56,
            #     1,500: 0.69, 2,000: 0.74; lr 3e-3: 1,500: 0.72; sigma 0.2, lr 2e-3: 1,500:
            #     0.69; learned sigma (from 0.2), lr 1e-3: 1,000: 0.36; batch 64, lr 2e-3:
            #     2,000: 0.68 (about the same per second of compute as batch 128).
            #   The same with the offline backgrounds dimmed to half brightness (data_prep;
            #     for the coherence classifiers, see below): 500: 0.80, 1,500: 0.91.
            # So: Gaussian likelihood (sigma 0.1) instead of the paper's Laplace, quarter
            # widths (channels 8-16-32, hidden 128), lr 2e-3, batch 128, latent 64 (512).
            # Length, by cost: an optimizer step takes 103 / 113 / 200 ms for MoPoE / MVAE /
            # MMVAE (2 threads, idle machine), and the chapter trains seeds 0, 1 and 2, so
            # 15 epochs (1,170 updates) cost 24 minutes of training alone. On the learning
            # curves of that run (seed 0) the unimodal probe of MVAE / MMVAE was 0.84 / 0.88
            # after 585 updates, MVAE's 0.87 after 1,170, MMVAE's 0.90 after 702. So 8
            # epochs of the 10,000 offline tuples (624 updates; the paper makes ~70,000),
            # KL warm-up over 300 steps.
            # Coherence classifiers (chosen by their own test accuracy, at least 0.95 on every
            # modality, at the least cost; never a claim): the official network read 0.88 /
            # 0.93 of m0's test digits (20 epochs; full / half brightness). A four-layer CNN
            # (32-32-64-64, two strided) with 2-pixel shifts: m0 / m2 0.955 / 0.952 after 10
            # epochs, 0.959 / 0.960 after 15, at 8.4 s per epoch (2 threads), and half of
            # chapter 8's evaluation time was spent classifying generated images with it.
            # "cnn" now (16-32-64 with max-pooling): 2.8 s per epoch, a third of the
            # inference; Adam lr 1e-3, 10 epochs: 0.921 / 0.946 (noisy from epoch to epoch);
            # lr 2e-3 annealed (cosine), 12 epochs: 0.957 / 0.952, 16 epochs: 0.961 / 0.955.
            "model": {"latent_dim": 64, "beta": 2.5, "image_likelihood": "gaussian",
                      "gaussian_scale": 0.1, "width_multiplier": 0.25},
            "train": {"epochs": 8, "batch_size": 128, "lr": 2e-3, "beta_warmup_steps": 300,
                      "checkpoint_every": 2, "curve_every_steps": 78},
            "data": {"prepare": {"n_train": 10_000, "n_test": 2_000}},
            # Evaluation: 1,000 test tuples for latent classification and coherence, 40 for
            # the importance-sampled log-likelihoods, 1,000 prior samples for joint coherence.
            "eval": {"n_test": 1000, "ll_n_test": 40, "joint_samples": 1000,
                     "classifier": "cnn", "classifier_epochs": 16, "classifier_lr": 2e-3,
                     "classifier_lr_schedule": "cosine", "classifier_shift": 2,
                     "curve_samples": 1000},
        },
        "smoke": {
            # CI: ~30 updates on 500 tuples with the cpu profile's switches; checks that the
            # chapter runs, numbers mean nothing.
            "model": {"latent_dim": 32, "beta": 2.5, "image_likelihood": "gaussian",
                      "gaussian_scale": 0.1, "width_multiplier": 0.25},
            "train": {"epochs": 2, "batch_size": 32, "lr": 2e-3, "beta_warmup_steps": 10,
                      "checkpoint_every": 1, "curve_every_steps": 10},
            "data": {"prepare": {"n_train": 500, "n_test": 100}, "n_train": 500},
            "eval": {"n_test": 100, "ll_n_test": 8, "ll_samples": 5, "joint_samples": 100,
                     "batch_size": 100, "classifier": "cnn", "classifier_epochs": 2,
                     "classifier_lr": 2e-3, "classifier_lr_schedule": "cosine",
                     "classifier_shift": 2, "lr_train_samples": 200, "curve_samples": 100},
        },
    },
    "mnist_svhn_text": {
        "paper": {
            # Appendix C.2: latent 20, beta 5.0 for Tables 2-4 (Table 7 and job_mnistsvhntext:
            # 2.5), 150 epochs (job: 200), Adam lr 1e-3, batch 256 (job).
            "model": {"latent_dim": 20, "beta": 5.0},
            "train": {"epochs": 150, "batch_size": 256, "lr": 1e-3},
        },
        "cpu": {
            # Chapter 9 trains 7 models (Tables 2-4, Figure 1 at beta 2.5 and 5, Table 7) and
            # chapter 11 one, on the offline data (SyntheticSVHN stand-in). Chosen by MoPoE's
            # SVHN-only linear probe (logistic regression on posterior means of 1,000
            # training triples, scored on 1,000 test triples; never a claim of the paper),
            # seed 0, batch 64, latent 20 (updates: probe):
            #   the profile before (Laplace 0.75, lr 1e-3, 234 updates) and the first
            #     stand-in (digits half SVHN's height): chance; Gaussian sigma 0.1: 702: 0.14.
            #   Stand-in format 2 (SVHN's digit height, see data_prep.synthetic_svhn):
            #     Gaussian, lr 1e-3: 702: 0.28; lr 2e-3 with KL warm-up over 300 steps:
            #     936: 0.39, 1,170: 0.53, 1,404: 0.68, 1,872: 0.82 (MNIST 0.93, text 1.0);
            #     the same with Laplace 0.75: 936: 0.09 (MNIST 0.92, text 1.0: the SVHN
            #     expert collapses); stratified subsets (7 decodes per triple): 936: 0.77
            #     at three times the cost per step. MMVAE (Gaussian, lr 2e-3): 468: 0.70,
            #     702: 0.89.
            # So: Gaussian likelihood (sigma 0.1) for MNIST and SVHN, lr 2e-3, warm-up 300,
            # 6 epochs of 15,000 triples (1,404 updates; the paper makes ~300,000). Cost per
            # update (2 threads, idle): MoPoE 45 ms, MVAE 64, MMVAE 87, Eq. (5) 147.
            # Classifiers: the official networks with 2-pixel shifts of the images, fitted on
            # the run's 15,000 triples (data.n_train; 4,000 distinct MNIST digits). Test
            # accuracy by epochs (seed 0, MNIST / SVHN stand-in): 3: 0.909 / 0.901, 6: 0.937
            # / 0.970, 10: 0.953 / 0.984, 15: 0.962 / -, 20: 0.968 / -. 15 epochs: above the
            # 0.95 the coherence needs, ~70 s, once (eval.classifier_seed).
            # Stand-in format 3 (the digit lighter than its background 3 times in 4; see
            # data_prep.synthetic_svhn): the settings above kept. On format 2 MoPoE and MMVAE
            # generated the same flat grey for every SVHN digit (S<-M coherence 0.10, the
            # average image of each digit was that grey); on format 3 MoPoE (seed 0) reads
            # SVHN alone at 0.70 (Table 2) and generates it given MNIST at 0.81.
            "model": {"latent_dim": 20, "beta": 5.0, "image_likelihood": "gaussian",
                      "gaussian_scale": 0.1},
            "train": {"epochs": 6, "batch_size": 64, "lr": 2e-3, "beta_warmup_steps": 300,
                      "checkpoint_every": 2, "curve_every_steps": 234},
            "data": {"n_train": 15_000, "prepare": {"n_train": 10_000, "n_test": 2_000}},
            "eval": {"n_test": 500, "ll_n_test": 100, "joint_samples": 1000,
                     "classifier_epochs": 15, "classifier_shift": 2, "curve_samples": 1000},
        },
        "smoke": {
            # CI: the cpu profile's switches at tiny scale; numbers mean nothing.
            "model": {"latent_dim": 20, "beta": 5.0, "image_likelihood": "gaussian",
                      "gaussian_scale": 0.1},
            "train": {"epochs": 1, "batch_size": 64, "lr": 2e-3, "beta_warmup_steps": 4,
                      "checkpoint_every": 1, "curve_every_steps": 4},
            "data": {"n_train": 512, "prepare": {"n_train": 500, "n_test": 100, "dm": 2}},
            "eval": {"n_test": 100, "ll_n_test": 10, "joint_samples": 100, "batch_size": 100,
                     "classifier_epochs": 1, "classifier_shift": 2, "lr_train_samples": 100,
                     "curve_samples": 100},
        },
    },
    "celeba": {
        "paper": {
            # Appendix E.2: content 32 + style 32 (job_celeba: content 20, the flag default),
            # beta 2.5, Adam lr 5e-4, 200 epochs (job: 250). beta_content 1, beta_style 2 and
            # style weights img 1 / text 5 are the job's values; the paper does not give them.
            "model": {"latent_dim": 32, "style_dim": 32, "width": 128, "beta": 2.5,
                      "beta_content": 1.0, "beta_style": 2.0, "style_weights": [1.0, 5.0]},
            "train": {"epochs": 200, "batch_size": 256, "lr": 5e-4},
        },
        "cpu": {
            # Chapter 10 trains 3 models on 3,000 faces of the offline stand-in at base width 8
            # (official 128). Chosen by MoPoE's linear probe (mean AP of a logistic regression
            # on content means of 1,000 training faces, scored on 1,000 other training faces;
            # never the test split, never a claim), seed 0, image / text / joint (chance: the
            # mean prevalence, 0.22), and training seconds (2 threads):
            #   2 epochs (92 updates): 0.40 / 0.31 / 0.38, 16 s; 6 epochs: 0.43 / 0.31 / 0.40,
            #   45 s; 12 epochs: 0.45 / 0.31 / 0.41, 82 s; 6 epochs at lr 1e-3: 0.44 / 0.31 /
            #   0.41; lr 2e-3: 0.44 / 0.31 / 0.42; width 16: 0.47 / 0.31 / 0.44, 71 s.
            # The text encoder learns nothing it can pass on at any of these (0.31). In the
            # chapter (seed 0), 6 epochs instead of 2 raised Table 5's latent columns by at
            # most 0.05 and cost about 3 more minutes (the chapter took 335 s, ~60 s of it
            # the classifiers, on a machine not idle throughout, against 93 s with 2 epochs
            # and cached classifiers), which the book's hour cannot hold; so 2 epochs (92
            # updates) at the paper's lr.
            # Classifiers (chosen by their own test mean AP; text / image): 3 epochs at lr
            # 1e-3: 0.32 / 0.44; 10 epochs: 0.41 / 0.59; text 30 epochs at 3e-3: 0.49; width
            # 32, 15 epochs: text 0.67 in 48 s; width 8, 20 epochs at 3e-3 annealed (cosine):
            # 0.44 / 0.60 in 63 s, taken.
            "model": {"latent_dim": 32, "style_dim": 32, "width": 8, "beta": 2.5,
                      "beta_content": 1.0, "beta_style": 2.0, "style_weights": [1.0, 5.0]},
            "train": {"epochs": 2, "batch_size": 64, "lr": 5e-4, "checkpoint_every": 1,
                      "curve_every_steps": 46},
            "data": {"n_train": 3000, "prepare": {"n_train": 3000, "n_valid": 200,
                                                  "n_test": 500}},
            "eval": {"n_test": 500, "ll_n_test": 50, "joint_samples": 500,
                     "classifier_epochs": 20, "classifier_lr": 3e-3,
                     "classifier_lr_schedule": "cosine", "classifier_width": 8,
                     "curve_samples": 500},
        },
        "smoke": {
            "model": {"latent_dim": 16, "style_dim": 8, "width": 8, "beta": 2.5,
                      "beta_content": 1.0, "beta_style": 2.0, "style_weights": [1.0, 5.0]},
            "train": {"epochs": 1, "batch_size": 32, "lr": 5e-4, "checkpoint_every": 1,
                      "curve_every_steps": 4},
            "data": {"n_train": 256, "prepare": {"n_train": 256, "n_valid": 20, "n_test": 64}},
            "eval": {"n_test": 64, "ll_n_test": 8, "joint_samples": 64, "batch_size": 64,
                     "classifier_epochs": 1, "classifier_lr": 3e-3,
                     "classifier_lr_schedule": "cosine", "classifier_width": 8,
                     "lr_train_samples": 200,
                     "curve_samples": 64},
        },
    },
    "cub": {
        "paper": {
            # Shi et al.'s CUB image-caption model (iffsid/mmvae README, "cubIS"): latent 64,
            # 50 epochs, batch 64, K 50 (chapter 12's MMVAE), Adam lr 1e-3 (theirs: amsgrad),
            # image base width 64, Laplace image likelihood of scale 0.01 (their decoder's),
            # no beta (1); the vocabulary is the prepared captions' (theirs: 1590 words).
            "model": {"latent_dim": 64, "width": 64, "beta": 1.0, "laplace_scale": 0.01,
                      "vocab_size": None},
            "train": {"epochs": 50, "batch_size": 64, "lr": 1e-3},
            "eval": {"n_test": 1000, "ll_n_test": 1000, "ll_samples": 15},
        },
        "cpu": {
            # The SyntheticCUB stand-in (its grammar's 35 words), 2,000 training birds (20,000
            # captions). Quarter width (image 16-32-64-128, sentence 8-16-32), latent 32,
            # Gaussian image likelihood (sigma 0.1, as the other cpu profiles), 2 epochs (624
            # updates), by cost: chapter 12 has the last ~3 minutes of the book's hour. On
            # the attribute coherence of 300 TRAINING birds (never the test split, never a
            # claim), seed 0, MoPoE / MMVAE (mixture ELBO), vision -> vision: 0.52 / 0.59 at
            # 64 / 87 s of training (2 idle cores); 4 epochs gave 0.53 / 0.66 at twice the
            # time, and width 8 with 4 epochs 0.46 / 0.53 (both with the first renderer,
            # which also mirrored the birds).
            # Attribute classifier (chosen by its own test accuracy over the 7 attributes,
            # 300 test birds; never a claim): width 16 without batch norm, 10 / 30 epochs:
            # 0.48 / 0.66 (1,000 birds), 0.79 (2,000, 30 epochs); with batch norm, 15 / 30
            # epochs at lr 3e-3 (cosine): 0.90 / 0.95 (every attribute at least 0.93).
            "model": {"latent_dim": 32, "width": 16, "beta": 1.0, "vocab_size": 35,
                      "image_likelihood": "gaussian", "gaussian_scale": 0.1},
            "train": {"epochs": 2, "batch_size": 64, "lr": 2e-3, "beta_warmup_steps": 200,
                      "checkpoint_every": 1},
            "data": {"prepare": {"n_train": 2000, "n_test": 300}},
            "eval": {"n_test": 300, "ll_n_test": 100, "ll_samples": 5,
                     "classifier_epochs": 30, "classifier_lr": 3e-3, "classifier_width": 16},
        },
        "smoke": {
            "model": {"latent_dim": 16, "width": 8, "beta": 1.0, "vocab_size": 35,
                      "image_likelihood": "gaussian", "gaussian_scale": 0.1},
            "train": {"epochs": 1, "batch_size": 32, "lr": 2e-3, "checkpoint_every": 1},
            "data": {"n_train": 320, "prepare": {"n_train": 100, "n_test": 30}},
            "eval": {"n_test": 30, "ll_n_test": 10, "ll_samples": 3, "batch_size": 32,
                     "classifier_epochs": 1, "classifier_lr": 2e-3, "classifier_width": 8},
        },
    },
}  # fmt: skip


# ---------------------------------------------------------------------------


def _suggest(key: str, valid) -> str:
    close = difflib.get_close_matches(key, list(valid), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _apply(obj, updates: dict, prefix: str) -> None:
    """Set fields of a dataclass from a (nested or dotted) dict, refusing unknown keys."""
    if not isinstance(updates, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {updates!r}")
    names = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in updates.items():
        head, _, rest = key.partition(".")
        path = f"{prefix}{head}"
        if head not in names:
            raise ConfigError(
                f"unknown config key {path!r}{_suggest(head, names)}; valid keys here: "
                f"{sorted(names)}"
            )
        current = getattr(obj, head)
        if rest:
            if not dataclasses.is_dataclass(current):
                raise ConfigError(f"{path!r} is a value, not a section; cannot set {key!r}")
            _apply(current, {rest: value}, path + ".")
        elif dataclasses.is_dataclass(current):
            _apply(current, value, path + ".")
        else:
            setattr(obj, head, _coerce(path, current, value))


def _coerce(path: str, current, value):
    if isinstance(current, bool) and not isinstance(value, bool):
        raise ConfigError(f"{path} must be true or false, got {value!r}")
    if isinstance(current, tuple) and isinstance(value, list):
        return tuple(value)
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(current, int) and not isinstance(current, bool):
        if isinstance(value, float) or isinstance(value, str) or isinstance(value, bool):
            raise ConfigError(f"{path} must be an integer, got {value!r}")
    return value


def validate(cfg: Config) -> None:
    choices = {
        "dataset": (cfg.dataset, DATASETS),
        "method": (cfg.method, METHODS),
        "profile": (cfg.profile, PROFILES_NAMES),
        "model.prior_expert": (cfg.model.prior_expert, ("none", "full", "all")),
        "model.sampling": (cfg.model.sampling, ("stochastic", "batch_split", "stratified")),
        "model.kl": (cfg.model.kl, ("mixture", "subset_average")),
        "model.mvae_variant": (cfg.model.mvae_variant, ("joint", "joint_unimodal", "subsampled")),
        "model.image_likelihood": (cfg.model.image_likelihood, ("laplace", "gaussian")),
        "model.dreg_grad": (cfg.model.dreg_grad, ("intended", "released")),
        "model.mmvae_bound": (cfg.model.mmvae_bound, ("looser", "tight")),
        "model.mmvae_elbo": (cfg.model.mmvae_elbo, ("mixture", "unimodal_kl")),
        "model.experts": (cfg.model.experts, ("gaussian", "laplace")),
        "model.posterior_scale": (cfg.model.posterior_scale, ("exp", "softmax")),
        "model.batch_split_rows": (cfg.model.batch_split_rows, ("floor_div", "float32_floor")),
        "model.mvae_rec_weights": (cfg.model.mvae_rec_weights, ("all", "joint")),
        "model.text_likelihood": (cfg.model.text_likelihood, ("categorical", "official")),
        "eval.classifier": (cfg.eval.classifier, ("official", "cnn")),
        "eval.classifier_lr_schedule": (cfg.eval.classifier_lr_schedule, ("constant", "cosine")),
    }
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"{key} must be one of {allowed}, got {value!r}")
    positive = {
        "model.latent_dim": cfg.model.latent_dim,
        "train.epochs": cfg.train.epochs,
        "train.batch_size": cfg.train.batch_size,
        "model.importance_samples": cfg.model.importance_samples,
        "eval.ll_samples": cfg.eval.ll_samples,
        "eval.curve_samples": cfg.eval.curve_samples,
    }
    for key, value in positive.items():
        if value < 1:
            raise ConfigError(f"{key} must be >= 1, got {value}")
    if cfg.train.max_steps is not None and cfg.train.max_steps < 1:
        raise ConfigError(f"train.max_steps must be >= 1 or None, got {cfg.train.max_steps}")
    for key in ("beta_warmup_steps", "curve_every_steps"):
        if getattr(cfg.train, key) < 0:
            raise ConfigError(f"train.{key} must be >= 0 (0: off), got {getattr(cfg.train, key)}")
    if cfg.train.checkpoint_every_steps < 0:
        raise ConfigError(
            f"train.checkpoint_every_steps must be >= 0 (0: off), got {cfg.train.checkpoint_every_steps}"
        )
    if not isinstance(cfg.data.missing_ratio, int | float) or not 0 <= cfg.data.missing_ratio < 1:
        raise ConfigError(
            f"data.missing_ratio must be a number in [0, 1), got {cfg.data.missing_ratio!r}"
        )
    if cfg.data.missing_ratio and cfg.method == "mopoe" and cfg.model.sampling == "batch_split":
        raise ConfigError(
            "data.missing_ratio > 0 needs per-sample masks, which model.sampling='batch_split' "
            "does not support; use model.sampling='stochastic' or 'stratified'"
        )
    if cfg.model.modalities is not None:
        from .networks import MODALITIES

        mods, known = list(cfg.model.modalities), MODALITIES[cfg.dataset]
        if len(mods) < 2 or len(set(mods)) != len(mods) or not set(mods) <= set(known):
            raise ConfigError(f"model.modalities must be two or more distinct modalities of "
                              f"{cfg.dataset} {known}, got {mods}")  # fmt: skip
    for key in ("gaussian_scale", "laplace_scale", "width_multiplier"):
        value = getattr(cfg.model, key)
        if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
            raise ConfigError(f"model.{key} must be a positive number, got {value!r}")
    if cfg.model.width_multiplier != 1.0 and cfg.dataset != "polymnist":
        raise ConfigError("model.width_multiplier is implemented for polymnist only")
    if cfg.model.experts == "laplace" and not cfg.method.startswith("mmvae"):
        raise ConfigError("model.experts='laplace' is for the mmvae methods (no closed-form "
                          "product of Laplace experts)")  # fmt: skip
    if cfg.model.learn_prior_scale and cfg.model.experts != "laplace":
        raise ConfigError("model.learn_prior_scale needs model.experts='laplace'")
    if not isinstance(cfg.model.variance_eps, int | float) or cfg.model.variance_eps < 0:
        raise ConfigError(f"model.variance_eps must be >= 0, got {cfg.model.variance_eps!r}")
    if cfg.dataset == "cub" and cfg.train.curve_every_steps:
        raise ConfigError("train.curve_every_steps must be 0 for cub: the learning curve's "
                          "latent probe needs one class label per sample, which CUB lacks")  # fmt: skip
    vocab = cfg.model.vocab_size
    if vocab is not None and (isinstance(vocab, bool) or not isinstance(vocab, int) or vocab < 4):
        raise ConfigError(f"model.vocab_size must be the number of words of the prepared CUB "
                          f"vocabulary (at least 4), or None to read it from the data; got "
                          f"{vocab!r}")  # fmt: skip
    if cfg.model.style_dim and cfg.dataset != "celeba":
        raise ConfigError("model.style_dim > 0 (modality-specific latents) is for celeba only")


def make_config(
    dataset: str = "polymnist",
    method: str = "mopoe",
    profile: str = "cpu",
    overrides: dict | None = None,
    preset: str | None = None,
    **kwargs,
) -> Config:
    """The configuration of one run: defaults <- profile table <- preset <- overrides.

    ``preset="official"`` sets every official-code switch of ``method`` (see PRESETS).

    >>> make_config("polymnist", "mopoe", "paper").model.latent_dim
    512
    >>> make_config("polymnist", "mvae", "smoke", {"train.epochs": 1}).train.epochs
    1
    """
    if dataset not in DATASETS:
        raise ConfigError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if profile not in PROFILES_NAMES:
        raise ConfigError(f"profile must be one of {PROFILES_NAMES}, got {profile!r}")
    cfg = Config(dataset=dataset, method=method, profile=profile)
    _apply(cfg, PROFILES[dataset][profile], "")
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"preset must be one of {sorted(PRESETS)} or None, got {preset!r}")
        if method not in PRESETS[preset]:
            raise ConfigError(f"preset {preset!r} has no settings for method {method!r}; it "
                              f"covers {sorted(PRESETS[preset])}")  # fmt: skip
        _apply(cfg, {"model": PRESETS[preset][method]}, "")
    _apply(cfg, dict(overrides or {}, **kwargs), "")
    validate(cfg)
    return cfg


# A bounded run's evaluation: every metric of the profile computed the same way, on a few
# test tuples and samples, with coherence classifiers trained for one epoch on a few tuples.
BOUNDED_EVAL = {"n_test": 64, "ll_n_test": 8, "ll_samples": 3, "ll_batch_size": 8,
                "joint_samples": 64, "batch_size": 64, "lr_train_samples": 64,
                "classifier_epochs": 1, "classifier_n_train": 256, "curve_samples": 32}  # fmt: skip


def bounded_overrides(max_steps: int | None) -> dict:
    """Overrides that bound a run to ``max_steps`` optimizer steps and a small evaluation.

    The steps span two epochs with a checkpoint after each (so a bounded run also
    exercises checkpointing and resuming), and the evaluation is :data:`BOUNDED_EVAL`; the
    rest (the learning curve among it) is the profile's, as in the full run. ``None``: no
    bound (an empty dict). A bounded run keeps ``train.max_steps`` in its config, so its
    metrics are never taken for a reproduction
    (:func:`mopoe_lib.experiment.comparable_to_paper`).
    """
    if max_steps is None:
        return {}
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 2:
        raise ConfigError(f"max_steps must be an integer >= 2 (two epochs of at least one step "
                          f"each) or None, got {max_steps!r}")  # fmt: skip
    per_epoch = -(-max_steps // 2)
    return {"train.max_steps": max_steps, "train.steps_per_epoch": per_epoch,
            "train.checkpoint_every": 1, "train.checkpoint_every_steps": 0,
            "train.eval_every": 0,
            **{f"eval.{k}": v for k, v in BOUNDED_EVAL.items()}}  # fmt: skip


def parse_value(text: str):
    """A command-line value: JSON if it parses (numbers, true, null, lists), else a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
