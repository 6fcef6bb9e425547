"""A composition as a short list of element tokens (atomic number, atom fraction): the input of networks that
read a composition as a set of elements (`models.attention`) rather than as fixed statistics over them.

Slots are filled largest fraction first and padded with zeros (Z = 0 is no element). The trees and the ridge
of a stacked model never see these columns; `models.attention.TokenBlend` routes them to the network alone.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from tansaku import TansakuError
from tansaku.features.composition import to_composition

VERSION = "tokens-1"
SLOTS = 8  # more distinct elements than this is not a compound we have training data for


def names() -> list[str]:
    return [f"token_{i}_{what}" for i in range(SLOTS) for what in ("Z", "fraction")]


def element_tokens(items: Iterable) -> np.ndarray:
    """One row per formula, Composition or Structure: Z and atom fraction of each element, in pairs."""
    items = list(items)
    out = np.zeros((len(items), 2 * SLOTS))
    for row, item in enumerate(items):
        composition = to_composition(item).fractional_composition
        if len(composition) > SLOTS:
            raise TansakuError(f"{composition.reduced_formula}: {len(composition)} elements; element tokens hold "
                               f"at most {SLOTS}")
        pairs = sorted(((el.Z, x) for el, x in composition.items()), key=lambda p: (-p[1], p[0]))
        out[row, : 2 * len(pairs)] = np.ravel(pairs)
    return out


def split_tokens(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Z as int, fraction) arrays of shape rows × SLOTS from the descriptor columns."""
    block = np.asarray(block, dtype=float).reshape(len(block), SLOTS, 2)
    return np.nan_to_num(block[:, :, 0]).astype(np.int64), np.nan_to_num(block[:, :, 1])
