"""One trained model with everything needed to use it: estimator, descriptors, target transform, refusals.

Every path that predicts (the `predict` command, suggestions, campaigns, plots, the demo) goes through a
`Predictor`, so inputs are checked by one rule and values come back in the property's own units with intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from pymatgen.core import Composition, Structure
from sqlalchemy import select

from tansaku import TansakuError
from tansaku.features.composition import to_composition
from tansaku.features.sets import base_columns, base_set, cached_features, raw_features_each, strain_columns
from tansaku.models import transform as transforms
from tansaku.models.domain import chemistry_notes
from tansaku.models.members import sample_members
from tansaku.models.persistence import load_model
from tansaku.store.database import Database
from tansaku.store.materials import set_property
from tansaku.store.tables import Material


@dataclass
class Predictions:
    """Predictions of the inputs that were kept, in model units (mean, std) and property units (value, low,
    high: mean ∓ std mapped back), and one reason per refused input."""

    labels: list
    mean: np.ndarray
    std: np.ndarray
    value: np.ndarray
    low: np.ndarray
    high: np.ndarray
    refused: list[str] = field(default_factory=list)
    domain: list[list[str]] = field(default_factory=list)  # per prediction: why it lies outside (empty: inside)

    def rows(self, predictor: Predictor) -> list[dict]:
        """JSON-ready rows, the fields `tansaku predict --json` has always written."""
        log = predictor.transform == "log10"
        rows = []
        for i, label in enumerate(self.labels):
            row = {"input": label, "property": predictor.property_name, "mean": float(self.mean[i]),
                   "std": float(self.std[i]), "in_domain": not self.domain[i], "domain": self.domain[i]}
            if log:
                row.update(log10=True, value=float(self.value[i]), value_low=float(self.low[i]),
                           value_high=float(self.high[i]))
            rows.append(row)
        return rows


class Predictor:
    """A saved model and its metadata. `Predictor.load(path)`; then `predict`, `predict_stored` or `goal`."""

    def __init__(self, model, meta: dict, source: str = "model"):
        self.model, self.meta, self.source = model, meta, source
        self.transform = transforms.of_meta(meta)

    @classmethod
    def load(cls, path: Path) -> Predictor:
        model, meta = load_model(path)
        return cls(model, meta, str(path))

    @property
    def id(self) -> str:
        return self.meta["id"]

    @property
    def property_name(self) -> str:
        return self.meta["property"]

    @property
    def descriptors(self) -> str:
        return self.meta["descriptors"]

    @property
    def needs_structure(self) -> bool:
        return base_set(self.meta["feature_set"]) == "structure"

    @property
    def method(self) -> str:
        """The method stored predictions carry."""
        return f"ml:{self.id}"

    # units --------------------------------------------------------------------------------------------------
    def to_model_units(self, values) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        return transforms.forward(self.transform, values[transforms.usable(self.transform, values)])

    def goal(self, goal):
        """A search goal (`active.acquisition.Goal`) in model units: a window on a dielectric constant becomes a
        window on its log10."""
        if self.transform != "log10" or goal.kind != "range":
            return goal
        if goal.lo <= 0:
            raise TansakuError(f"window {goal.lo}..{goal.hi}: {self.property_name} is learned as log10, so lo must "
                               "be > 0")
        return replace(goal, lo=float(np.log10(goal.lo)), hi=float(np.log10(goal.hi)))

    def in_units(self, mean, std) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return transforms.inverse(self.transform, mean, std)

    # descriptors --------------------------------------------------------------------------------------------
    def refusal(self, item: str | Composition | Structure, label: str) -> str | None:
        """Why this model must not predict an input ("label: reason"), or None: the one rule of every path that
        predicts or ranks."""
        if isinstance(item, str) and self.needs_structure:
            return f"{label}: {self.source} uses structure descriptors; give a structure file, not a formula"
        return _chemistry_refusal(item, label)

    def describe(self, items: Sequence, labels: Sequence) -> tuple[np.ndarray, list[int], list[str]]:
        """Descriptor rows of the inputs the model may predict: (rows, their positions in `items`, one reason
        per refused input)."""
        refused, kept_items, positions = [], [], []
        for position, (item, label) in enumerate(zip(items, labels, strict=True)):
            reason = self.refusal(item, label)
            if reason:
                refused.append(reason)
            else:
                kept_items.append(item if self.needs_structure or isinstance(item, str) else _composition(item))
                positions.append(position)
        if not kept_items:
            return np.empty((0, 0)), [], refused
        X, kept, failed = raw_features_each(kept_items, self.descriptors)
        refused += [f"{labels[positions[i]]}: {reason}" for i, reason in failed]
        return X, [positions[i] for i in kept], refused

    def describe_stored(self, db: Database, ids: list[int], progress: Callable | None = None
                        ) -> tuple[np.ndarray, list[int], list[str]]:
        """The same for stored materials (descriptors from the cache): one bad material refuses only itself."""
        return self._describe_stored(db, ids, progress)[:3]

    def _describe_stored(self, db, ids, progress) -> tuple[np.ndarray, list[int], list[str], dict[int, str]]:
        with db.session() as session:
            formulas = dict(session.execute(select(Material.id, Material.reduced_formula)
                                            .where(Material.id.in_(ids))).all()) if ids else {}
        refused, kept = [], []
        for material_id in ids:
            reason = _chemistry_refusal(formulas[material_id], f"material {material_id} ({formulas[material_id]})")
            if reason:
                refused.append(reason)
            else:
                kept.append(material_id)
        if not kept:
            return np.empty((0, 0)), [], refused, formulas
        try:
            return cached_features(db, kept, self.descriptors, progress), kept, refused, formulas
        except TansakuError:
            pass  # one material the descriptors refuse: describe them one at a time
        rows, good = [], []
        for material_id in kept:
            try:
                rows.append(cached_features(db, [material_id], self.descriptors))
                good.append(material_id)
            except TansakuError as exc:
                refused.append(f"material {material_id} ({formulas[material_id]}): {exc}")
        return (np.vstack(rows) if rows else np.empty((0, 0))), good, refused, formulas

    # predictions --------------------------------------------------------------------------------------------
    def predict_dist(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread in model units."""
        return self.model.predict_dist(X)

    def predict_samples(self, X: np.ndarray) -> np.ndarray:
        return sample_members(self.model, X)

    def domain_notes(self, formulas: Sequence[str], X: np.ndarray) -> list[list[str]]:
        """Per row, why it lies outside the training domain (models saved before domains were recorded: charge
        balance only)."""
        domain = self.meta.get("domain")
        if domain is None:
            return chemistry_notes(formulas)
        return domain.check(formulas, base_columns(X, self.descriptors), strain_columns(X, self.descriptors))

    def _predictions(self, X, labels, formulas, refused) -> Predictions:
        if not labels:
            empty = np.empty(0)
            return Predictions([], empty, empty, empty, empty, empty, refused)
        mean, std = self.predict_dist(X)
        return Predictions(list(labels), mean, std, *self.in_units(mean, std), refused,
                           self.domain_notes(formulas, X))

    def predict(self, items: Sequence, labels: Sequence | None = None) -> Predictions:
        """Formulas, Compositions or Structures (a structure model needs Structures)."""
        labels = list(labels) if labels is not None else [str(i) for i in items]
        X, kept, refused = self.describe(items, labels)
        return self._predictions(X, [labels[i] for i in kept], [_formula(items[i]) for i in kept], refused)

    def predict_stored(self, db: Database, ids: list[int], progress: Callable | None = None) -> Predictions:
        """Stored materials by id; labels are the ids."""
        X, kept, refused, formulas = self._describe_stored(db, ids, progress)
        return self._predictions(X, kept, [formulas[i] for i in kept], refused)

    def store(self, db: Database, predictions: Predictions) -> None:
        """Keep predictions of stored materials (labels are ids) as method ml:<model id>, in one transaction."""
        with db.session() as session:
            for i, material_id in enumerate(predictions.labels):
                material = session.get(Material, int(material_id))
                set_property(session, material, self.property_name, float(predictions.value[i]), self.method,
                             extra={"mean": float(predictions.mean[i]), "std": float(predictions.std[i]),
                                    "log10": self.transform == "log10", "transform": self.transform,
                                    "in_domain": not predictions.domain[i], "domain": predictions.domain[i]})


def _chemistry_refusal(item, label: str) -> str | None:
    """Only what cannot be described at all is refused (unreadable, unknown element, noble gases alone); what is
    merely unusual is predicted and flagged by the domain check."""
    try:
        to_composition(item, label)
    except TansakuError as exc:
        return str(exc)
    return None


def read_inputs(formulas: Sequence[str], paths: Sequence[Path]) -> tuple[list, list, list[str]]:
    """(items, labels, refusals) from formulas and structure files: each read on its own, so one unreadable or
    disordered file refuses only itself."""
    from tansaku.chemistry.structures import check_ordered, structure_inputs

    items, labels, refused = list(formulas), list(formulas), []
    for item in structure_inputs(paths):
        try:
            structure = item.read()
            check_ordered(structure, item.label, "predictions need an ordered cell")
        except TansakuError as exc:
            refused.append(str(exc) if str(exc).startswith(item.label) else f"{item.label}: {exc}")
            continue
        items.append(structure)
        labels.append(item.label)
    return items, labels, refused


def _formula(item) -> str:
    if isinstance(item, Structure):
        return item.composition.reduced_formula
    if isinstance(item, Composition):
        return item.reduced_formula
    return Composition(str(item)).reduced_formula


def _composition(item):
    return item.composition if isinstance(item, Structure) else item
