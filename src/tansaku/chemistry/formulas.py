"""Formula strings in the forms other databases exchange: OPTIMADE's reduced (alphabetical) and anonymous ones.

Stored beside pymatgen's reduced formula so that a filter such as `chemical_formula_anonymous="A2B3"` is a plain
comparison in SQL, whatever the database engine.
"""

from __future__ import annotations

import math
import string
from itertools import product

from pymatgen.core import Composition


def _integer_amounts(composition: Composition) -> dict[str, int] | None:
    """Element → smallest whole-number amounts, or None for a composition with fractional amounts. Divided by the
    greatest common divisor (pymatgen's reduced composition keeps O2, H2 and other diatomic gases whole)."""
    amounts = composition.get_el_amt_dict()
    if any(abs(n - round(n)) > 1e-6 or round(n) < 1 for n in amounts.values()):
        return None
    divisor = math.gcd(*(round(n) for n in amounts.values()))
    return {symbol: round(n) // divisor for symbol, n in amounts.items()}


def _term(symbol: str, count: int) -> str:
    return symbol if count == 1 else f"{symbol}{count}"


def alphabetical_formula(composition: Composition) -> str | None:
    """Reduced formula with elements in alphabetical order and counts of 1 omitted: BaTiO3 → 'BaO3Ti'."""
    amounts = _integer_amounts(composition)
    if amounts is None:
        return None
    return "".join(_term(symbol, amounts[symbol]) for symbol in sorted(amounts))


def _anonymous_symbols():
    """A, B, …, Z, Aa, Ab, …: OPTIMADE's anonymous element names."""
    yield from string.ascii_uppercase
    for first, second in product(string.ascii_uppercase, string.ascii_lowercase):
        yield first + second


def anonymous_formula(composition: Composition) -> str | None:
    """Reduced formula with elements renamed A, B, … by decreasing count: BaTiO3 → 'A3BC'."""
    amounts = _integer_amounts(composition)
    if amounts is None:
        return None
    counts = sorted(amounts.values(), reverse=True)
    return "".join(_term(symbol, count) for symbol, count in zip(_anonymous_symbols(), counts, strict=False))
