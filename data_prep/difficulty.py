"""How hard are the stand-ins? ``python -m data_prep.difficulty --root DIR`` (after preparing).

Fits, on the prepared offline sets, the quick classifiers whose test scores are quoted in the
docstrings of :mod:`data_prep.synthetic_svhn` and :mod:`data_prep.synthetic_celeba`:

- SyntheticSVHN (and, for scale, the offline MNIST digits): multinomial logistic regression on
  standardized pixels, and a small CNN (3 conv layers, 8 epochs of Adam) — test accuracy;
- SyntheticCelebA: the same small CNN with a 33-way sigmoid head — mean average precision over
  attributes on the test split, next to the mean prevalence (the AP of a random score).

On CPU this takes a few minutes.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn

from mopoe_lib.datasets import BimodalCelebA, MnistSvhnText


def logistic_regression_accuracy(x_train, y_train, x_test, y_test) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    clf = LogisticRegression(max_iter=300, C=0.05).fit(scaler.transform(x_train), y_train)
    return float(clf.score(scaler.transform(x_test), y_test))


def small_cnn(in_channels: int, outputs: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 4, 2, 1), nn.ReLU(),
        nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
        nn.Conv2d(64, 128, 4, 2, 1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Dropout(0.3), nn.Linear(512, outputs),
    )  # fmt: skip


def train_cnn(x, y, outputs, loss_fn, epochs=8, seed=0) -> nn.Module:
    torch.manual_seed(seed)
    model = small_cnn(x.shape[1], outputs)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x)).split(128):
            opt.zero_grad()
            loss_fn(model(x[idx].float() / 255), y[idx]).backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def predict(model, x) -> torch.Tensor:
    return torch.cat([model(b.float() / 255) for b in x.split(512)])


def digits_report(root) -> dict:
    train, test = MnistSvhnText(root, "train"), MnistSvhnText(root, "test")
    out = {}
    for name in ("svhn", "mnist"):
        (xtr, ytr), (xte, yte) = train.unimodal_tensors(name), test.unimodal_tensors(name)
        lr = logistic_regression_accuracy(
            xtr.flatten(1).numpy(), ytr.numpy(), xte.flatten(1).numpy(), yte.numpy()
        )
        model = train_cnn(xtr, ytr, 10, nn.functional.cross_entropy)
        cnn = float((predict(model, xte).argmax(1) == yte).float().mean())
        out[name] = {"n_train": len(ytr), "n_test": len(yte), "logreg_acc": lr, "cnn_acc": cnn}
    return out


def celeba_report(root) -> dict:
    from sklearn.metrics import average_precision_score

    train, test = BimodalCelebA(root, "train"), BimodalCelebA(root, "test")
    (data_train, ytr), (data_test, yte) = train.tensors(), test.tensors()
    xtr, xte = data_train["img"], data_test["img"]
    model = train_cnn(
        xtr, ytr.float(), ytr.shape[1], nn.functional.binary_cross_entropy_with_logits
    )
    scores = predict(model, xte).numpy()
    labels = yte.numpy()
    ap = {
        name: float(average_precision_score(labels[:, k], scores[:, k]))
        for k, name in enumerate(test.attribute_names)
        if 0 < labels[:, k].sum() < len(labels)
    }
    return {
        "n_train": len(ytr),
        "n_test": len(yte),
        "cnn_mean_ap": float(np.mean(list(ap.values()))),
        "mean_prevalence": float(labels.mean()),
        "ap": ap,
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m data_prep.difficulty", description=__doc__)
    p.add_argument("--root", required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    for name, r in digits_report(args.root).items():
        print(f"{name}: logistic regression {r['logreg_acc']:.3f}, small CNN {r['cnn_acc']:.3f} "
              f"(train {r['n_train']}, test {r['n_test']})")  # fmt: skip
    r = celeba_report(args.root)
    print(f"SyntheticCelebA: small CNN mean AP {r['cnn_mean_ap']:.3f} over {len(r['ap'])} "
          f"attributes (mean prevalence {r['mean_prevalence']:.3f})")  # fmt: skip
    for name, ap in sorted(r["ap"].items(), key=lambda kv: kv[1]):
        print(f"  {name:20s} AP {ap:.3f}")


if __name__ == "__main__":
    main()
