"""Is a composition likely a metal? A dielectric model trained on insulators returns an ε for a metal too, and a
charge-balanced metal (ReO3, SrVO3, AgSbO2 in PBEsol) passes every other domain check. A classifier on a table of
band gaps that has metals in it (Materials Project's PBE gaps in matbench: 106,113 entries, 43 % of them zero)
flags such a prediction; benchmarks/results/ml_metal_screen.md measures it on chemical systems it has not seen.

One composition can have several entries (polymorphs); it counts as a metal when the median of their gaps is
below METAL_GAP_EV (`median_by_formula`, as `two_level_pool` reads the same tables).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tansaku import TansakuError

METAL_GAP_EV = 0.01  # a table's gap below this is a metal (matbench's PBE gaps are exactly 0 for metals)
FLAG_PROBABILITY = 0.5  # P(metal) at or above this flags a prediction
MIN_EACH_CLASS = 20
_LOADED: dict[tuple, MetalScreen] = {}  # `MetalScreen.cached` per table file (path, mtime, size) and seed


@dataclass
class MetalScreen:
    """A composition classifier of metals, kept in a saved model's domain."""

    model: object  # a LightGBM classifier on composition descriptors
    n_compositions: int
    metal_fraction: float
    source: str  # the table it was trained on

    @classmethod
    def fit(cls, table: dict[str, float], source: str, seed: int = 0, n_jobs: int | None = None) -> MetalScreen:
        """Trained on reduced formula → gap: a metal where the gap is below METAL_GAP_EV. n_jobs None: OpenMP's
        threads (every core unless OMP_NUM_THREADS says fewer)."""
        import lightgbm

        from tansaku.features.sets import raw_features_each

        names = list(table)
        X, kept, refused = raw_features_each(names, "composition")
        y = np.array([table[names[i]] < METAL_GAP_EV for i in kept], dtype=bool)
        if min(y.sum(), (~y).sum()) < MIN_EACH_CLASS:
            left_out = (f"; {len(refused)} of its {len(names)} compositions have no descriptors "
                        f"({names[refused[0][0]]}: {refused[0][1]})" if refused else "")
            raise TansakuError(f"{source}: {int(y.sum())} metals and {int((~y).sum())} non-metals among its "
                               f"compositions{left_out}; a metal screen needs at least {MIN_EACH_CLASS} of each "
                               "(a table of band gaps with metals at 0 eV, e.g. matbench_mp_gap.csv.gz)")
        model = lightgbm.LGBMClassifier(n_estimators=400, learning_rate=0.05, num_leaves=63, colsample_bytree=0.5,
                                        subsample=0.8, subsample_freq=1, random_state=seed, n_jobs=n_jobs,
                                        deterministic=True, force_col_wise=True, verbose=-1)  # same run, same screen
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X, y)
        return cls(model, len(y), float(y.mean()), source)

    @classmethod
    def from_table(cls, path: Path, seed: int = 0) -> MetalScreen:
        """From a composition,band-gap CSV (the value column found as `tansaku import csv` finds it)."""
        from tansaku.sources.csv_table import medians, read_parsed_table

        rows, _, parsed = read_parsed_table(Path(path))
        try:
            return cls.fit(medians(rows, parsed), Path(path).name, seed)
        except TansakuError as exc:  # too few of a class: say which formulas could not be read, if any
            unreadable = [(formula, str(why)) for formula, why in parsed.items() if isinstance(why, TansakuError)]
            if not unreadable:
                raise
            formula, why = unreadable[0]
            raise TansakuError(f"{exc}; {len(unreadable)} of its formulas are unreadable ({formula}: {why})") from exc

    @classmethod
    def cached(cls, path: Path, seed: int = 0) -> MetalScreen:
        """`from_table`, kept on disk per table content (a campaign asks for it every round, and training on
        matbench's 106,113 gaps takes minutes)."""
        import pickle

        from tansaku.download import cache_dir, sha256_of
        from tansaku.features.sets import featurizer_key
        from tansaku.files import write_atomically

        stat = Path(path).stat()
        seen = (str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size, seed)
        if seen in _LOADED:  # the same file in this process: no hash, no unpickling, round after round
            return _LOADED[seen]
        target = (cache_dir() / "metal_screens"
                  / f"{sha256_of(Path(path))[:16]}-{seed}-{featurizer_key('composition')}.pkl")
        if target.is_file():
            with open(target, "rb") as handle:
                screen = pickle.load(handle)
        else:
            screen = cls.from_table(path, seed)
            write_atomically(target, lambda handle: pickle.dump(screen, handle))
        _LOADED[seen] = screen
        return screen

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
