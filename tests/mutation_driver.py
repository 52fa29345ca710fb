"""Plant one known mistake in a copy of mopoe_lib and run what should catch it.

    python tests/mutation_driver.py PLANT      # prints a JSON report

Each plant is a mistake someone could plausibly make (most of them observed in review,
issue #16): it is applied as a text replacement to a copy of the library in a temporary
folder, never to the checkout. The driver then runs, against the copy,

1. the named unit test that exists to catch it (it must fail), and
2. the code cells of a theory chapter in order, up to the cell named by ``target``,
   skipping the expensive cells named in ``skip`` that the target does not need; the
   first exception is recorded (it must be an AssertionError: a check fails, nothing
   crashes).

tests/test_mutations.py runs every plant and asserts both. The table of the closing
section of chapter 7 lists the same plants.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFS = "tests/test_independent_references.py"


@dataclass(frozen=True)
class Plant:
    what: str  # the mistake, in words
    file: str  # under mopoe_lib/
    edits: tuple[tuple[str, str], ...]  # (old, new); each old must occur exactly once
    test: str  # pytest node id that must fail
    chapter: str  # book/theory/<chapter>.ipynb
    target: str  # a string of the chapter cell whose assert must fail
    skip: tuple[str, ...] = field(default=())  # strings of cells not needed before it


PLANTS: dict[str, Plant] = {
    "mixture_weights_1_over_2M": Plant(
        "MoPoE mixture weights 1/2^M instead of 1/(2^M - 1), the slip Eq. (6) invites",
        "objectives.py",
        (("log_share = -torch.log(valid.sum(0).to(z.dtype))  # (B,) or (1,)",
          "log_share = -torch.log(valid.sum(0).to(z.dtype) + 1)  # (B,) or (1,)"),),
        f"{REFS}::test_mopoe_matches_per_draw_reference",
        "05_generalized_elbo", "gen_js = ", skip=("mopoe_draws = torch.stack",),
    ),
    "dropped_prior_expert": Plant(
        "prior_expert='all' silently fuses no prior expert (the MVAE loses p(z))",
        "fusion.py",
        (('    if prior_expert is True or prior_expert == "all":\n'
          "        return torch.ones(subsets.shape[0]",
          '    if prior_expert is True or prior_expert == "all":\n'
          "        return torch.zeros(subsets.shape[0]"),),
        f"{REFS}::test_mvae_joint_matches_explicit_product_with_prior",
        "05_generalized_elbo", "eps_full = ", skip=("mopoe_draws = torch.stack",),
    ),
    "mixture_density_mean_of_logs": Plant(
        "the mixture density as the average of log-densities (a geometric, not arithmetic, mean)",
        "experts.py",
        (("comp = log_normal(z.unsqueeze(0), mu, logvar)  # (K, ...)\n"
          "    if log_weights is None:\n"
          "        return torch.logsumexp(comp, dim=0) - math.log(k)\n"
          "    return torch.logsumexp(comp + log_weights, dim=0)",
          "comp = log_normal(z.unsqueeze(0), mu, logvar)  # (K, ...)\n"
          "    if log_weights is None:\n"
          "        return comp.mean(0)\n"
          "    return (comp * log_weights.exp()).sum(0)"),),
        f"{REFS}::test_mixture_log_prob_matches_hand_written",
        "01_multimodal_problem", "def n_modes",
    ),
    "kl_missing_half": Plant(
        "KL(N(mu, sigma^2) || N(0, I)) without its factor 1/2",
        "experts.py",
        (("return 0.5 * (mu.pow(2) + torch.expm1(logvar) - logvar).sum(-1)",
          "return (mu.pow(2) + torch.expm1(logvar) - logvar).sum(-1)"),),
        f"{REFS}::test_kl_std_normal_closed_form",
        "07_library_tour", "mopoe_with_style(",
    ),
    "fusion_geometric_mean": Plant(
        "the models' batched fusion divides the precision by the number of experts "
        "(normalized geometric mean instead of the product)",
        "fusion.py",
        (("logvar_k = torch.log(big_w).add_(shift).neg_()",
          "logvar_k = torch.log(big_w / sel.sum(1).view(-1, 1, 1)).add_(shift).neg_()"),),
        f"{REFS}::test_fusion_matches_explicit_product",
        "04_abstract_means", "subset_posteriors(",
    ),
    "iwae_mmvae_missing_log_K": Plant(
        "MMVAE's stratified IWAE bound with log sum_k w_k instead of log (1/K) sum_k w_k",
        "objectives.py",
        (("per_m = torch.logsumexp(log_w, dim=1) - math.log(K)",
          "per_m = torch.logsumexp(log_w, dim=1)"),),
        f"{REFS}::test_mmvae_matches_per_draw_reference",
        "06_mmvae_iwae", "Ks, reps = ", skip=("gradient_differences",),
    ),
    "stratum_own_component_density": Plant(
        "MMVAE divides by the stratum's own component q(z|x_m) instead of the mixture q(z|X)",
        "objectives.py",
        (("log_q = _mixture_log_q(z, mu_q, lv_q, valid)  # (M, K, B)",
          "log_q = _own(z, mu_q.unsqueeze(1), lv_q.unsqueeze(1))"),
         ("    reparameterize_laplace,\n)\n",
          "    reparameterize_laplace,\n)\nfrom .experts import log_normal as _own\n")),
        f"{REFS}::test_mmvae_matches_per_draw_reference",
        "05_generalized_elbo", "eps_uni = ", skip=("mopoe_draws = torch.stack",),
    ),
    "dreg_weights_not_squared": Plant(
        "DReG without the second factor of w~ on the pathwise gradient (weights w~, not w~^2)",
        "objectives.py",
        (("z.register_hook(lambda g: g * w_tilde.unsqueeze(-1))", "pass"),),
        f"{REFS}::test_dreg_gradient_matches_hand_written",
        "06_mmvae_iwae", "def gradient_differences", skip=("Ks, reps = ", "fig, ax"),
    ),
    "average_elbo_with_mixture_kl": Plant(
        "the average of subset ELBOs (Eq. (21)) computed with the mixture's KL, i.e. L_MoPoE",
        "objectives.py",
        (('        sampling="stratified",\n        kl="subset_average",\n        mask=mask,',
          '        sampling="stratified",\n        kl="mixture",\n        mask=mask,'),),
        f"{REFS}::test_subset_elbo_average_matches_reference",
        "05_generalized_elbo", "gen_js = ", skip=("mopoe_draws = torch.stack",),
    ),
    "iwae_bound_missing_log_K": Plant(
        "the importance-weighted bound log sum_k w_k without the 1/K",
        "bounds.py",
        (("return torch.logsumexp(log_w, dim=dim) - math.log(log_w.shape[dim])",
          "return torch.logsumexp(log_w, dim=dim)"),),
        f"{REFS}::test_importance_weighted_bound_reference",
        "02_elbo_and_gap", "Ks = [1, 2, 4",
    ),
}  # fmt: skip


def planted_source(plant: Plant, text: str) -> str:
    """The library file's text with the plant applied; each edit must match exactly once,
    so a plant that no longer fits the source fails loudly instead of planting nothing."""
    for old, new in plant.edits:
        count = text.count(old)
        if count != 1:
            raise ValueError(f"plant edit {old!r} matches {count} times in {plant.file}")
        text = text.replace(old, new)
    return text


def make_tree(plant: Plant, dest: Path) -> None:
    """A copy of what the checks need (library, tests, theory chapters) with the plant."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints")
    shutil.copytree(ROOT / "mopoe_lib", dest / "mopoe_lib", ignore=ignore)
    shutil.copytree(ROOT / "tests", dest / "tests", ignore=ignore)
    (dest / "book").mkdir()
    shutil.copytree(ROOT / "book" / "theory", dest / "book" / "theory", ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    target = dest / "mopoe_lib" / plant.file
    target.write_text(planted_source(plant, target.read_text()))


def run_chapter(path: Path, target: str, skip: tuple[str, ...]) -> dict:
    """Execute the chapter's code cells in order up to the target cell; report the first
    exception (None when every cell ran)."""
    import matplotlib

    matplotlib.use("Agg")
    import nbformat
    from IPython.display import display

    nb = nbformat.read(path, as_version=4)
    code = [(i, c.source) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    if not any(target in src for _, src in code):
        raise ValueError(f"no code cell of {path.name} contains {target!r}")
    ns = {"__name__": "__main__", "display": display}
    for i, src in code:
        is_target = target in src
        if not is_target and any(s in src for s in skip):
            continue
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(src, f"{path.name}[cell {i}]", "exec"), ns)
        except Exception as exc:  # the report says which cell and what failed
            return {"cell": i, "exception": type(exc).__name__, "message": str(exc)[:300]}
        if is_target:
            break
    return {"cell": None, "exception": None, "message": ""}


def run_plant(name: str) -> dict:
    plant = PLANTS[name]
    with tempfile.TemporaryDirectory(prefix=f"plant-{name}-") as tmp:
        dest = Path(tmp)
        make_tree(plant, dest)
        os.chdir(dest)
        sys.path.insert(0, str(dest))
        import mopoe_lib

        assert Path(mopoe_lib.__file__).is_relative_to(dest), mopoe_lib.__file__
        import pytest

        with contextlib.redirect_stdout(io.StringIO()) as out:
            code = pytest.main([plant.test, "-q", "-x", "-p", "no:cacheprovider", "-W", "ignore"])
        chapter = run_chapter(
            dest / "book" / "theory" / f"{plant.chapter}.ipynb", plant.target, plant.skip
        )
    return {
        "plant": name,
        "test": plant.test,
        "test_failed": int(code) == 1,
        "pytest_tail": out.getvalue()[-400:],
        "chapter": plant.chapter,
        **{f"chapter_{k}": v for k, v in chapter.items()},
    }


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in PLANTS:
        sys.exit(f"usage: python tests/mutation_driver.py PLANT, one of {sorted(PLANTS)}")
    print(json.dumps(run_plant(sys.argv[1])))
