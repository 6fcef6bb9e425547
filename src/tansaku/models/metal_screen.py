"""Is a composition likely a metal? A dielectric model trained on insulators returns an ε for a metal too, and a
charge-balanced metal (ReO3, SrVO3, AgSbO2 in PBEsol) passes every other domain check. A classifier on a table of
band gaps that has metals in it (Materials Project's PBE gaps in matbench: 106,113 entries, 43 % of them zero)
flags such a prediction; benchmarks/results/ml_metal_screen.md measures it on chemical systems it has not seen.

One composition can have several entries (polymorphs); it counts as a metal when the median of their gaps is
below METAL_GAP_EV, the rule `two_level_pool` follows for the same tables.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pymatgen.core import Composition

from tansaku import TansakuError

METAL_GAP_EV = 0.01  # a table's gap below this is a metal (matbench's PBE gaps are exactly 0 for metals)
FLAG_PROBABILITY = 0.5  # P(metal) at or above this flags a prediction
MIN_EACH_CLASS = 20


def gaps_by_formula(formulas: Sequence[str], gaps: Sequence[float]) -> dict[str, float]:
    """The median gap of each reduced formula (unreadable formulas are left out)."""
    values: dict[str, list[float]] = {}
    for formula, gap in zip(formulas, gaps, strict=True):
        try:
            values.setdefault(Composition(formula).reduced_formula, []).append(float(gap))
        except Exception:  # noqa: BLE001 - one unreadable formula is one row less
            continue
    return {f: float(np.median(v)) for f, v in values.items()}


@dataclass
class MetalScreen:
    """A composition classifier of metals, kept in a saved model's domain."""

    model: object  # a LightGBM classifier on composition descriptors
    n_compositions: int
    metal_fraction: float
    source: str  # the table it was trained on

    @classmethod
    def fit(cls, formulas: Sequence[str], gaps: Sequence[float], source: str, seed: int = 0,
            n_jobs: int = 2) -> MetalScreen:
        """Trained on (formula, gap) rows: metal where a composition's median gap is below METAL_GAP_EV."""
        import lightgbm

        from tansaku.features.sets import raw_features_each

        table = gaps_by_formula(formulas, gaps)
        names = list(table)
        X, kept, _ = raw_features_each(names, "composition")
        y = np.array([table[names[i]] < METAL_GAP_EV for i in kept])
        if min(y.sum(), (~y).sum()) < MIN_EACH_CLASS:
            raise TansakuError(f"{source}: {int(y.sum())} metals and {int((~y).sum())} non-metals among its "
                               f"compositions; a metal screen needs at least {MIN_EACH_CLASS} of each (a table "
                               "of band gaps with metals at 0 eV, e.g. matbench_mp_gap.csv.gz)")
        model = lightgbm.LGBMClassifier(n_estimators=400, learning_rate=0.05, num_leaves=63, colsample_bytree=0.5,
                                        subsample=0.8, subsample_freq=1, random_state=seed, n_jobs=n_jobs,
                                        verbose=-1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X, y)
        return cls(model, len(y), float(y.mean()), source)

    @classmethod
    def from_table(cls, path: Path, seed: int = 0) -> MetalScreen:
        """From a composition,band-gap CSV (the value column found as `tansaku import csv` finds it)."""
        from tansaku.sources.csv_table import read_table

        rows, _ = read_table(Path(path))
        return cls.fit([formula for _, formula, _ in rows], [gap for _, _, gap in rows], Path(path).name, seed)

    def probabilities(self, formulas: Sequence[str]) -> np.ndarray:
        """P(metal) of each composition; NaN where its descriptors cannot be computed."""
        from tansaku.features.sets import raw_features_each

        out = np.full(len(formulas), np.nan)
        X, kept, _ = raw_features_each(list(formulas), "composition")
        if kept:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out[kept] = self.model.predict_proba(X)[:, 1]
        return out

    def notes(self, formulas: Sequence[str]) -> list[list[str]]:
        """Per composition, the reason to distrust a dielectric prediction (empty: not likely a metal)."""
        return [[f"likely a metal (P = {p:.2f} from a classifier on the {self.n_compositions} compositions of "
                 f"{self.source}, {self.metal_fraction:.0%} metals): a metal has no static ε"]
                if p >= FLAG_PROBABILITY else [] for p in self.probabilities(formulas)]
