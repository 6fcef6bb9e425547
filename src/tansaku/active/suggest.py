"""Rank candidate materials for the next calculations with a trained model and an acquisition function."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sqlalchemy import select

from tansaku import TansakuError
from tansaku.active.acquisition import DRAW_STRATEGIES, NOT_FROM_A_SAVED_MODEL, Goal, score
from tansaku.active.batch import descriptor_coordinates, select_batch, typical_spacing
from tansaku.features.sets import base_columns, base_set, cached_features, raw_features_each
from tansaku.models.persistence import load_model
from tansaku.store.database import Database
from tansaku.store.materials import ImportReport, add_structure_material, add_to_subset
from tansaku.store.models import Material, Property

DEFAULT_STRATEGY = {"range": "range", "maximize": "ei", "minimize": "ei", "error": "uncertainty"}


def model_goal(goal: Goal, log_target: bool) -> Goal:
    """The goal in the model's units: a window on a dielectric constant becomes a window on its log10."""
    if not log_target or goal.kind != "range":
        return goal
    if goal.lo <= 0:
        raise TansakuError(f"window {goal.lo}..{goal.hi}: this property is learned as log10, so lo must be > 0")
    return Goal("range", float(np.log10(goal.lo)), float(np.log10(goal.hi)))


def _stored_missing(db: Database, property_name: str, feature_set: str) -> list[int]:
    with db.session() as session:
        have = select(Property.material_id).where(Property.name == property_name, ~Property.method.startswith("ml:"))
        query = select(Material.id).where(Material.id.not_in(have)).order_by(Material.id)
        if base_set(feature_set) == "structure":
            query = query.where(Material.structure_json.is_not(None))
        return list(session.scalars(query))


def _best_known(db: Database, property_name: str, goal: Goal, log_target: bool) -> float | None:
    with db.session() as session:
        values = np.array(session.scalars(select(Property.value).where(
            Property.name == property_name, Property.value.is_not(None), ~Property.method.startswith("ml:"))).all(),
            dtype=float)
    if log_target:
        values = np.log10(values[values > 0])
    return float(goal.desirability(values).max()) if len(values) else None


def candidate_formulas(path: Path) -> list[str]:
    """Formulas from a CSV: the 'formula' (or 'composition') column, else the first column."""
    import csv

    from tansaku.sources.csv_table import COMPOSITION_COLUMNS, open_text

    if not path.is_file():
        raise TansakuError(f"{path}: no such file")
    with open_text(path) as handle:
        rows = [row for row in csv.reader(handle) if row and any(cell.strip() for cell in row)]
    if not rows:
        raise TansakuError(f"{path}: the CSV is empty")
    header = [cell.strip().lower() for cell in rows[0]]
    column = next((header.index(c) for c in COMPOSITION_COLUMNS if c in header), None)
    if column is None:
        return [row[0].strip() for row in rows]  # no header: every row is a formula
    return [row[column].strip() for row in rows[1:] if len(row) > column]


def load_candidates(db: Database, specs: list[str], property_name: str, feature_set: str, queue: bool,
                    progress: Callable | None = None) -> tuple[list[dict], np.ndarray, list[str]]:
    """Candidate records, their descriptors, and the reasons candidates were refused (others go on)."""
    from tansaku.features.composition import to_composition
    from tansaku.sources.structures import check_ordered, read_structure

    structural = base_set(feature_set) == "structure"
    records: list[dict] = []
    blocks: list[np.ndarray] = []
    refused: list[str] = []
    for spec in specs:
        if spec == "db-missing":
            ids = _stored_missing(db, property_name, feature_set)
            if ids:
                blocks.append(cached_features(db, ids, feature_set, progress))
                with db.session() as session:
                    formulas = dict(session.execute(select(Material.id, Material.reduced_formula)
                                                    .where(Material.id.in_(ids))).all())
                records += [{"candidate": i, "material_id": i, "formula": formulas[i]} for i in ids]
            continue
        path = Path(spec)
        if path.name.endswith((".csv", ".csv.gz")):
            if structural:
                raise TansakuError(f"{spec}: the model uses structure descriptors; give structure files")
            for formula in candidate_formulas(path):
                try:
                    composition = to_composition(formula, f"{path.name}: {formula}")
                except TansakuError as exc:
                    refused.append(str(exc))
                    continue
                records.append({"candidate": formula, "material_id": None, "formula": composition.reduced_formula,
                                "item": formula})
            continue
        try:
            structure = read_structure(path)
            check_ordered(structure, spec)
        except TansakuError as exc:
            refused.append(str(exc))
            continue
        record = {"candidate": spec, "material_id": None, "formula": structure.composition.reduced_formula,
                  "item": structure if structural else structure.composition}
        if queue:
            record["to_store"] = (structure, path)  # stored once chosen: a refused one must not stay behind
        records.append(record)
    loose = [r for r in records if "item" in r]
    if loose:
        X_loose, kept, failed = raw_features_each([r["item"] for r in loose], feature_set)
        refused += [f"{loose[i]['candidate']}: {reason}" for i, reason in failed]
        loose = [loose[i] for i in kept]
        blocks.append(X_loose)
    ordered = [r for r in records if "item" not in r] + loose
    X = np.vstack(blocks) if blocks else np.empty((0, 0))
    for r in ordered:
        r.pop("item", None)
    return ordered, X, refused


def _store_chosen_files(db: Database, rows: list[dict]) -> None:
    """Store the structure files among the chosen candidates, so the queue can point at them."""
    from tansaku.sources.structures import FILE_SOURCE

    with db.session() as session:
        for row in rows:
            if (stored := row.pop("to_store", None)) is not None:
                structure, path = stored
                material, _ = add_structure_material(session, structure, FILE_SOURCE, str(path.resolve()),
                                                     ImportReport(), extra={"file": path.name})
                session.flush()
                row["material_id"] = material.id


def suggest(db: Database, model_path: Path, goal: Goal, candidates: list[str], n: int, *,
            strategy: str | None = None, diversity: float = 1.0, queue: str | None = None,
            property_name: str | None = None, progress: Callable | None = None, seed: int = 0) -> list[dict]:
    """The n best candidates, each with mean, std, value (property units) and score; optionally queued."""
    if n < 1:
        raise TansakuError("--n must be at least 1")
    model, meta = load_model(model_path)
    if property_name and property_name != meta["property"]:
        raise TansakuError(f"{model_path} predicts {meta['property']!r}, not {property_name!r}")
    prop, log_target = meta["property"], meta["log_target"]
    strategy = strategy or DEFAULT_STRATEGY[goal.kind]
    if strategy in NOT_FROM_A_SAVED_MODEL:
        raise TansakuError(f"strategy {strategy!r} cannot rank with a saved model: {NOT_FROM_A_SAVED_MODEL[strategy]}")
    mgoal = model_goal(goal, log_target)
    records, X, refused = load_candidates(db, candidates, prop, meta["descriptors"], queue is not None, progress)
    for reason in refused:
        print(f"skipped {reason}", file=sys.stderr)
    usable = np.isfinite(X).any(axis=1) if len(X) else np.zeros(0, dtype=bool)
    for r in (r for r, ok in zip(records, usable, strict=True) if not ok):
        print(f"skipped {r['candidate']}: no usable descriptor (all NaN)", file=sys.stderr)
    records = [r for r, ok in zip(records, usable, strict=True) if ok]
    X = X[usable] if len(X) else X
    if not records:
        raise TansakuError("no candidates to rank (the database holds the property for every material, "
                           "or every candidate was refused)")
    samples = model.predict_samples(X) if strategy == "range-ensemble" and hasattr(model, "predict_samples") else None
    mean, std = (samples.mean(0), samples.std(0)) if samples is not None else model.predict_dist(X)
    best = None
    if mgoal.kind != "error":
        best = _best_known(db, prop, mgoal, log_target)
        if best is None:
            best = float(mgoal.desirability(mean).max())
    rng = np.random.default_rng(seed)
    scores = score(strategy, mgoal, mean, std, best=best, samples=samples, rng=rng)
    coords = spacing = None
    if diversity > 0 and n > 1 and len(records) > 2 and strategy not in DRAW_STRATEGIES:
        coords = descriptor_coordinates(base_columns(X, meta["descriptors"]))
        spacing = typical_spacing(coords, rng)
    chosen = select_batch(scores, n, rng, coords, diversity * (spacing or 0.0))
    rows = []
    for i in chosen:
        row = {**records[i], "property": prop, "mean": float(mean[i]), "std": float(std[i]),
               "value": float(10 ** mean[i]) if log_target else float(mean[i]), "score": float(scores[i]),
               "strategy": strategy, "log10": log_target}
        rows.append(row)
    if queue:
        _store_chosen_files(db, rows)
        ids = [r["material_id"] for r in rows if r["material_id"] is not None]
        missing = [r["candidate"] for r in rows if r["material_id"] is None]
        if missing:
            print(f"not queued (formulas have no structure to compute): {', '.join(map(str, missing))}",
                  file=sys.stderr)
        with db.session() as session:
            add_to_subset(session, queue, ids)
    return rows
