"""Suggesting the next calculations for several goals at once (`al suggest --goal ... --model ...`): one saved
model per goal's property, ranked by the probability that a candidate meets every goal.

A candidate's value already measured in the database counts as certain (probability 1 or 0 for that goal); the
others come from the model's prediction. The errors of different models are treated as independent, as in
`tansaku.active.multigoal`, and each row says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sqlalchemy import select

from tansaku import TansakuError
from tansaku.active.diversity import descriptor_coordinates, select_batch, typical_spacing
from tansaku.active.multigoal import Condition
from tansaku.active.suggest import load_candidates, queue_chosen
from tansaku.features.sets import base_columns
from tansaku.models.predictor import Predictor
from tansaku.store.database import Database
from tansaku.store.filters import measured_values, missing_property
from tansaku.store.tables import Material

log = logging.getLogger(__name__)


def models_for(model_paths: list[Path], conditions: list[Condition]) -> dict[str, Predictor]:
    """The model of each goal's property; a goal without one, or a model no goal uses, is an error."""
    predictors: dict[str, Predictor] = {}
    for path in model_paths:
        predictor = Predictor.load(path)
        if predictor.property_name in predictors:
            raise TansakuError(f"two models predict {predictor.property_name!r}: give one per property")
        predictors[predictor.property_name] = predictor
    wanted = {c.prop for c in conditions}
    for condition in conditions:
        if condition.prop not in predictors:
            raise TansakuError(f"goal {condition}: no --model predicts {condition.prop!r} (the models predict "
                               f"{', '.join(sorted(predictors)) or 'nothing'})")
    unused = sorted(set(predictors) - wanted)
    if unused:
        raise TansakuError(f"the model(s) for {', '.join(unused)} serve no --goal")
    return predictors


def _stored_candidates(db: Database, predictors: dict[str, Predictor], progress) -> tuple[dict, dict, list[str]]:
    """Stored materials missing any goal's property: {id: descriptors per property}, their measured values, and
    the refusals."""
    structures_only = any(p.needs_structure for p in predictors.values())
    with db.session() as session:
        ids = sorted(set().union(*(session.scalars(missing_property(prop, structures_only))
                                   for prop in predictors)))
        measured = {prop: dict(session.execute(measured_values(prop)).all()) for prop in predictors}
        formulas = dict(session.execute(select(Material.id, Material.reduced_formula)
                                        .where(Material.id.in_(ids))).all()) if ids else {}
    rows: dict[int, dict[str, np.ndarray]] = {i: {} for i in ids}
    refused: list[str] = []
    for prop, predictor in predictors.items():
        X, kept, why = predictor.describe_stored(db, ids, progress)
        refused += why
        for row, material_id in zip(X, kept, strict=True):
            rows[material_id][prop] = row
    complete = {i: {"candidate": i, "material_id": i, "formula": formulas[i], "X": by}
                for i, by in rows.items() if len(by) == len(predictors)}
    return complete, measured, list(dict.fromkeys(refused))


def suggest_for_goals(db: Database, model_paths: list[Path], conditions: list[Condition], candidates: list[str],
                      n: int, *, diversity: float = 1.0, queue: str | None = None, progress: Callable | None = None,
                      seed: int = 0, skipped: Callable[[str], None] = log.warning) -> list[dict]:
    """The n candidates most likely to meet every goal (a spread batch), best first, each with every property's
    value and interval (measured values as they are), each goal's probability and the joint one."""
    if n < 1:
        raise TansakuError("--n must be at least 1")
    predictors = models_for(model_paths, conditions)
    records, measured, refused = ({}, {p: {} for p in predictors}, [])
    if "db-missing" in candidates:
        records, measured, refused = _stored_candidates(db, predictors, progress)
    loose = [c for c in candidates if c != "db-missing"]
    if loose:
        per_model = {}
        for prop, predictor in predictors.items():
            found, X, why = load_candidates(db, loose, predictor, queue is not None, progress)
            refused += [r for r in why if r not in refused]
            per_model[prop] = {str(r["candidate"]): (r, x) for r, x in zip(found, X, strict=True)}
        for key in set.intersection(*(set(m) for m in per_model.values())):
            first = next(iter(per_model.values()))[key][0]
            records[key] = {**first, "X": {prop: per_model[prop][key][1] for prop in predictors}}
    for reason in refused:
        skipped(reason)
    keys = list(records)
    if not keys:
        raise TansakuError("no candidates to rank (every stored material holds every goal's property, or every "
                           "candidate was refused)")
    joint = np.ones(len(keys))
    columns: dict[str, dict] = {}
    for condition in conditions:
        predictor = predictors[condition.prop]
        X = np.vstack([records[k]["X"][condition.prop] for k in keys])
        mean, std = predictor.predict_dist(X)
        value, low, high = predictor.in_units(mean, std)
        known = np.array([measured[condition.prop].get(records[k]["material_id"], np.nan) for k in keys], float)
        p = np.where(np.isfinite(known), condition.met(known).astype(float),
                     condition.probability(mean, std, predictor.transform))
        joint *= p
        sure = np.isfinite(known)
        columns[str(condition)] = {"prop": condition.prop, "p": p, "value": np.where(sure, known, value),
                                   "low": np.where(sure, known, low), "high": np.where(sure, known, high),
                                   "measured": sure,
                                   "notes": predictor.domain_notes([records[k]["formula"] for k in keys], X)}
    rng = np.random.default_rng(seed)
    first = conditions[0].prop
    if diversity > 0 and n > 1 and len(keys) > 2:
        X0 = np.vstack([records[k]["X"][first] for k in keys])
        coords = descriptor_coordinates(base_columns(X0, predictors[first].descriptors))
        chosen = select_batch(joint, n, rng, coords, diversity * typical_spacing(coords, np.random.default_rng(0)))
    else:
        chosen = select_batch(joint, n, rng)
    rows = []
    for i in chosen:
        record = {k: v for k, v in records[keys[i]].items() if k != "X"}
        goals = {name: {"property": c["prop"], "probability": float(c["p"][i]), "value": float(c["value"][i]),
                        "value_low": float(c["low"][i]), "value_high": float(c["high"][i]),
                        "measured": bool(c["measured"][i])} for name, c in columns.items()}
        notes = sorted({note for c in columns.values() if not c["measured"][i] for note in c["notes"][i]})
        rows.append({**record, "score": float(joint[i]), "strategy": "joint", "errors": "independent",
                     "goals": goals, "in_domain": not notes, "domain": notes})
    rows.sort(key=lambda row: -row["score"])
    if queue:
        queue_chosen(db, rows, queue, skipped)
    return rows
