"""The registry of the book's numbered equations and the one function that computes each.

Chapter 7 renders this registry as a table, and ``tests/test_equations.py`` keeps it in
step with the chapters: every function imports and names its equation in its docstring,
every registered label is used in a chapter, and every equation label of a chapter is
registered. Labels are the MyST labels of the displayed equations (``(eq-...)`` after a
``$$`` block, or ``\\label{eq-...}``).
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Equation:
    """One displayed equation of the book.

    label: the MyST label, e.g. ``"eq-mopoe"``.
    paper: where it appears in Sutter et al. (2021) (or the cited source), e.g. ``"Eq. (6)"``.
    description: what it is, in a few words.
    function: dotted path of the one function that computes it.
    chapter: the file stem of the chapter that derives it.
    mention: a phrase that the function's docstring must contain, naming the equation.
    """

    label: str
    paper: str
    description: str
    function: str
    chapter: str
    mention: str


_LG = "mopoe_lib.linear_gaussian.LinearGaussianModel"

REGISTRY: tuple[Equation, ...] = (
    Equation(
        "eq-log-evidence",
        "Eq. (1)",
        "log p(X) = KL(q(z|X) || p(z|X)) + ELBO; the gap",
        "mopoe_lib.bounds.kl_to_gaussian",
        "02_elbo_and_gap",
        "Eq. (1)",
    ),
    Equation(
        "eq-elbo",
        "Eq. (2)",
        "the ELBO (closed form on the linear-Gaussian model)",
        f"{_LG}.elbo",
        "02_elbo_and_gap",
        "ELBO",
    ),
    Equation(
        "eq-iwae",
        "Burda et al. (2016)",
        "the importance-weighted bound L_K",
        "mopoe_lib.bounds.importance_weighted_bound",
        "02_elbo_and_gap",
        "importance-weighted bound",
    ),
    Equation(
        "eq-subset-elbo",
        "Eq. (4)",
        "subset ELBO L_k(theta, phi_k; X), all modalities decoded",
        f"{_LG}.elbo",
        "03_missing_modalities",
        "(all by default)",
    ),
    Equation(
        "eq-naive-subset-elbo",
        "Section 3.2",
        "naive subset ELBO L(theta, phi_k; X_k)",
        f"{_LG}.elbo",
        "03_missing_modalities",
        "``members``",
    ),
    Equation(
        "eq-fmean",
        "Section 3.3",
        "abstract mean M_f",
        "mopoe_lib.means.f_mean",
        "04_abstract_means",
        "abstract mean",
    ),
    Equation(
        "eq-gauss-product",
        "Section 3.5",
        "closed-form product of Gaussian experts",
        "mopoe_lib.experts.product_of_experts",
        "04_abstract_means",
        "product of Gaussian experts",
    ),
    Equation(
        "eq-subset-poe",
        "Definition 1.1",
        "subset posterior: product of its experts",
        "mopoe_lib.fusion.subset_posteriors",
        "05_generalized_elbo",
        "product of experts",
    ),
    Equation(
        "eq-mopoe-posterior",
        "Definition 1.2",
        "joint posterior: mixture of subset posteriors",
        "mopoe_lib.experts.mixture_log_prob",
        "05_generalized_elbo",
        "mixture",
    ),
    Equation(
        "eq-mopoe",
        "Eq. (6)",
        "L_MoPoE",
        "mopoe_lib.objectives.mopoe",
        "05_generalized_elbo",
        "Eq. (6)",
    ),
    Equation(
        "eq-subset-elbo-average",
        "Eq. (12), (21)",
        "average of subset ELBOs (Eq. (5) objective)",
        "mopoe_lib.objectives.subset_elbo_average",
        "05_generalized_elbo",
        "Eq. (21)",
    ),
    Equation(
        "eq-poe-elbo",
        "Eq. (7), (8)",
        "MVAE: the PoE ELBO",
        "mopoe_lib.objectives.mvae",
        "05_generalized_elbo",
        "Eq. (7)",
    ),
    Equation(
        "eq-moe-elbo",
        "Eq. (9), (10)",
        "MMVAE: the MoE ELBO",
        "mopoe_lib.objectives.mmvae",
        "05_generalized_elbo",
        "Eq. (9)",
    ),
    Equation(
        "eq-iwae-moe",
        "Shi et al. (2019)",
        "stratified importance-weighted MoE bound",
        "mopoe_lib.objectives.mmvae",
        "06_mmvae_iwae",
        "L_IWAE^MoE",
    ),
    Equation(
        "eq-style",
        "Eq. (34)",
        "MoPoE with modality-specific (style) latents",
        "mopoe_lib.objectives.mopoe_with_style",
        "07_library_tour",
        "Eq. (34)",
    ),
)

_LABEL = re.compile(r"\$\$\s*\((eq-[A-Za-z0-9_-]+)\)|\\label\{(eq-[A-Za-z0-9_-]+)\}")


def resolve(dotted: str):
    """Import the object at a dotted path such as ``mopoe_lib.objectives.mopoe``."""
    parts = dotted.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(f"cannot import {dotted!r}")


def labels_in_markdown(text: str) -> list[str]:
    """Equation labels defined in MyST markdown: ``$$ ... $$ (eq-x)`` or ``\\label{eq-x}``."""
    return [a or b for a, b in _LABEL.findall(text)]


def labels_in_notebook(path: str | Path) -> list[str]:
    """Equation labels defined in the markdown cells of a notebook."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    found = []
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            src = cell["source"]
            found += labels_in_markdown("".join(src) if isinstance(src, list) else src)
    return found


def table_markdown(registry: tuple[Equation, ...] = REGISTRY) -> str:
    """The registry as a Markdown table (label, paper, description, function, chapter)."""
    lines = [
        "| label | in the paper | what | function | chapter |",
        "|---|---|---|---|---|",
    ]
    for e in registry:
        what = e.description.replace("|", "\\|")
        lines.append(f"| `{e.label}` | {e.paper} | {what} | `{e.function}` | {e.chapter} |")
    return "\n".join(lines)
