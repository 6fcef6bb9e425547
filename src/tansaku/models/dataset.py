"""Training data from the database: descriptors, the target (log10 for dielectric constants), groups."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sqlalchemy import select

from tansaku import TansakuError
from tansaku.features.sets import base_set, cached_features, feature_names
from tansaku.store.database import Database
from tansaku.store.models import Material, Property, Subset

LOG_TARGETS = ("eps_electronic", "eps_ionic", "eps_total")


def uses_log(property_name: str) -> bool:
    return property_name in LOG_TARGETS


@dataclass
class Dataset:
    material_ids: list[int]
    X: np.ndarray
    y: np.ndarray  # log10 of the value for dielectric properties
    groups: np.ndarray  # reduced formulas
    feature_names: list[str]
    property_name: str
    log_target: bool

    def hash(self) -> str:
        import hashlib

        digest = hashlib.sha256(np.asarray(self.material_ids, dtype=np.int64).tobytes())
        digest.update(np.round(self.y, 10).tobytes())
        return digest.hexdigest()[:16]


def load_dataset(
    db: Database, property_name: str, feature_set: str, subset: str | None = None,
    method: str | None = None, progress: Callable | None = None,
) -> Dataset:
    """One row per material having the property (imported or computed values; ML predictions never)."""
    query = (select(Property.material_id, Property.value, Material.reduced_formula)
             .join(Material, Material.id == Property.material_id)
             .where(Property.name == property_name, Property.value.is_not(None),
                    ~Property.method.startswith("ml:"))
             .order_by(Property.material_id, Property.id))
    if method:
        query = query.where(Property.method == method)
    if subset:
        query = query.where(Property.material_id.in_(select(Subset.material_id).where(Subset.name == subset)))
    if base_set(feature_set) == "structure":
        query = query.where(Material.structure_json.is_not(None))
    with db.session() as session:
        rows = session.execute(query).all()
    values: dict[int, tuple[float, str]] = {}
    for material_id, value, formula in rows:
        values.setdefault(material_id, (value, formula))  # first method wins when several exist
    if not values:
        where = f" in subset {subset!r}" if subset else ""
        raise TansakuError(f"no material has property {property_name!r}{where}; import or compute it first")
    log_target = uses_log(property_name)
    ids, y, groups = [], [], []
    for material_id, (value, formula) in values.items():
        if log_target and value <= 0:
            continue  # log10 undefined: such entries (a few tiny ε_ion) are left out, as in the paper
        ids.append(material_id)
        y.append(np.log10(value) if log_target else value)
        groups.append(formula)
    X = cached_features(db, ids, feature_set, progress)
    return Dataset(ids, X, np.array(y), np.array(groups), feature_names(feature_set), property_name, log_target)


def formula_values(db: Database, property_name: str, subset: str | None = None) -> list[tuple[str, float]]:
    """(reduced formula, value) of every stored value of a property (ML predictions never): what pretraining
    on a large property reads, without the descriptors `load_dataset` computes."""
    query = (select(Material.reduced_formula, Property.value).join(Material, Material.id == Property.material_id)
             .where(Property.name == property_name, Property.value.is_not(None), ~Property.method.startswith("ml:")))
    if subset:
        query = query.where(Property.material_id.in_(select(Subset.material_id).where(Subset.name == subset)))
    with db.session() as session:
        return [(formula, value) for formula, value in session.execute(query)]
