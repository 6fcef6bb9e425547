"""Training data from the database: descriptors, the target in the model's units (`models.transform`), groups."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, select

from tansaku import TansakuError
from tansaku.features.sets import base_set, cached_features, feature_names
from tansaku.models import transform as transforms
from tansaku.store.database import Database
from tansaku.store.filters import is_measured
from tansaku.store.tables import Material, Property, Subset


@dataclass
class Dataset:
    material_ids: list[int]
    X: np.ndarray
    y: np.ndarray  # in model units: log10 of the value when transform is log10
    groups: np.ndarray  # reduced formulas
    feature_names: list[str]
    property_name: str
    transform: str = "none"
    transform_reason: str = ""
    left_out: int = 0  # values the transform cannot take (log10 of a value <= 0)

    @property
    def log_target(self) -> bool:
        return self.transform == "log10"

    def hash(self) -> str:
        import hashlib

        digest = hashlib.sha256(np.asarray(self.material_ids, dtype=np.int64).tobytes())
        digest.update(np.round(self.y, 10).tobytes())
        return digest.hexdigest()[:16]


def load_dataset(
    db: Database, property_name: str, feature_set: str, subset: str | None = None,
    method: str | None = None, progress: Callable | None = None, transform: str = "auto",
) -> Dataset:
    """One row per material having the property (imported or computed values; ML predictions never)."""
    query = (select(Property.material_id, Property.value, Material.reduced_formula)
             .join(Material, Material.id == Property.material_id)
             .where(Property.name == property_name, Property.value.is_not(None), is_measured())
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
        if base_set(feature_set) == "structure":
            with db.session() as session:
                n = session.scalar(select(func.count(func.distinct(Property.material_id))).where(
                    Property.name == property_name, Property.value.is_not(None), is_measured()))
            if n:
                raise TansakuError(f"{n} materials have {property_name!r}, but none of those selected has a crystal "
                                   "structure (composition-only data, e.g. from a CSV): use --features composition")
        raise TansakuError(f"no material has property {property_name!r}{where}; import or compute it first")
    chosen, why = transforms.choose(property_name, np.array([v for v, _ in values.values()]), transform)
    ids, raw, groups = [], [], []
    for material_id, (value, formula) in values.items():
        ids.append(material_id)
        raw.append(value)
        groups.append(formula)
    keep = transforms.usable(chosen, np.array(raw))
    ids = [i for i, ok in zip(ids, keep, strict=True) if ok]
    groups = [g for g, ok in zip(groups, keep, strict=True) if ok]
    y = transforms.forward(chosen, np.array(raw)[keep])
    X = cached_features(db, ids, feature_set, progress)
    return Dataset(ids, X, y, np.array(groups), feature_names(feature_set), property_name, chosen, why,
                   int((~keep).sum()))


def formula_values(db: Database, property_name: str, subset: str | None = None) -> list[tuple[str, float]]:
    """(reduced formula, value) of every stored value of a property (ML predictions never): what pretraining
    on a large property reads, without the descriptors `load_dataset` computes."""
    query = (select(Material.reduced_formula, Property.value).join(Material, Material.id == Property.material_id)
             .where(Property.name == property_name, Property.value.is_not(None), is_measured()))
    if subset:
        query = query.where(Property.material_id.in_(select(Subset.material_id).where(Subset.name == subset)))
    with db.session() as session:
        return [(formula, value) for formula, value in session.execute(query)]
