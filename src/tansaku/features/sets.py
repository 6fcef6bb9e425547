"""Named descriptor sets and their cache in the database (raw values, NaN kept; imputation happens in the model)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sqlalchemy import select

from tansaku import TansakuError
from tansaku.features import composition, structure
from tansaku.store.database import Database
from tansaku.store.models import FeatureCache, Material

FEATURE_SETS = ("composition", "structure")


def featurizer_key(feature_set: str) -> str:
    if feature_set == "composition":
        return composition.VERSION
    if feature_set == "structure":
        return f"{composition.VERSION}+{structure.VERSION}"
    raise TansakuError(f"unknown feature set {feature_set!r} (choose from {', '.join(FEATURE_SETS)})")


def feature_names(feature_set: str) -> list[str]:
    names = composition.CompositionFeaturizer()._names()
    if feature_set == "structure":
        names += list(structure.NAMES)
    return names


def raw_features(items: list, feature_set: str) -> np.ndarray:
    """Raw descriptor rows (NaN where unknown) for compositions or structures."""
    featurizer_key(feature_set)
    comp = composition.CompositionFeaturizer()._raw(items)
    if feature_set == "composition":
        return comp
    return np.hstack([comp, structure.StructureFeaturizer()._raw(items)])


def cached_features(
    db: Database, material_ids: list[int], feature_set: str, progress: Callable | None = None, chunk: int = 500
) -> np.ndarray:
    """Descriptors of stored materials, computed once and kept in the feature_cache table."""
    key = featurizer_key(feature_set)
    width = len(feature_names(feature_set))
    found: dict[int, np.ndarray] = {}
    with db.session() as session:
        for start in range(0, len(material_ids), 20_000):
            part = material_ids[start : start + 20_000]
            for mid, blob in session.execute(select(FeatureCache.material_id, FeatureCache.values).where(
                    FeatureCache.featurizer == key, FeatureCache.material_id.in_(part))):
                found[mid] = np.frombuffer(blob, dtype="<f8")
    missing = [mid for mid in material_ids if mid not in found or len(found[mid]) != width]
    chunks = [missing[i : i + chunk] for i in range(0, len(missing), chunk)]
    for part in progress(chunks) if progress and chunks else chunks:
        with db.session() as session:
            materials = {m.id: m for m in session.scalars(select(Material).where(Material.id.in_(part)))}
            items = []
            for mid in part:
                m = materials[mid]
                if feature_set == "structure":
                    item = m.structure()
                    if item is None:
                        raise TansakuError(f"material {mid} ({m.reduced_formula}) has no structure for "
                                           "structure descriptors; use --features composition")
                else:
                    item = m.reduced_formula if m.structure_json is None else m.formula
                items.append(item)
            rows = raw_features(items, feature_set)
            session.query(FeatureCache).filter(FeatureCache.featurizer == key,
                                               FeatureCache.material_id.in_(part)).delete()
            session.add_all(FeatureCache(material_id=mid, featurizer=key, values=row.astype("<f8").tobytes())
                            for mid, row in zip(part, rows, strict=True))
            found.update(zip(part, rows, strict=True))
    return np.array([found[mid] for mid in material_ids])
