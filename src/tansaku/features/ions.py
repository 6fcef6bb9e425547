"""Atom fraction of every ion (element and oxidation state): the block a linear model reads, not the trees.

log ε∞ is close to additive in the ions a compound holds (Ti4+ and Nb5+ raise it, Mg2+ and Al3+ do not), and a
ridge regression on these fractions learns one weight per ion. The element statistics of the composition set
blur Fe2+ with Fe3+ and a trace of Ti with plenty of it; tree learners do not need the fractions (they would
only dilute their column sampling), so only the linear part of a stacked model (`models.stacking`) gets them.
The vocabulary is fixed (every element with every state pymatgen knows, plus an unknown-state column), so the
block has the same columns for every training set.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

import numpy as np
from pymatgen.core import Element

from tansaku.chemistry.oxidation import ANION_CHARGES, cation_states, guess_oxidation_states, split_ions
from tansaku.features.composition import to_composition

VERSION = "ions-1"
UNKNOWN = "?"  # state not found (no charge-balanced guess)


def ion_label(symbol: str, state: int | str) -> str:
    """'Ti4+', 'O2-', 'Fe0', 'Fe?': the way people write ions."""
    if state == UNKNOWN or state == 0:
        return f"{symbol}{state}"
    return f"{symbol}{abs(state) if abs(state) != 1 else ''}{'+' if state > 0 else '-'}"


@lru_cache(maxsize=1)
def vocabulary() -> dict[str, int]:
    """Column of every ion label: each element's known states, 0, its anion charge, and unknown."""
    labels = []
    for element in Element:
        if element.Z > 103:
            continue
        states = set(element.oxidation_states) | {0, ANION_CHARGES.get(element.symbol, -2)}
        labels += [ion_label(element.symbol, s) for s in sorted(states)] + [ion_label(element.symbol, UNKNOWN)]
    return {label: i for i, label in enumerate(labels)}


def names() -> list[str]:
    return [f"ion_fraction:{label}" for label in vocabulary()]


@lru_cache(maxsize=200_000)
def ion_amounts(formula: str) -> tuple[tuple[str, float], ...]:
    """(ion label, amount per formula unit): the charge-balanced guess, else a mixed-valence split (Fe3O4 → Fe2+ +
    2 Fe3+), else the cations in their unknown-state columns."""
    amounts, anion_charges, cation_symbols = split_ions(formula)
    guess = guess_oxidation_states(formula)
    if guess is not None:
        return tuple((ion_label(el, guess[el]), amount) for el, amount in amounts.items())
    anions = tuple((ion_label(el, q), amounts[el]) for el, q in anion_charges.items())
    cations = cation_states(formula) or tuple((el, UNKNOWN, amounts[el]) for el in cation_symbols)
    return tuple((ion_label(el, s), n) for el, s, n in cations) + anions


def ion_fractions(items: Iterable) -> np.ndarray:
    """One row per composition, formula or structure: atom fraction of each ion of `vocabulary()`."""
    columns = vocabulary()
    items = list(items)
    out = np.zeros((len(items), len(columns)))
    for row, item in enumerate(items):
        composition = to_composition(item)
        reduced, factor = composition.get_reduced_composition_and_factor()
        for label, amount in ion_amounts(reduced.formula):
            # a state outside pymatgen's list (not expected) still counts, as the element's unknown state
            column = columns.get(label, columns[ion_label(label.rstrip("0123456789+-?"), UNKNOWN)])
            out[row, column] += amount * factor / composition.num_atoms
    return out
