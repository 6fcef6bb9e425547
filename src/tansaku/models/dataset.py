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
    chemsys: np.ndarray | None = None  # element sets ("Mg,O"): whole chemical systems held out together
    prototype: np.ndarray | None = None  # anonymized formula and space group ("AB2C4 227")
    transform: str = "none"
    transform_reason: str = ""
    left_out: int = 0  # values the transform cannot take (log10 of a value <= 0)

    def groupings(self) -> dict[str, np.ndarray]:
        """The ways to hold out whole groups (`models.evaluation.evaluate`): by chemical system, which is what
        a search over new chemistry needs, and by prototype. Grouping by formula would be a random split: the
        paper's 1,266 oxides have 1,266 formulas."""
        named = {"grouped": self.chemsys if self.chemsys is not None else self.groups}
        if self.prototype is not None:
            named["grouped_prototype"] = self.prototype
        return named

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
    query = (select(Property.material_id, Property.value, Material.reduced_formula, Material.elements,
                    Material.spacegroup_number)
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
    labels: dict[int, tuple[str, str]] = {}
    for material_id, value, formula, elements, spacegroup in rows:
        values.setdefault(material_id, (value, formula))  # first method wins when several exist
        labels.setdefault(material_id, (elements, f"{_anonymous(formula)} {spacegroup or ''}".strip()))
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
    return Dataset(ids, X, y, np.array(groups), feature_names(feature_set), property_name,
                   np.array([labels[i][0] for i in ids]), np.array([labels[i][1] for i in ids]), chosen, why,
                   int((~keep).sum()))


def _anonymous(formula: str) -> str:
    """'SrTiO3' → 'ABC3': the stoichiometry without the elements (with the space group, a prototype label)."""
    from pymatgen.core import Composition

    try:
        return Composition(formula).anonymized_formula
    except Exception:  # noqa: BLE001 - a formula pymatgen cannot parse keeps its own label
        return formula


def formula_values(db: Database, property_name: str, subset: str | None = None) -> list[tuple[str, float]]:
    """(reduced formula, value) of every stored value of a property (ML predictions never): what pretraining
    on a large property reads, without the descriptors `load_dataset` computes."""
    query = (select(Material.reduced_formula, Property.value).join(Material, Material.id == Property.material_id)
             .where(Property.name == property_name, Property.value.is_not(None), is_measured()))
    if subset:
        query = query.where(Property.material_id.in_(select(Subset.material_id).where(Subset.name == subset)))
    with db.session() as session:
        return [(formula, value) for formula, value in session.execute(query)]


def pretraining_values(db: Database, property_name: str, subset: str | None = None,
                       leave_out: str | None = None) -> tuple[list[tuple[str, float]], int]:
    """`formula_values`, less every composition the materials of subset `leave_out` have (so that a model later
    tested on that subset has not seen its compositions while pretraining, even for another property), and how
    many values that left out."""
    rows = formula_values(db, property_name, subset)
    if not leave_out:
        return rows, 0
    with db.session() as session:
        held = set(session.scalars(select(Material.reduced_formula).join(Subset, Subset.material_id == Material.id)
                                   .where(Subset.name == leave_out)))
    if not held:
        raise TansakuError(f"subset {leave_out!r} has no materials in {db.url}: nothing to leave out "
                           "(subsets: 'tansaku db stats')")
    kept = [row for row in rows if row[0] not in held]
    return kept, len(rows) - len(kept)
