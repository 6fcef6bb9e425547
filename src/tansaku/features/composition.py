"""Composition descriptors: weighted statistics of element properties, stoichiometry, ionic character and
oxidation states; a scikit-learn transformer computed on sparse element-fraction arrays (no per-element loops).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from pymatgen.core import Composition, Structure

from tansaku import TansakuError
from tansaku.chemistry.oxidation import anion_elements, d_electrons, guess_oxidation_states
from tansaku.features.base import MedianFilledFeaturizer
from tansaku.features.elements import PROPERTIES, element_table, symbol_to_z

VERSION = "composition-3"
STATS = ("mean", "avg_dev", "std_dev", "minimum", "maximum", "range", "mode")
MASS_WEIGHTED = ("X", "row", "atomic_radius", "average_ionic_radius", "dipole_polarizability", "mendeleev_no")
NORMS = (2, 3, 5, 7, 10)
NOBLE_GASES = frozenset({"He", "Ne", "Ar", "Kr", "Xe", "Rn"})


def to_composition(item, where: str = "") -> Composition:
    """A Composition from a formula, Composition or Structure; unknown elements and noble-gas-only refused."""
    if isinstance(item, Structure):
        composition = item.composition
    elif isinstance(item, Composition):
        composition = item
    else:
        try:
            composition = Composition(str(item))
        except Exception as exc:  # noqa: BLE001
            raise TansakuError(f"{where or item!r}: not a valid composition ({exc})") from exc
    known = symbol_to_z()
    symbols = composition.get_el_amt_dict()
    for symbol in symbols:
        if symbol not in known:
            raise TansakuError(f"{where or composition.formula}: unknown element {symbol!r}")
    if set(symbols) <= NOBLE_GASES:
        raise TansakuError(f"{where or composition.formula}: only noble gases, no compound to describe")
    return composition


class SparseFractions:
    """Compositions as CSR-like arrays: element numbers and atomic fractions, rows delimited by indptr."""

    def __init__(self, compositions: list[Composition]):
        z_of = symbol_to_z()
        counts, zs, fractions = [], [], []
        for comp in compositions:
            amounts = comp.get_el_amt_dict()
            total = sum(amounts.values())
            counts.append(len(amounts))
            for symbol, amount in amounts.items():
                zs.append(z_of[symbol])
                fractions.append(amount / total)
        self.counts = np.array(counts)
        self.indptr = np.concatenate([[0], np.cumsum(self.counts)])
        self.z = np.array(zs, dtype=int)
        self.w = np.array(fractions)

    def rows(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.counts)), self.counts)

    def reduce(self, values: np.ndarray, op=np.add) -> np.ndarray:
        return op.reduceat(values, self.indptr[:-1])


def weighted_stats(frac: SparseFractions, values: np.ndarray, weights: np.ndarray | None = None) -> dict:
    """matminer's PropertyStats definitions over each composition's elements, weighted by atomic fraction."""
    w = frac.w if weights is None else weights
    rows = frac.rows()
    has_nan = frac.reduce(np.isnan(values).astype(float)) > 0
    v = np.nan_to_num(values)
    mean = frac.reduce(w * v)
    dev = v - mean[rows]
    avg_dev = frac.reduce(w * np.abs(dev))
    sum_w2 = frac.reduce(w**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = 1.0 / (1.0 - sum_w2)
        std = np.sqrt(beta * frac.reduce(w * dev**2))
    std[frac.counts == 1] = 0.0
    minimum = frac.reduce(v, np.minimum)
    maximum = frac.reduce(v, np.maximum)
    top = frac.reduce(w, np.maximum)[rows]
    mode = frac.reduce(np.where(np.isclose(w, top), v, np.inf), np.minimum)
    out = {"mean": mean, "avg_dev": avg_dev, "std_dev": std, "minimum": minimum, "maximum": maximum,
           "range": maximum - minimum, "mode": mode}
    for value in out.values():
        value[has_nan] = np.nan
    return out


class CompositionFeaturizer(MedianFilledFeaturizer):
    """Descriptors of a composition (formula string, Composition or Structure).

    oxidation: add charge-balanced oxidation-state statistics (a guess per distinct formula, cached).
    NaN (an element without a tabulated value) is replaced by the training median at transform time.
    """

    def __init__(self, oxidation: bool = True):
        self.oxidation = oxidation

    def names(self) -> list[str]:
        names = [f"{stat}_{prop}" for prop in PROPERTIES for stat in STATS]
        names += [f"massweighted_mean_{prop}" for prop in MASS_WEIGHTED]
        names += ["n_elements"] + [f"stoich_norm_{p}" for p in NORMS]
        names += ["cation_fraction", "transition_metal_fraction", "mean_X_cation", "mean_X_anion", "delta_X",
                  "ionic_character_mean", "ionic_character_max", "mean_polarizability_cation",
                  "mean_polarizability_anion", "radius_ratio_cation_anion"]
        if self.oxidation:
            names += ["oxidation_balanced", "oxidation_max", "oxidation_min", "oxidation_range", "oxidation_std",
                      "oxidation_mean_cation", "d0_cation_fraction", "lone_pair_cation_fraction",
                      "d10_cation_fraction"]
        return names

    def raw(self, X: Iterable) -> np.ndarray:
        compositions = [to_composition(item) for item in X]
        if not compositions:
            raise TansakuError("no compositions to featurize")
        frac = SparseFractions(compositions)
        table = element_table()[frac.z]
        columns = []
        for j in range(len(PROPERTIES)):
            stats = weighted_stats(frac, table[:, j])
            columns.extend(stats[s] for s in STATS)
        mass = table[:, PROPERTIES.index("atomic_mass")]
        mass_w = frac.w * mass
        mass_w = mass_w / frac.reduce(mass_w)[frac.rows()]
        for prop in MASS_WEIGHTED:
            columns.append(weighted_stats(frac, table[:, PROPERTIES.index(prop)], mass_w)["mean"])
        columns.append(frac.counts.astype(float))
        columns.extend(frac.reduce(frac.w**p) ** (1.0 / p) for p in NORMS)
        columns.extend(self._ionic(compositions, frac, table))
        if self.oxidation:
            columns.extend(self._oxidation(compositions, frac, table))
        raw = np.column_stack(columns)
        raw[~np.isfinite(raw)] = np.nan  # e.g. a cation/anion radius ratio over a zero-radius hydride anion
        return raw

    @staticmethod
    def _ionic(compositions, frac: SparseFractions, table: np.ndarray) -> list[np.ndarray]:
        anion_flags = []
        for comp in compositions:
            anions = anion_elements(comp)
            anion_flags.extend(symbol in anions for symbol in comp.get_el_amt_dict())
        is_anion = np.array(anion_flags, dtype=bool)
        w = frac.w
        x = np.nan_to_num(table[:, PROPERTIES.index("X")], nan=2.0)
        pol = np.nan_to_num(table[:, PROPERTIES.index("dipole_polarizability")], nan=50.0)
        rad = np.nan_to_num(table[:, PROPERTIES.index("average_ionic_radius")], nan=1.0)
        tm = np.nan_to_num(table[:, PROPERTIES.index("is_transition_metal")])
        wc, wa = np.where(is_anion, 0.0, w), np.where(is_anion, w, 0.0)
        sc, sa = frac.reduce(wc), frac.reduce(wa)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_c, x_a = frac.reduce(wc * x) / sc, frac.reduce(wa * x) / sa
            pol_c, pol_a = frac.reduce(wc * pol) / sc, frac.reduce(wa * pol) / sa
            ratio = (frac.reduce(wc * rad) / sc) / (frac.reduce(wa * rad) / sa)
        # ionic character of each cation–anion pair, 1 − exp(−ΔX²/4), weighted by the cation's fraction
        rows = frac.rows()
        character = 1 - np.exp(-((x - x_a[rows]) ** 2) / 4)
        with np.errstate(divide="ignore", invalid="ignore"):
            ic_mean = frac.reduce(wc * character) / sc
        ic_max = frac.reduce(np.where(is_anion, -np.inf, character), np.maximum)
        ic_max[~np.isfinite(ic_max)] = np.nan
        return [sc, frac.reduce(w * tm), x_c, x_a, x_a - x_c, ic_mean, ic_max, pol_c, pol_a, ratio]

    @staticmethod
    def _oxidation(compositions, frac: SparseFractions, table: np.ndarray) -> list[np.ndarray]:
        """Statistics of guessed oxidation states, on the same sparse arrays as the element statistics, and the
        atom fractions of the cation kinds known to drive large ionic dielectric constants (see cation_kinds)."""
        states, balanced = [], np.ones(len(compositions))
        for i, comp in enumerate(compositions):
            guess = guess_oxidation_states(comp.reduced_formula)
            amounts = comp.get_el_amt_dict()
            if guess is None:
                balanced[i] = 0.0
                states.extend([np.nan] * len(amounts))
            else:
                states.extend(guess[el] for el in amounts)
        v = np.array(states, dtype=float)
        w, rows = frac.w, frac.rows()
        vmax, vmin = frac.reduce(np.nan_to_num(v), np.maximum), frac.reduce(np.nan_to_num(v), np.minimum)
        mean = frac.reduce(w * np.nan_to_num(v))
        std = np.sqrt(frac.reduce(w * (np.nan_to_num(v) - mean[rows]) ** 2))
        positive = np.nan_to_num(v) > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            mean_cation = frac.reduce(np.where(positive, w * v, 0.0)) / frac.reduce(np.where(positive, w, 0.0))
        d0, lone_pair, d10 = cation_kinds(table, v)
        out = [balanced, vmax, vmin, vmax - vmin, std, np.nan_to_num(mean_cation),
               frac.reduce(w * d0), frac.reduce(w * lone_pair), frac.reduce(w * d10)]
        for column in out[1:]:
            column[balanced == 0] = np.nan
        return out


def cation_kinds(table: np.ndarray, states: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per element entry (rows of `table`, guessed `states`): d0, lone-pair and d10 cation flags (0/1).

    d0: a transition metal of groups 4-7 in its group oxidation state (Ti4+, Nb5+, W6+), the second-order
    Jahn-Teller cations of ferroelectrics and soft polar modes. Lone pair: a p-block cation from row 4 down
    keeping its ns2 pair (Sn2+, Pb2+, Bi3+, Te4+, I5+: state = group - 12). d10: a filled d shell (Zn2+, Ag+, In3+,
    Sn4+: groups 11-12 in state group - 10, and p-block cations in state group - 10).
    """
    group = table[:, PROPERTIES.index("group")]
    row = table[:, PROPERTIES.index("row")]
    block = table[:, PROPERTIES.index("block")]
    with np.errstate(invalid="ignore"):
        d0 = (block == 2) & (group >= 4) & (group <= 7) & (d_electrons(group, states) == 0)
        lone_pair = (block == 1) & (row >= 4) & (group >= 13) & (states > 0) & (states == group - 12)
        d10 = (((block == 2) & (group >= 11) & (group <= 12)) | ((block == 1) & (row >= 4))) & (states > 0) & (
            d_electrons(group, states) == 10)
    return d0.astype(float), lone_pair.astype(float), d10.astype(float)
