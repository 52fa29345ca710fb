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
