"""Fast charge-balanced oxidation-state guesses (common states first, all known states after), cached."""

from __future__ import annotations

import itertools
from functools import lru_cache
from pathlib import Path

from pymatgen.core import Composition, Element

ANION_CHARGES = {"O": -2, "N": -3, "F": -1, "Cl": -1, "Br": -1, "I": -1, "S": -2, "Se": -2, "Te": -2, "H": -1}


def anion_elements(composition: Composition) -> set[str]:
    """Anions for ionic descriptors: O, N and halogens; chalcogens (and H) only without oxygen."""
    symbols = {el.symbol for el in composition.elements}
    anions = symbols & {"O", "N", "F", "Cl", "Br", "I"}
    if "O" not in symbols:
        anions |= symbols & {"S", "Se", "Te"}
    if not anions and len(symbols) > 1:  # a tie (Cu and Si, Ir and Os) goes to the first in alphabetical order,
        # not to whichever a set's hash order gives first: descriptors must not change from one process to the next
        anions = {max(sorted(symbols), key=lambda s: Element(s).X or 0)}
    return anions


@lru_cache(maxsize=1)
def icsd_occurrence() -> dict[tuple[str, int], int]:
    """How many ICSD structures show each (element, oxidation state): pymatgen's bond-valence statistics."""
    import pymatgen.core.composition as composition_module
    from monty.serialization import loadfn
    from pymatgen.core import Species

    table = loadfn(Path(composition_module.__file__).parent / "icsd_bv.yaml")["occurrence"]
    return {(species.symbol, int(species.oxi_state)): count
            for species, count in ((Species.from_str(key), count) for key, count in table.items())}


def _icsd_count(cations: list[str], states: tuple[int, ...]) -> int:
    table = icsd_occurrence()
    return sum(table.get((el, s), 0) for el, s in zip(cations, states, strict=True))


def split_ions(formula: str) -> tuple[dict[str, float], dict[str, int], list[str]]:
    """Amount of every element, the fixed charges of the anions, and the cations whose states are to be found."""
    composition = Composition(formula)
    amounts = composition.get_el_amt_dict()
    anions = anion_elements(composition)
    return amounts, {el: ANION_CHARGES.get(el, -2) for el in anions}, [el for el in amounts if el not in anions]


def _cation_options(cations: list[str]):
    """Positive states to try per cation: pymatgen's common states first, then every known state (0 if none)."""
    for pool in ("common_oxidation_states", "oxidation_states"):
        yield {el: [s for s in getattr(Element(el), pool) if s > 0] or [0] for el in cations}


@lru_cache(maxsize=200_000)
def guess_oxidation_states(formula: str) -> dict[str, int] | None:
    """Integer oxidation states per element that balance the charge, or None when none does."""
    amounts, fixed, cations = split_ions(formula)
    charge = sum(amounts[el] * q for el, q in fixed.items())
    if not cations:
        return fixed if abs(charge) < 1e-6 else None
    for options in _cation_options(cations):
        best: tuple | None = None
        best_seen = None  # counted only when a tie needs it
        for combo in itertools.product(*options.values()):
            total = charge + sum(amounts[el] * s for el, s in zip(cations, combo, strict=True))
            if abs(total) < 1e-6:
                # prefer the lower states when several balance, then the states crystals show most often
                # (CuAlO2: Cu+ Al3+ rather than Cu3+ Al+; LaMnO3: La3+ Mn3+ rather than La2+ Mn4+)
                rank = sum(abs(s) for s in combo)
                if best is None or rank < best[0]:
                    best, best_seen = (rank, combo), None
                elif rank == best[0]:
                    best_seen = _icsd_count(cations, best[1]) if best_seen is None else best_seen
                    seen = _icsd_count(cations, combo)
                    if seen > best_seen:
                        best, best_seen = (rank, combo), seen
        if best is not None:
            return {**fixed, **dict(zip(cations, best[1], strict=True))}
    return None


# States pymatgen's common list leaves out that oxides show all the time: Cu+ (Cu2O, and the delafossites such as
# CuAlO2, p-type transparent conductors, which the reference database holds as mp-3748).
COMMON_EXTRA: dict[str, tuple[int, ...]] = {"Cu": (1,)}


def common_states_guess(composition: Composition) -> dict[str, float] | None:
    """The most likely charge-balanced assignment from each element's common oxidation states only (pymatgen's
    ICSD-weighted `oxi_state_guesses`): the stricter rule that hypothetical candidates must pass, where
    `guess_oxidation_states` also tries rarer states to describe compounds that exist."""
    common = {el.symbol: sorted({*el.common_oxidation_states, *COMMON_EXTRA.get(el.symbol, ())})
              for el in composition.elements}
    guesses = composition.oxi_state_guesses(oxi_states_override=common, max_sites=-1)
    return dict(guesses[0]) if guesses else None


def d_electrons(group, state):
    """d-shell electrons of a transition-metal cation (scalars or arrays): group − oxidation state.

    One rule for the whole project: d0 (Ti4+ = 4 − 4), d5 (Fe3+ = 8 − 3), d10 (Zn2+ = 12 − 2).
    """
    return group - state


@lru_cache(maxsize=20_000)
def mixed_valence_states(formula: str) -> tuple[tuple[str, int, float], ...] | None:
    """(element, state, amount per formula unit) with one cation shared between two states, for oxides no single
    state per element balances: Fe3O4 → Fe2+ + 2 Fe3+, Pb3O4 → 2 Pb2+ + Pb4+, Cr8O21 → 2 Cr3+ + 6 Cr6+.

    Only the magnetic setup of a DFT run uses this (how many d or f electrons each site has); descriptors keep
    the single-state guess. None when no split balances with whole numbers of atoms.
    """
    amounts, fixed, cations = split_ions(formula)
    charge = sum(amounts[el] * q for el, q in fixed.items())
    for options in _cation_options(cations):  # for the cations other than the shared one
        best: tuple | None = None
        for shared in cations:
            others = [el for el in cations if el != shared]
            # every known state for the shared element: pymatgen's common list lacks Mn3+ (Mn3O4: Mn2+ + 2 Mn3+)
            pairs = itertools.combinations(sorted(s for s in Element(shared).oxidation_states if s > 0), 2)
            for (low, high), combo in itertools.product(pairs, itertools.product(*(options[el] for el in others))):
                needed = -charge - sum(amounts[el] * s for el, s in zip(others, combo, strict=True))
                n_high = (needed - low * amounts[shared]) / (high - low)
                if not (0 < n_high < amounts[shared] and abs(n_high - round(n_high)) < 1e-6):
                    continue
                split = [(shared, low, amounts[shared] - round(n_high)), (shared, high, float(round(n_high)))]
                states = tuple(sorted([*split, *((el, s, amounts[el]) for el, s in zip(others, combo, strict=True))]))
                # lowest states, then the pair whose rarer state crystals show most often (ICSD, as the
                # single-state guess breaks ties): Fe3O4 Fe2+/Fe3+ not Fe2+/Fe4+, Cr8O21 Cr3+/Cr6+ not Cr5+/Cr6+,
                # LiMn2O4 Mn3+/Mn4+ not Mn2+/Mn5+
                seen = min(_icsd_count([shared], (low,)), _icsd_count([shared], (high,)))
                rank = (sum(abs(s) * n for _, s, n in states), -seen)
                if best is None or rank < best[0]:
                    best = (rank, states)
        if best is not None:
            return best[1]
    return None


def cation_states(formula: str) -> tuple[tuple[str, int, float], ...]:
    """(element, state, amount per formula unit) of every cation: the charge-balanced guess, else a mixed-valence
    split (`mixed_valence_states`), else nothing."""
    guess = guess_oxidation_states(formula)
    if guess is None:
        return mixed_valence_states(formula) or ()
    amounts = Composition(formula).get_el_amt_dict()
    return tuple((el, state, amounts[el]) for el, state in guess.items() if state > 0)


def open_shells(formula: str) -> list[tuple[str, int, float, str, int, int]]:
    """Cations whose state leaves a partly filled d or f shell:
    (element, state, amount per formula unit, shell, electrons, capacity).

    These carry magnetic moments (Fe3+: d5, Gd3+: f7); d0, d10, f0 and f14 cations do not. A mixed-valence
    element appears once per state (Fe3O4: Fe2+ d6 and Fe3+ d5).
    """
    found = []
    for symbol, state, amount in cation_states(formula):
        element = Element(symbol)
        if element.is_lanthanoid or element.is_actinoid:
            base = 57 if element.is_lanthanoid else 89
            shell, count, full = "f", element.Z - base + 3 - state, 14
        elif element.is_transition_metal and 3 <= element.group <= 12:
            shell, count, full = "d", d_electrons(element.group, state), 10
        else:
            continue
        if 0 < count < full:
            found.append((symbol, state, amount, shell, count, full))
    return found


def open_shell_cations(formula: str) -> list[str]:
    """The open-shell cations as people write them ('Fe3+ (d5)'), for messages."""
    return [f"{symbol}{state}+ ({shell}{count})" for symbol, state, _, shell, count, _ in open_shells(formula)]


def high_spin_unpaired(count: int, capacity: int) -> int:
    """Unpaired electrons of a shell filled by Hund's rule (high spin): d5 -> 5, d7 -> 3, f7 -> 7, f9 -> 5."""
    return count if count <= capacity // 2 else capacity - count


def charge_balance_problem(formula: str) -> str | None:
    """What is odd about this composition for an ionic model, or None: known oxidation states must balance the
    charge, with one element allowed two states (Fe3O4 = Fe2+ + 2 Fe3+). H2, CoAsS and typos such as NaO3 do not;
    neither do some real compounds whose anions the guess does not know (Ca4Sb2O holds Sb3-), so this flags a
    prediction (its ionic descriptors are guesses) and refuses nothing."""
    if guess_oxidation_states(formula) is not None or mixed_valence_states(formula) is not None:
        return None
    return "cannot be charge-balanced with known oxidation states, even with one element in two states"
