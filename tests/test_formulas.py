"""OPTIMADE's formula forms, which filters compare as plain strings."""

import pytest
from pymatgen.core import Composition

from tansaku.chemistry.formulas import alphabetical_formula, anonymous_formula


@pytest.mark.parametrize(("formula", "alphabetical", "anonymous"), [
    ("Ba2Ti2O6", "BaO3Ti", "A3BC"),
    ("MgO", "MgO", "AB"),
    ("Al4O6", "Al2O3", "A3B2"),
    ("Li2O", "Li2O", "A2B"),
    ("O", "O", "A"),
])
def test_optimade_formulas(formula, alphabetical, anonymous):
    composition = Composition(formula)
    assert alphabetical_formula(composition) == alphabetical
    assert anonymous_formula(composition) == anonymous


def test_fractional_composition_has_no_optimade_formula():
    assert alphabetical_formula(Composition("Li0.5CoO2")) is None
    assert anonymous_formula(Composition("Li0.5CoO2")) is None


def test_anonymous_names_go_past_z():
    composition = Composition({f"{el}": n + 1 for n, el in enumerate(
        ["H", "Li", "Be", "B", "C", "N", "O", "F", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "K", "Ca", "Sc", "Ti",
         "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn"])})
    assert anonymous_formula(composition).endswith("Aa")
