"""Is a prediction inside what the model has seen? Elements, anion types, charge balance, descriptor distance,
and (for models that read CHGNet) how far from relaxed the cell is.

A model trained on oxides still returns a number for NaCl, a metal or a formula no ionic solid has; that number is
given, but flagged, with every reason: an element or anion never seen in training, no charge-balanced oxidation
states (the ionic descriptors are then guesses), descriptors farther from every training material than almost
all training materials are from their nearest neighbour, or a cell on which CHGNet finds larger forces or
pressure than on almost every (relaxed) training cell: its descriptors are read off the forces, and an unrelaxed
cell's are those of another structure (benchmarks/results/ml_chgnet_unseen.md). With a metal screen
(`models.metal_screen`, `train --metal-screen`), a composition likely to be a metal is flagged too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Composition
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tansaku.chemistry.oxidation import anion_elements, charge_balance_problem
from tansaku.models.metal_screen import MetalScreen

REFERENCE = 5000  # training materials kept for distances (a sample when there are more)
QUANTILE = 0.99  # farther than this quantile of the training set's nearest-neighbour distances: outside
STRAIN_MARGIN = 1.5  # CHGNet force or pressure beyond this × the training cells' 99th percentile: unrelaxed


@dataclass
class Domain:
    """What a model was trained on, kept in the saved model (`meta["domain"]`)."""

    elements: frozenset[str]
    anions: frozenset[str]
    projection: object  # imputer → scaler → PCA, fitted on the training descriptors
    reference: np.ndarray  # projected training materials (a sample of at most REFERENCE)
    threshold: float  # nearest-neighbour distance beyond which a material is outside
    strain_limits: tuple[float, float] | None = None  # CHGNet max force, |pressure| beyond which a cell is unrelaxed
    metal_screen: MetalScreen | None = None  # `train --metal-screen`: flags compositions likely to be metals

    @classmethod
    def fit(cls, formulas: Sequence[str], X: np.ndarray, seed: int = 0, strain: np.ndarray | None = None) -> Domain:
        """From the training formulas, the descriptors of the user's set (no extra blocks) and, for models that
        read CHGNet, its force and pressure on the training cells (`features.sets.strain_columns`)."""
        compositions = [Composition(f) for f in formulas]
        elements = frozenset(el.symbol for c in compositions for el in c.elements)
        anions = frozenset(a for c in compositions for a in anion_elements(c))
        n_components = max(1, min(16, X.shape[1], len(X) - 1))
        projection = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(),
                                   PCA(n_components=n_components, random_state=seed))
        coords = projection.fit_transform(X)
        rng = np.random.default_rng(seed)
        if len(coords) > REFERENCE:
            coords = coords[rng.choice(len(coords), REFERENCE, replace=False)]
        if len(coords) >= 3:
            distances, _ = NearestNeighbors(n_neighbors=2).fit(coords).kneighbors(coords)
            threshold = float(np.quantile(distances[:, 1], QUANTILE))
        else:
            threshold = float("inf")
        limits = None
        finite = strain[np.isfinite(strain).all(axis=1)] if strain is not None else np.empty((0, 2))
        if len(finite):
            limits = tuple(float(STRAIN_MARGIN * np.quantile(finite[:, j], QUANTILE)) for j in range(2))
        return cls(elements, anions, projection, coords.astype(np.float32), threshold, limits)

    def distances(self, X: np.ndarray) -> np.ndarray:
        """Distance of each row to its nearest training material, in units of the threshold (> 1: outside)."""
        if not len(X):
            return np.empty(0)
        coords = self.projection.transform(X)
        nearest, _ = NearestNeighbors(n_neighbors=1).fit(self.reference).kneighbors(coords)
        return nearest[:, 0] / max(self.threshold, 1e-12)

    def check(self, formulas: Sequence[str], X: np.ndarray, strain: np.ndarray | None = None) -> list[list[str]]:
        """Per input, the reasons it lies outside the training domain (empty: inside)."""
        far = self.distances(X)
        metals = self.metal_screen.notes(formulas) if self.metal_screen is not None else [[] for _ in formulas]
        notes = []
        for i, formula in enumerate(formulas):
            notes.append(self._chemistry(formula) + metals[i] + (
                [f"descriptors {far[i]:.1f}x farther from the training data than the usual nearest-neighbour "
                 "distance"] if far[i] > 1 else []) + (self.unrelaxed(strain[i]) if strain is not None else []))
        return notes

    def unrelaxed(self, strain: np.ndarray) -> list[str]:
        """Why a cell counts as unrelaxed, from CHGNet's (max force, |pressure|) on it (empty: it does not, or the
        model does not read CHGNet)."""
        if self.strain_limits is None:
            return []
        (force, pressure), (max_force, max_pressure) = strain, self.strain_limits
        if not (force > max_force or pressure > max_pressure):
            return []
        return [f"CHGNet finds the cell unrelaxed (max force {force:.2f} eV/Å, |pressure| {pressure:.1f} GPa; "
                f"training cells up to {max_force:.2f} and {max_pressure:.1f}): its descriptors describe another "
                "structure; relax it first (tansaku generate substitute --relax)"]

    def _chemistry(self, formula: str) -> list[str]:
        composition = Composition(formula)
        reasons = []
        unseen = sorted(el.symbol for el in composition.elements if el.symbol not in self.elements)
        if unseen:
            reasons.append(f"element(s) never seen in training: {', '.join(unseen)}")
        new_anions = sorted(anion_elements(composition) - self.anions)
        if new_anions:
            reasons.append(f"anion(s) outside the training set: {', '.join(new_anions)}")
        if (problem := charge_balance_problem(composition.reduced_formula)) is not None:
            reasons.append(problem)
        return reasons


def chemistry_notes(formulas: Sequence[str]) -> list[list[str]]:
    """What can be said without a model's domain (models saved before domains were recorded): charge balance."""
    return [[problem] if (problem := charge_balance_problem(Composition(f).reduced_formula)) else []
            for f in formulas]
