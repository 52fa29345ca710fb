"""The published numbers, as data: one YAML file, read here, never computed.

>>> from mopoe_lib.published import lookup
>>> lookup("table2", "MoPoE", "M,S")
Published(table='table2', row='MoPoE', column='M,S', value=0.97, std=0.01, source='paper')
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

PATH = Path(__file__).with_name("published.yaml")
SOURCES = {
    "paper": "Sutter, Daunhawer & Vogt, Generalized Multimodal ELBO, ICLR 2021",
    "slides": "Shi et al., Variational Mixture-of-Experts Autoencoders, NeurIPS 2019 (MMVAE slides)",
}


@dataclass(frozen=True)
class Published:
    table: str
    row: str
    column: str
    value: float
    std: float | None
    source: str


@cache
def tables() -> dict:
    """All published tables: name -> dict(title, dataset, metric, setting, columns, rows)."""
    data = yaml.safe_load(PATH.read_text())["tables"]
    for name, t in data.items():
        for row, cells in t["rows"].items():
            if len(cells) != len(t["columns"]):
                raise ValueError(
                    f"{PATH.name}: {name}/{row} has {len(cells)} cells for {len(t['columns'])} columns"
                )
    return data


def lookup(table: str, row: str, column: str) -> Published:
    t = tables().get(table)
    if t is None:
        raise KeyError(f"no published table {table!r}; known: {sorted(tables())}")
    if row not in t["rows"]:
        raise KeyError(f"{table} has no row {row!r}; rows: {list(t['rows'])}")
    if column not in t["columns"]:
        raise KeyError(f"{table} has no column {column!r}; columns: {t['columns']}")
    value, std = t["rows"][row][t["columns"].index(column)]
    return Published(table, row, column, value, std, t["source"])


def tolerance(table: str, pub: Published) -> float:
    """The largest accepted |this run - published| for a paper-profile run on real data."""
    tol = tables()[table]["tolerance"]
    floor = tol.get("abs", 0.0) or tol.get("rel", 0.0) * abs(pub.value)
    return max(tol.get("std_multiple", 0.0) * (pub.std or 0.0), floor)


def check(values: list[dict]) -> list[str]:
    """Compare reported values with the published ones; returns one line per failure.

    ``values`` are dicts with ``table``, ``row``, ``column``, ``value``; values of tables
    that are not published (a chapter's own curves) are ignored.
    """
    failures = []
    for v in values:
        if v.get("table") not in tables():
            continue
        pub = lookup(v["table"], v["row"], v["column"])
        tol = tolerance(v["table"], pub)
        value = v.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float):
            failures.append(f"{v['table']} {v['row']} {v['column']}: this run gave no number "
                            f"({value!r}), published {pub.value:g}")  # fmt: skip
            continue
        if not abs(v["value"] - pub.value) <= tol:
            failures.append(
                f"{v['table']} {v['row']} {v['column']}: this run {v['value']:.4g}, published "
                f"{pub.value:g}"
                + (f" ± {pub.std:g}" if pub.std is not None else "")
                + f" (tolerance {tol:.3g})"
            )
    return failures


def compare(doc: dict) -> dict:
    """A chapter's metrics file (``write_chapter_metrics``) set against the published numbers.

    Returns ``status`` ("matches", "differs", "not comparable" or "no published numbers"),
    ``values`` (how many reported values have a published counterpart), ``failures`` (the
    lines of :func:`check`) and ``reason`` (why the run is not comparable). A run that is
    not comparable (offline data, another profile, a bounded run) is reported as such, never
    as a match or a difference, whatever its numbers.
    """
    values = [v for v in doc.get("values") or [] if v.get("table") in tables()]
    out = {"values": len(values), "failures": check(values), "reason": ""}
    if not doc.get("comparable_to_paper") and doc.get("runs"):
        out["reason"] = doc.get("not_comparable_reason") or "the run is not marked comparable"
    if not values:  # (the reason, if any, still says why the runs are not comparable)
        return {**out, "status": "no published numbers"}
    if not doc.get("comparable_to_paper"):
        return {**out, "status": "not comparable"}
    return {**out, "status": "differs" if out["failures"] else "matches"}


def entries(table: str | None = None) -> list[Published]:
    """Every published number (of one table, or of all)."""
    out = []
    for name, t in tables().items():
        if table is not None and name != table:
            continue
        for row, cells in t["rows"].items():
            for column, (value, std) in zip(t["columns"], cells, strict=True):
                out.append(Published(name, row, column, value, std, t["source"]))
    return out
