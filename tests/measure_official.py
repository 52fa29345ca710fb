"""Max |diff| of every comparison in tests/test_official.py: runs its test functions and
records what they compare (book/appendix/official_code.md quotes the result).

    PYTHONPATH=. python tests/measure_official.py
"""

import collections
import sys

sys.path.insert(0, "tests")
import test_official as T  # noqa: E402

RECORD = collections.defaultdict(lambda: [0.0, 0.0])
_CURRENT = [""]
_compare = T.compare


def compare(model, a, b):
    d, g = _compare(model, a, b)
    r = RECORD[_CURRENT[0]]
    r[0], r[1] = max(r[0], d), max(r[1], g)
    return d, g


class Patch:
    """The part of pytest's monkeypatch that the tests use."""

    def __init__(self):
        self.saved = []

    def setattr(self, obj, name, value):
        self.saved.append((obj, name, getattr(obj, name)))
        setattr(obj, name, value)

    def undo(self):
        for obj, name, value in reversed(self.saved):
            setattr(obj, name, value)


def run(fn, name, cases):
    _CURRENT[0] = name
    for case in cases:
        patch = Patch()
        try:
            fn(patch, *case)
        finally:
            patch.undo()


def main():
    T.compare = compare
    dreg = [(g, h, b, *c) for g, h in (("intended", "codes"), ("released", "copy"))
            for b in ("looser", "tight") for c in ((2, 5, 7), (3, 3, 31))]  # fmt: skip
    run(
        T.test_mopoe_official_preset_equals_the_official_code,
        "MoPoE",
        [(2, 9, False), (3, 62, True), (5, 62, False), (5, 93, True), (4, 40, False)],
    )
    run(
        T.test_mvae_official_preset_equals_the_official_code,
        "MVAE",
        [(2, 8, False), (3, 31, True), (5, 20, False)],
    )
    run(
        T.test_mmvae_official_preset_equals_shi_et_al,
        "MMVAE preset",
        [(2, 30, 6, False), (3, 4, 31, True), (2, 1, 62, False)],
    )
    run(T.test_dreg_both_gradients_and_both_bounds, "DReG", dreg)
    run(T.test_mmvae_iwae_bounds_equal_shi_et_al, "m_iwae(_looser)", [("looser",), ("tight",)])
    run(T.test_mmvae_m_elbo_equals_shi_et_al, "m_elbo", [(2, 9), (3, 31)])  # fmt: skip
    for name, (d, g) in RECORD.items():
        print(f"{name}: max |d value| {d:.1e}, max |d grad| {g:.1e}")


if __name__ == "__main__":
    main()
