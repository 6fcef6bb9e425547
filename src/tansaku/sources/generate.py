"""Hypothetical materials by element substitution on prototype structures, filtered before anyone computes them.

Site labels: an element symbol of the prototype names that element's sites; letters A, B, C, ... name the
prototype's cation species in order of decreasing ionic radius (so in a perovskite ABO3, A is the large
12-coordinated cation and B the octahedral one). A letter that is also the symbol of another of its cations
(B in a borate whose second-largest cation is not boron) is refused as ambiguous, naming both ways to say it.
The anion sites take `anion`.

Filters, each refusal with its reason:
- charge neutrality with common oxidation states (pymatgen's `oxi_state_guesses`, ICSD-weighted);
- perovskite prototypes (ABX3 with an octahedral B): Goldschmidt tolerance factor
  t = (r_A + r_X) / (√2 (r_B + r_X)) inside [t_min, t_max] and octahedral factor r_B / r_X ≥ 0.414;
  other prototypes: Pauling's radius ratio r_cation / r_anion ≥ slack × the lower bound for the site's
  coordination number (the rule is known to be loose, hence the slack);
- no structure match (pymatgen StructureMatcher) with a stored material or an earlier candidate;
- at most `max_sites` sites.
The lattice is scaled isotropically by the mean ratio of new to old cation-anion bond lengths (sums of Shannon
radii), a starting guess that the relaxation then corrects.
"""

from __future__ import annotations

import itertools
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pymatgen.core import Composition, Element, Species, Structure
from sqlalchemy import select

from tansaku import TansakuError
from tansaku.chemistry.oxidation import common_states_guess
from tansaku.chemistry.structures import check_ordered, structure_inputs
from tansaku.store.database import Database
from tansaku.store.materials import (
    ImportReport,
    add_structure_material,
    add_to_subset,
    composition_fields,
    find_same_structure,
    get_material,
)
from tansaku.store.tables import Material

GENERATED_SOURCE = "generated"
ROMAN = {1: "I", 2: "II", 3: "III", 4: "IV", 5: "V", 6: "VI", 7: "VII", 8: "VIII", 9: "IX", 10: "X",
         11: "XI", 12: "XII"}
# Pauling's lower bounds of r_cation / r_anion for a coordination number
RADIUS_RATIO_MIN = {2: 0.0, 3: 0.155, 4: 0.225, 5: 0.225, 6: 0.414, 7: 0.414, 8: 0.732, 9: 0.732, 10: 0.732,
                    11: 0.732, 12: 1.0}


@dataclass
class Prototype:
    label: str  # how the user named it: material id, source id or file name
    structure: Structure
    material_id: int | None = None


@dataclass
class Candidate:
    structure: Structure
    prototype: str
    substitution: dict[str, str]  # prototype element -> new element
    oxidation_states: dict[str, float]
    lattice_scale: float
    checks: dict[str, float] = field(default_factory=dict)
    material_id: int | None = None
    existing: bool = False
    relaxation: dict | None = None  # how a potential relaxed it (`sources.relax`), None when it was not

    @property
    def formula(self) -> str:
        return self.structure.composition.reduced_formula

    @property
    def source_id(self) -> str:
        subs = ",".join(f"{old}>{new}" for old, new in sorted(self.substitution.items()))
        return f"substitute:{self.prototype}:{subs}"


@dataclass
class Refusal:
    formula: str
    prototype: str
    reason: str


@dataclass
class Limits:
    """The filters' parameters (see the module docstring)."""

    tolerance_min: float = 0.80
    tolerance_max: float = 1.10
    octahedral_min: float = 0.414
    radius_ratio_slack: float = 0.8
    max_sites: int = 40


def parse_site_elements(text: str) -> dict[str, list[str]]:
    """'A=Ca,Sr,Ba;B=Ti,Zr' into {'A': ['Ca', 'Sr', 'Ba'], 'B': ['Ti', 'Zr']}, every symbol checked."""
    out: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        if "=" not in part:
            raise TansakuError(f"site elements {part!r}: expected LABEL=El1,El2 (e.g. 'A=Ca,Sr;B=Ti,Zr')")
        label, elements = (s.strip() for s in part.split("=", 1))
        symbols = [e.strip() for e in elements.split(",") if e.strip()]
        if not symbols:
            raise TansakuError(f"site elements {part!r}: no element after '='")
        for symbol in symbols:
            if not Element.is_valid_symbol(symbol):
                raise TansakuError(f"site elements {part!r}: unknown element symbol {symbol!r}")
        out[label] = symbols
    if not out:
        raise TansakuError("no site elements given (e.g. --site-elements 'A=Ca,Sr;B=Ti,Zr')")
    return out


def load_prototypes(db: Database, specs: list[str]) -> tuple[list[Prototype], list[Refusal]]:
    """Prototypes by material id, source id (e.g. mp-5020) or structure file; a bad one is refused, the rest go on."""
    prototypes, refused = [], []
    for spec in specs:
        if Path(spec).exists():  # each structure in it (a CIF's blocks, a JSON list's items, a folder's files)
            for item in structure_inputs([spec]):
                try:
                    structure = item.read()
                    check_ordered(structure, item.label)
                    prototypes.append(Prototype(item.name, structure))
                except TansakuError as exc:
                    refused.append(Refusal("?", item.label, str(exc)))
            continue
        try:
            prototypes.append(_stored_prototype(db, spec))
        except TansakuError as exc:
            refused.append(Refusal("?", spec, str(exc)))
    return prototypes, refused


def _stored_prototype(db: Database, spec: str) -> Prototype:
    with db.session() as session:
        if spec.isdigit():
            material = session.get(Material, int(spec))
        else:
            material = session.scalar(select(Material).where(Material.source_id == spec)
                                      .order_by(Material.id).limit(1))
        if material is None:
            raise TansakuError(f"prototype {spec!r}: no such file, material id or source id in the database")
        structure = material.structure()
        if structure is None:
            raise TansakuError(f"prototype {spec!r} ({material.reduced_formula}) has no structure")
        label = spec if not spec.isdigit() else f"{material.source_id or spec}"
        return Prototype(label, structure, material.id)


def _radius(symbol: str, oxidation: float, cn: int | None) -> float | None:
    """Shannon radius for the coordination number when tabulated, else pymatgen's average ionic radius."""
    species = Species(symbol, round(oxidation)) if float(oxidation).is_integer() else None
    if species is not None:
        if cn in ROMAN:
            try:
                return float(species.get_shannon_radius(ROMAN[cn]))
            except (KeyError, ValueError):
                pass
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen warns when it has no radius; we fall back below
            radius = species.ionic_radius
        if radius is not None:
            return float(radius)
    radius = Element(symbol).average_ionic_radius
    return float(radius) if radius else None


@dataclass
class SiteAnalysis:
    """What substitution needs to know about a prototype: its anion, cation labels and coordination."""

    anion: str
    labels: dict[str, str]  # label (A, B, ... and element symbols) -> prototype element
    oxidation: dict[str, float]
    coordination: dict[str, int]  # cation element -> anion neighbours of its first site
    perovskite: tuple[str, str] | None  # (A element, B element) when the prototype is an ABX3 perovskite
    by_radius: list[str] = field(default_factory=list)  # cations, largest ionic radius at their site first
    ambiguous: dict[str, str] = field(default_factory=dict)  # rank letter that is also an element → rank's element


def analyse_prototype(prototype: Prototype) -> SiteAnalysis:
    structure = prototype.structure
    oxidation = common_states_guess(structure.composition)
    if oxidation is None:
        raise TansakuError(f"prototype {prototype.label} ({structure.composition.reduced_formula}): no charge-"
                           "balanced oxidation states, cannot tell cations from anions")
    anions = [el for el, ox in oxidation.items() if ox < 0]
    if len(anions) != 1:
        raise TansakuError(f"prototype {prototype.label}: needs exactly one anion species, found {anions}")
    anion = anions[0]
    cations = [el for el, ox in oxidation.items() if ox > 0]
    coordination = {el: _coordination(structure, el, anion) for el in cations}
    radii = {el: _radius(el, oxidation[el], coordination[el]) or 0.0 for el in cations}
    ordered = sorted(cations, key=lambda el: -radii[el])
    ranks = {chr(ord("A") + i): el for i, el in enumerate(ordered)}
    labels = {**ranks, **{el: el for el in cations}}
    # a rank letter that is also another cation's symbol (B for boron, C for carbon) names two sites: neither
    ambiguous = {letter: el for letter, el in ranks.items() if letter in cations and letter != el}
    for letter in ambiguous:
        del labels[letter]
    amounts = structure.composition.reduced_composition
    perovskite = None
    if len(ordered) == 2 and amounts[ordered[0]] == amounts[ordered[1]] == 1 and amounts[anion] == 3 \
            and coordination[ordered[1]] == 6:
        perovskite = (ordered[0], ordered[1])
    return SiteAnalysis(anion, labels, oxidation, coordination, perovskite, ordered, ambiguous)


def _coordination(structure: Structure, cation: str, anion: str) -> int:
    """Anions within 1.2 × the shortest cation-anion distance of the cation's first site."""
    index = next(i for i, site in enumerate(structure) if site.specie.symbol == cation)
    neighbours = structure.get_neighbors(structure[index], 4.5)
    distances = [n.nn_distance for n in neighbours if n.specie.symbol == anion]
    if not distances:
        return 0
    shortest = min(distances)
    return sum(d <= 1.2 * shortest for d in distances)


def substitute(prototypes: list[Prototype], site_elements: dict[str, list[str]], anion: str | None = None,
               limits: Limits | None = None) -> tuple[list[Candidate], list[Refusal]]:
    """Every substitution of every prototype, filtered; duplicates among the candidates are refused here,
    duplicates of stored materials by `store_candidates`. A prototype that cannot be used is refused whole."""
    limits = limits or Limits()
    if anion is not None and not Element.is_valid_symbol(anion):
        raise TansakuError(f"--anion {anion!r}: unknown element symbol")
    candidates: list[Candidate] = []
    refused: list[Refusal] = []
    for prototype in prototypes:
        formula = prototype.structure.composition.reduced_formula
        try:
            sites = analyse_prototype(prototype)
        except TansakuError as exc:  # this prototype cannot be used; the others go on
            refused.append(Refusal(formula, prototype.label, str(exc)))
            continue
        if unclear := [label for label in site_elements if label in sites.ambiguous]:
            label = unclear[0]
            own = next(letter for letter, el in sites.labels.items() if el == label and letter != label)
            refused.append(Refusal(formula, prototype.label, f"label {label} is ambiguous in prototype "
                                   f"{prototype.label} ({formula}): by ionic radius it is {sites.ambiguous[label]}'s "
                                   f"site, and it is also the element {label}; write {sites.ambiguous[label]} for "
                                   f"the one, {own} for the other"))
            continue
        unknown = [label for label in site_elements if label not in sites.labels]
        if unknown:
            known = ", ".join(sorted(sites.labels))
            refused.append(Refusal(formula, prototype.label, f"prototype {prototype.label} ({formula}) has no "
                                                             f"site {', '.join(unknown)} (its labels: {known})"))
            continue
        targets = [sites.labels[label] for label in site_elements]
        for choice in itertools.product(*site_elements.values()):
            substitution = dict(zip(targets, choice, strict=True))
            if anion:
                substitution[sites.anion] = anion
            item = _make_candidate(prototype, sites, substitution, limits)
            if isinstance(item, Refusal):
                refused.append(item)
                continue
            if any(item.formula == c.formula and _same(item.structure, c.structure) for c in candidates):
                refused.append(Refusal(item.formula, prototype.label, "same structure as an earlier candidate"))
                continue
            candidates.append(item)
    return candidates, refused


def _same(a: Structure, b: Structure) -> bool:
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher().fit(a, b)


def _make_candidate(prototype: Prototype, sites: SiteAnalysis, substitution: dict[str, str],
                    limits: Limits) -> Candidate | Refusal:
    structure = prototype.structure.copy()
    structure.replace_species({Element(old): Element(new) for old, new in substitution.items() if old != new})
    formula = structure.composition.reduced_formula
    if len(structure) > limits.max_sites:
        return Refusal(formula, prototype.label, f"{len(structure)} sites exceed the cap of {limits.max_sites}")
    new_anion = substitution.get(sites.anion, sites.anion)
    oxidation = common_states_guess(structure.composition)
    if oxidation is None or oxidation.get(new_anion, 0) >= 0:
        return Refusal(formula, prototype.label, "not charge-balanced with common oxidation states")
    checks: dict[str, float] = {}
    ratios = []
    for old, cn in sites.coordination.items():
        new = substitution.get(old, old)
        r_new, r_old = _radius(new, oxidation[new], cn), _radius(old, sites.oxidation[old], cn)
        x_new = _radius(new_anion, oxidation[new_anion], 6)
        x_old = _radius(sites.anion, sites.oxidation[sites.anion], 6)
        if None in (r_new, r_old, x_new, x_old):
            return Refusal(formula, prototype.label, f"no ionic radius for {new}{oxidation[new]:+g}")
        count = sum(site.specie.symbol == new for site in structure)
        ratios += [(r_new + x_new) / (r_old + x_old)] * count
        if sites.perovskite is None:
            bound = limits.radius_ratio_slack * RADIUS_RATIO_MIN.get(cn, 0.0)
            if r_new / x_new < bound:
                return Refusal(formula, prototype.label,
                               f"{new} too small for a {cn}-coordinated site: r/r_anion = {r_new / x_new:.3f} "
                               f"< {bound:.3f} ({limits.radius_ratio_slack} × Pauling's {RADIUS_RATIO_MIN[cn]})")
    if sites.perovskite is not None:
        a_el, b_el = (substitution.get(el, el) for el in sites.perovskite)
        r_a = _radius(a_el, oxidation[a_el], 12)
        r_b = _radius(b_el, oxidation[b_el], 6)
        r_x = _radius(new_anion, oxidation[new_anion], 6)
        t = (r_a + r_x) / (math.sqrt(2) * (r_b + r_x))
        mu = r_b / r_x
        checks.update(tolerance_factor=round(t, 4), octahedral_factor=round(mu, 4))
        if not limits.tolerance_min <= t <= limits.tolerance_max:
            return Refusal(formula, prototype.label, f"tolerance factor {t:.3f} outside "
                           f"[{limits.tolerance_min}, {limits.tolerance_max}]")
        if mu < limits.octahedral_min:
            return Refusal(formula, prototype.label, f"octahedral factor r_B/r_X = {mu:.3f} < {limits.octahedral_min}")
    scale = float(np.mean(ratios))
    structure.scale_lattice(structure.volume * scale**3)
    return Candidate(structure, prototype.label, substitution, oxidation, round(scale, 4), checks)


def store_candidates(db: Database, candidates: list[Candidate], prototypes: list[Prototype],
                     subset: str | None = None) -> list[Refusal]:
    """Store each candidate (source 'generated') unless it matches a stored material; one transaction each."""
    ids = {p.label: p.material_id for p in prototypes}
    refused = []
    report = ImportReport()
    for candidate in candidates:
        with db.session() as session:
            known = get_material(session, GENERATED_SOURCE, candidate.source_id)
            if known is not None:
                candidate.material_id, candidate.existing = known.id, True
                if subset:
                    add_to_subset(session, subset, [known.id])
                continue
            match = find_same_structure(session, candidate.structure)
            if match is not None:
                other = session.get(Material, match)
                refused.append(Refusal(candidate.formula, candidate.prototype,
                                       f"already in the database as material {match} ({other.source} "
                                       f"{other.source_id})"))
                continue
            extra = {"prototype": candidate.prototype, "prototype_material_id": ids.get(candidate.prototype),
                     "substitution": candidate.substitution, "oxidation_states": candidate.oxidation_states,
                     "lattice_scale": candidate.lattice_scale, **candidate.checks, **(candidate.relaxation or {})}
            material, _ = add_structure_material(session, candidate.structure, GENERATED_SOURCE,
                                                 candidate.source_id, report, extra=json.loads(json.dumps(extra)))
            candidate.material_id = material.id
            if subset:
                add_to_subset(session, subset, [material.id])
    return refused


def chemsys_compositions(elements: list[str], max_atoms: int, subsystems: bool = False) -> list[Composition]:
    """Charge-balanced compositions (common oxidation states, one anion or more) of the elements with at most
    `max_atoms` atoms per formula unit; each reduced formula once. Without `subsystems` every element is present."""
    for symbol in elements:
        if not Element.is_valid_symbol(symbol):
            raise TansakuError(f"chemical system: unknown element symbol {symbol!r}")
    if len(set(elements)) < 2:
        raise TansakuError("a chemical system needs at least two different elements")
    if max_atoms < 2:
        raise TansakuError("--max-atoms must be at least 2")
    elements = sorted(set(elements))
    found: dict[str, Composition] = {}
    for counts in itertools.product(range(max_atoms + 1), repeat=len(elements)):
        total = sum(counts)
        present = [n for n in counts if n]
        if not 2 <= total <= max_atoms or len(present) < 2 or (not subsystems and len(present) < len(elements)):
            continue
        if math.gcd(*present) != 1:
            continue  # a multiple of a smaller formula unit, which is found on its own
        composition = Composition(dict(zip(elements, counts, strict=True)))
        if composition.reduced_formula in found:
            continue
        oxidation = common_states_guess(composition)
        if oxidation and any(v < 0 for v in oxidation.values()) and any(v > 0 for v in oxidation.values()):
            found[composition.reduced_formula] = composition
    return sorted(found.values(), key=lambda c: (len(c), c.num_atoms, c.reduced_formula))


def store_compositions(db: Database, compositions: list[Composition], subset: str | None = None
                       ) -> tuple[list[int], list[Refusal]]:
    """Store compositions not yet in the database (by reduced formula) as composition-only generated materials."""
    ids, refused = [], []
    with db.session() as session:
        for composition in compositions:
            formula = composition.reduced_formula
            source_id = f"chemsys:{formula}"
            material = get_material(session, GENERATED_SOURCE, source_id)
            if material is None:
                other = session.scalar(select(Material).where(Material.reduced_formula == formula).limit(1))
                if other is not None:
                    refused.append(Refusal(formula, "chemsys", f"already in the database as material {other.id} "
                                                               f"({other.source} {other.source_id})"))
                    continue
                material = Material(source=GENERATED_SOURCE, source_id=source_id,
                                    extra={"chemsys": "-".join(sorted(el.symbol for el in composition.elements))},
                                    **composition_fields(composition))
                session.add(material)
                session.flush()
            ids.append(material.id)
        if subset:
            add_to_subset(session, subset, ids)
    return ids, refused
