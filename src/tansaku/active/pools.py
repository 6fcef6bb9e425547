"""Labelled pools for simulation: a CSV of formulas and values, or a stored property, with descriptors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tansaku import TansakuError
from tansaku.download import cache_dir, sha256_of
from tansaku.features.sets import featurizer_key, raw_features
from tansaku.files import write_atomically
from tansaku.sources.csv_table import median_by_formula, read_table
from tansaku.store.database import Database


@dataclass
class LabelledPool:
    names: list[str]  # formulas (CSV) or material ids (database)
    formulas: list[str]
    X: np.ndarray
    y: np.ndarray
    source: str

    def containing(self, element: str) -> np.ndarray:
        """True for materials whose formula contains the element (e.g. 'O' for oxides)."""
        from pymatgen.core import Composition

        return np.array([element in Composition(f).get_el_amt_dict() for f in self.formulas])


def pool_from_csv(path: Path, column: str | None = None, progress: Callable | None = None,
                  chunk: int = 5000) -> LabelledPool:
    """Composition descriptors of every valid row; computed once per file content and cached on disk."""
    rows, report = read_table(path, column)
    if not rows:
        raise TansakuError(f"{path}: no usable rows ({len(report.errors)} refused)")
    formulas = [formula for _, formula, _ in rows]
    y = np.array([value for _, _, value in rows])
    key = f"{sha256_of(path)[:16]}-{column or 'auto'}-{featurizer_key('composition')}"
    cache = cache_dir() / "pools" / f"{key}.npy"
    if cache.is_file():
        X = np.load(cache)
    else:
        parts = [formulas[i : i + chunk] for i in range(0, len(formulas), chunk)]
        X = np.vstack([raw_features(part, "composition") for part in (progress(parts) if progress else parts)])
        write_atomically(cache, lambda handle: np.save(handle, X))
    return LabelledPool(formulas, formulas, X, y, str(path))


def pool_from_database(db: Database, property_name: str, feature_set: str = "composition",
                       subset: str | None = None, progress: Callable | None = None) -> LabelledPool:
    """Materials holding the property (imported or computed, never ML), with cached descriptors."""
    from tansaku.models.dataset import load_dataset

    data = load_dataset(db, property_name, feature_set, subset, progress=progress)
    return LabelledPool([str(i) for i in data.material_ids], list(data.groups), data.X, data.y,
                        f"database property {property_name}")


def multi_property_pool(db: Database, properties: list[str], feature_set: str = "composition",
                        subset: str | None = None, progress: Callable | None = None
                        ) -> tuple[np.ndarray, dict[str, np.ndarray], list[int]]:
    """Descriptors and each property's measured values (property units) of the materials that hold all of them.
    `eps_total`, when not stored, is ε∞ + ε_ion (the tensors' eigenvalue averages add)."""
    from tansaku.models.dataset import load_dataset

    wanted = {p: (["eps_electronic", "eps_ionic"] if p == "eps_total" else [p]) for p in dict.fromkeys(properties)}
    loaded = {}
    for prop, parts in wanted.items():
        try:
            loaded[prop] = [load_dataset(db, prop, feature_set, subset, progress=progress, transform="none")]
        except TansakuError:
            if parts == [prop]:
                raise
            loaded[prop] = [load_dataset(db, p, feature_set, subset, progress=progress, transform="none")
                            for p in parts]
    common = sorted(set.intersection(*(set(d.material_ids) for sets in loaded.values() for d in sets)))
    if not common:
        raise TansakuError(f"no material holds all of {', '.join(wanted)}")
    first = next(iter(loaded.values()))[0]
    index = {m: i for i, m in enumerate(first.material_ids)}
    X = first.X[[index[m] for m in common]]
    values = {}
    for prop, sets in loaded.items():
        columns = []
        for data in sets:
            rows = {m: i for i, m in enumerate(data.material_ids)}
            columns.append(data.y[[rows[m] for m in common]])
        values[prop] = np.sum(columns, axis=0)
    return X, values, common


@dataclass
class TwoLevelPool:
    formulas: list[str]
    X: np.ndarray
    cheap: np.ndarray
    expensive: np.ndarray


def two_level_pool(cheap_csv: Path, expensive_csv: Path, cheap_column: str | None = None,
                   expensive_column: str | None = None) -> TwoLevelPool:
    """The compositions that both tables hold, joined by reduced formula (polymorphs by their median:
    `median_by_formula`), with composition descriptors."""
    cheap = median_by_formula(cheap_csv, cheap_column)
    expensive = median_by_formula(expensive_csv, expensive_column)
    formulas = sorted(set(cheap) & set(expensive))
    if not formulas:
        raise TansakuError(f"{cheap_csv.name} and {expensive_csv.name} share no composition")
    X = raw_features(formulas, "composition")
    return TwoLevelPool(formulas, X, np.array([cheap[f] for f in formulas]),
                        np.array([expensive[f] for f in formulas]))


def store_two_level_pool(db: Database, pool: TwoLevelPool, rows, method: str, cheap: str = "band_gap",
                         expensive: str = "band_gap_expt") -> None:
    """The chosen rows of a two-level pool as composition-only materials holding both levels' values (eV), so
    that a campaign with a dataset oracle can search them."""
    from pymatgen.core import Composition

    from tansaku.store.materials import composition_fields, set_property
    from tansaku.store.tables import Material

    with db.session() as session:
        for i in rows:
            material = Material(source="matbench", source_id=pool.formulas[i],
                                **composition_fields(Composition(pool.formulas[i])))
            session.add(material)
            session.flush()
            set_property(session, material, cheap, float(pool.cheap[i]), method, unit="eV")
            set_property(session, material, expensive, float(pool.expensive[i]), method, unit="eV")
