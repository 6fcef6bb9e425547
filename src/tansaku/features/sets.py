"""Named descriptor sets and their cache in the database (raw values, NaN kept; imputation happens in the model)."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from sqlalchemy import select

from tansaku import TansakuError
from tansaku.features import composition, ions, mlip, structure, tokens
from tansaku.store.database import Database
from tansaku.store.tables import FeatureCache, Material

FEATURE_SETS = ("composition", "structure")


class Block(NamedTuple):
    """Descriptors a model may ask for on top of a set ("structure+ions")."""

    version: str
    names: Callable[[], list[str]]
    compute: Callable  # rows from formulas, or from structures when `needs_structure`
    needs_structure: bool
    sparse: bool  # rows mostly zero: cached zlib-compressed


EXTRA_BLOCKS: dict[str, Block] = {
    "ions": Block(ions.VERSION, ions.names, ions.ion_fractions, needs_structure=False, sparse=True),
    "chgnet": Block(mlip.VERSION, mlip.names, mlip.mlip_descriptors, needs_structure=True, sparse=False),
    "tokens": Block(tokens.VERSION, tokens.names, tokens.element_tokens, needs_structure=False, sparse=False),
}


def _parts(feature_set: str) -> tuple[str, list[str]]:
    base, *extra = feature_set.split("+")
    if base not in FEATURE_SETS or any(block not in EXTRA_BLOCKS for block in extra):
        raise TansakuError(f"unknown feature set {feature_set!r} (choose from {', '.join(FEATURE_SETS)})")
    if base == "composition" and (needing := [block for block in extra if EXTRA_BLOCKS[block].needs_structure]):
        raise TansakuError(f"the {', '.join(needing)} descriptors read crystal structures: use --features structure")
    return base, extra


def base_set(feature_set: str) -> str:
    """The user's set without the extra blocks: "structure+ions" → "structure"."""
    return _parts(feature_set)[0]


def base_columns(X: np.ndarray, feature_set: str) -> np.ndarray:
    """The columns of the user's set alone: what distances between candidates should see (a model's extra
    blocks, hundreds of sparse ion fractions, would swamp them)."""
    return X[:, : len(feature_names(base_set(feature_set)))]


def strain_columns(X: np.ndarray, feature_set: str) -> np.ndarray | None:
    """Per row, CHGNet's largest force (eV/Å) and |pressure| (GPa) on the cell, when the set holds the CHGNet block:
    how far from relaxed the potential finds each structure (None without the block)."""
    names = feature_names(feature_set)
    if "mlip_max_force" not in names:
        return None
    force, pressure = names.index("mlip_max_force"), names.index("mlip_pressure")
    return np.column_stack([X[:, force], np.abs(X[:, pressure])])


def featurizer_key(feature_set: str) -> str:
    base, extra = _parts(feature_set)
    key = composition.VERSION if base == "composition" else f"{composition.VERSION}+{structure.VERSION}"
    return "+".join([key, *(EXTRA_BLOCKS[block].version for block in extra)])


def feature_names(feature_set: str) -> list[str]:
    base, extra = _parts(feature_set)
    names = composition.CompositionFeaturizer().names()
    if base == "structure":
        names += list(structure.NAMES)
    return names + [name for block in extra for name in EXTRA_BLOCKS[block].names()]


def raw_features(items: list, feature_set: str) -> np.ndarray:
    """Raw descriptor rows (NaN where unknown) for compositions or structures."""
    base, extra = _parts(feature_set)
    blocks = [composition.CompositionFeaturizer().raw(items)]
    if base == "structure":
        blocks.append(structure.StructureFeaturizer().raw(items))
    blocks += [EXTRA_BLOCKS[block].compute(items) for block in extra]
    return np.hstack(blocks)


def raw_features_each(items: list, feature_set: str) -> tuple[np.ndarray, list[int], list[tuple[int, str]]]:
    """`raw_features` for a batch where one bad item must not sink the rest: all at once, and if a descriptor
    refuses, one item at a time. Returns the rows described, their indices in `items`, and (index, reason) for
    each item refused. A feature set that cannot be built at all is still one error for the whole batch."""
    _parts(feature_set)
    try:
        return raw_features(items, feature_set), list(range(len(items))), []
    except TansakuError:
        pass
    rows, kept, refused = [], [], []
    for index, item in enumerate(items):
        try:
            rows.append(raw_features([item], feature_set))
            kept.append(index)
        except TansakuError as exc:
            refused.append((index, str(exc)))
    return (np.vstack(rows) if rows else np.empty((0, len(feature_names(feature_set))))), kept, refused


def cached_features(
    db: Database, material_ids: list[int], feature_set: str, progress: Callable | None = None, chunk: int = 500
) -> np.ndarray:
    """Descriptors of stored materials, computed once and kept in the feature_cache table (a set and its extra
    blocks separately, so "structure+ions" reuses what "structure" cached)."""
    base, extra = _parts(feature_set)
    if extra:
        blocks = [cached_features(db, material_ids, base, progress, chunk)]
        for block in extra:
            spec = EXTRA_BLOCKS[block]
            # a potential's descriptors take about half a second per structure: smaller chunks keep the bar moving
            size = min(chunk, 50) if spec.needs_structure else chunk
            blocks.append(_cached_block(db, material_ids, spec.version, len(spec.names()), spec.compute,
                                        spec.needs_structure, progress, size, compress=spec.sparse))
        return np.hstack(blocks)
    return _cached_block(db, material_ids, featurizer_key(base), len(feature_names(base)),
                         lambda items: raw_features(items, base), base == "structure", progress, chunk)


def _decode(blob: bytes, width: int) -> np.ndarray:
    """A cached row: raw little-endian float64, or zlib-compressed when that is what was stored. Anything else
    (a row of another width, a damaged blob) comes back empty, and the caller recomputes it."""
    if len(blob) != 8 * width:
        try:
            blob = zlib.decompress(blob)
        except zlib.error:
            return np.empty(0)
    return np.frombuffer(blob, dtype="<f8") if len(blob) == 8 * width else np.empty(0)


def _encode(row: np.ndarray, compress: bool) -> bytes:
    raw = row.astype("<f8").tobytes()
    return zlib.compress(raw) if compress else raw


def _cached_block(db: Database, material_ids: list[int], key: str, width: int, compute: Callable,
                  needs_structure: bool, progress: Callable | None, chunk: int, compress: bool = False) -> np.ndarray:
    """`compress`: store rows zlib-compressed, for sparse blocks (655 ion fractions, a handful non-zero, take
    about 60 bytes instead of 5 KB per material)."""
    found: dict[int, np.ndarray] = {}
    with db.session() as session:
        for start in range(0, len(material_ids), 20_000):
            part = material_ids[start : start + 20_000]
            for mid, blob in session.execute(select(FeatureCache.material_id, FeatureCache.values).where(
                    FeatureCache.featurizer == key, FeatureCache.material_id.in_(part))):
                found[mid] = _decode(blob, width)
    missing = [mid for mid in material_ids if mid not in found or len(found[mid]) != width]
    chunks = [missing[i : i + chunk] for i in range(0, len(missing), chunk)]
    for part in progress(chunks) if progress and chunks else chunks:
        with db.session() as session:
            materials = {m.id: m for m in session.scalars(select(Material).where(Material.id.in_(part)))}
            items = []
            for mid in part:
                m = materials[mid]
                if needs_structure:
                    item = m.structure()
                    if item is None:
                        raise TansakuError(f"material {mid} ({m.reduced_formula}) has no structure for "
                                           "structure descriptors; use --features composition")
                else:
                    item = m.reduced_formula if m.structure_json is None else m.formula
                items.append(item)
            rows = compute(items)
            session.query(FeatureCache).filter(FeatureCache.featurizer == key,
                                               FeatureCache.material_id.in_(part)).delete()
            session.add_all(FeatureCache(material_id=mid, featurizer=key, values=_encode(row, compress))
                            for mid, row in zip(part, rows, strict=True))
            found.update(zip(part, rows, strict=True))
    return np.array([found[mid] for mid in material_ids])
