"""Rank candidate materials for the next calculations with a trained model and an acquisition function."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sqlalchemy import select

from tansaku import TansakuError
from tansaku.active.acquisition import Goal, strategy_named
from tansaku.active.diversity import descriptor_coordinates
from tansaku.active.ranking import predict_for, rank
from tansaku.features.sets import base_columns
from tansaku.models.predictor import Predictor
from tansaku.sources.csv_table import formulas_in
from tansaku.store.database import Database
from tansaku.store.filters import measured_values, missing_property
from tansaku.store.materials import ImportReport, add_structure_material, add_to_subset
from tansaku.store.tables import Material

DEFAULT_STRATEGY = {"range": "range", "maximize": "ei", "minimize": "ei", "error": "uncertainty"}
log = logging.getLogger(__name__)


def _best_known(db: Database, predictor: Predictor, goal: Goal) -> float | None:
    """The best desirability among the measured values, in model units (EI and PI improve on it)."""
    with db.session() as session:
        values = np.array([v for _, v in session.execute(measured_values(predictor.property_name))], dtype=float)
    values = predictor.to_model_units(values)
    return float(goal.desirability(values).max()) if len(values) else None


def load_candidates(db: Database, specs: list[str], predictor: Predictor, queue: bool,
                    progress: Callable | None = None) -> tuple[list[dict], np.ndarray, list[str]]:
    """Candidate records, their descriptors, and the reasons candidates were refused (others go on): the
    predictor's one rule decides, for stored materials, formulas and structure files alike."""
    from tansaku.chemistry.structures import check_ordered, structure_inputs

    records: list[dict] = []
    blocks: list[np.ndarray] = []
    refused: list[str] = []
    loose_items, loose_records = [], []
    for spec in specs:
        if spec == "db-missing":
            with db.session() as session:
                ids = list(session.scalars(missing_property(predictor.property_name, predictor.needs_structure)))
                formulas = dict(session.execute(select(Material.id, Material.reduced_formula)
                                                .where(Material.id.in_(ids))).all()) if ids else {}
            X, kept, why = predictor.describe_stored(db, ids, progress)
            refused += why
            if kept:
                blocks.append(X)
                records += [{"candidate": i, "material_id": i, "formula": formulas[i]} for i in kept]
            continue
        path = Path(spec)
        if path.name.endswith((".csv", ".csv.gz")):
            if predictor.needs_structure:
                raise TansakuError(f"{spec}: the model uses structure descriptors; give structure files")
            for formula in formulas_in(path):
                loose_items.append(formula)
                loose_records.append({"candidate": formula, "material_id": None, "formula": _reduced(formula),
                                      "label": f"{path.name}: {formula}"})
            continue
        for item in structure_inputs([path]):
            try:
                structure = item.read()
                check_ordered(structure, item.label)
            except TansakuError as exc:
                refused.append(str(exc))
                continue
            record = {"candidate": item.label, "material_id": None,
                      "formula": structure.composition.reduced_formula, "label": item.label}
            if queue:
                record["to_store"] = (structure, item)  # stored once chosen: a refused one must not stay behind
            loose_items.append(structure)
            loose_records.append(record)
    if loose_items:
        X, kept, why = predictor.describe(loose_items, [r.pop("label") for r in loose_records])
        refused += why
        if kept:
            blocks.append(X)
            records += [loose_records[i] for i in kept]
    X = np.vstack(blocks) if blocks else np.empty((0, 0))
    return records, X, refused


def _reduced(formula: str) -> str:
    """The reduced formula, or the text as given when it does not parse (the predictor then refuses it)."""
    from pymatgen.core import Composition

    try:
        return Composition(formula).reduced_formula
    except Exception:  # noqa: BLE001
        return formula


def _store_chosen_files(db: Database, rows: list[dict]) -> None:
    """Store the structure files among the chosen candidates, so the queue can point at them."""
    from tansaku.sources.structures import FILE_SOURCE

    with db.session() as session:
        for row in rows:
            if (stored := row.pop("to_store", None)) is not None:
                structure, item = stored
                material, _ = add_structure_material(session, structure, FILE_SOURCE, item.source_id,
                                                     ImportReport(), extra=item.origin)
                session.flush()
                row["material_id"] = material.id


def suggest(db: Database, model_path: Path, goal: Goal, candidates: list[str], n: int, *,
            strategy: str | None = None, diversity: float = 1.0, queue: str | None = None,
            property_name: str | None = None, progress: Callable | None = None, seed: int = 0,
            skipped: Callable[[str], None] = log.warning) -> list[dict]:
    """The n best candidates, best score first, each with mean and std (model units), value with its interval
    (property units) and score; optionally queued. Each refused candidate is passed to `skipped` with its
    reason (the command prints it; the library logs it) and the others go on."""
    if n < 1:
        raise TansakuError("--n must be at least 1")
    predictor = Predictor.load(model_path)
    if property_name and property_name != predictor.property_name:
        raise TansakuError(f"{model_path} predicts {predictor.property_name!r}, not {property_name!r}")
    chosen_strategy = strategy_named(strategy or DEFAULT_STRATEGY[goal.kind])
    if chosen_strategy.saved_model:
        raise TansakuError(f"strategy {chosen_strategy.name!r} cannot rank with a saved model: "
                           f"{chosen_strategy.saved_model}")
    mgoal = predictor.goal(goal)
    chosen_strategy.check(mgoal)
    records, X, refused = load_candidates(db, candidates, predictor, queue is not None, progress)
    usable = np.isfinite(X).any(axis=1) if len(X) else np.zeros(0, dtype=bool)
    refused += [f"{r['candidate']}: no usable descriptor (all NaN)" for r, ok in zip(records, usable, strict=True)
                if not ok]
    for reason in refused:
        skipped(reason)
    records = [r for r, ok in zip(records, usable, strict=True) if ok]
    X = X[usable] if len(X) else X
    if not records:
        raise TansakuError("no candidates to rank (the database holds the property for every material, "
                           "or every candidate was refused)")
    prediction = predict_for(chosen_strategy, mgoal, predictor, X)
    best = None
    if mgoal.kind != "error":
        best = _best_known(db, predictor, mgoal)
        if best is None:
            best = float(mgoal.desirability(prediction.mean).max())
    rng = np.random.default_rng(seed)
    coords = None
    if diversity > 0 and n > 1 and len(records) > 2 and not chosen_strategy.is_draw:
        coords = descriptor_coordinates(base_columns(X, predictor.descriptors))
    ranked = rank(chosen_strategy, mgoal, prediction, n, rng, best=best, coords=coords, diversity=diversity)
    value, low, high = predictor.in_units(prediction.mean, prediction.std)
    domain = dict(zip(ranked.chosen.tolist(), predictor.domain_notes(
        [records[i]["formula"] for i in ranked.chosen], X[ranked.chosen]), strict=True))
    rows = [{**records[i], "in_domain": not domain[i], "domain": domain[i],
             "property": predictor.property_name, "mean": float(prediction.mean[i]),
             "std": float(prediction.std[i]), "value": float(value[i]), "value_low": float(low[i]),
             "value_high": float(high[i]), "score": float(ranked.scores[i]), "strategy": chosen_strategy.name,
             "log10": predictor.transform == "log10", "transform": predictor.transform}
            for i in ranked.chosen]
    rows.sort(key=lambda row: -row["score"])  # the batch was chosen together; shown best score first
    if queue:
        queue_chosen(db, rows, queue, skipped)
    return rows


def queue_chosen(db: Database, rows: list[dict], queue: str, skipped: Callable[[str], None]) -> None:
    """Put the chosen candidates in the subset `queue` (structure files stored first); formulas cannot be."""
    _store_chosen_files(db, rows)
    ids = [r["material_id"] for r in rows if r["material_id"] is not None]
    missing = [r["candidate"] for r in rows if r["material_id"] is None]
    if missing:
        skipped(f"not queued (formulas have no structure to compute): {', '.join(map(str, missing))}")
    with db.session() as session:
        add_to_subset(session, queue, ids)
