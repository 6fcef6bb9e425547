"""Stored materials as OPTIMADE structure entries, and the description of those entries (/info/structures).

Only materials with a structure are entries: OPTIMADE exchanges structures, and a composition-only row (a CSV
line) has no lattice or sites to give. Our own properties travel as `_tansaku_<name>` fields: the first
measured value (imported or computed, never a model's prediction), with its method in `_tansaku_methods`.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tansaku.interop.optimade_filter import PREFIX
from tansaku.store.filters import is_measured
from tansaku.store.tables import Material, Property

UNITS = {"band_gap": "eV", "e_form": "eV/atom", "born_charges": "e", "gamma_frequencies": "THz"}
DESCRIPTIONS = {
    "eps_electronic": "electronic (high-frequency) dielectric constant ε∞: mean of the tensor's eigenvalues",
    "eps_ionic": "ionic contribution to the static dielectric constant: mean of the tensor's eigenvalues",
    "eps_total": "static dielectric constant ε∞ + ε_ion: mean of the tensor's eigenvalues",
    "band_gap": "band gap (eV) at the level of theory its method names",
    "e_form": "formation energy per atom (eV/atom)",
    "born_charges": "isotropic Born effective charge, mean over atoms of |Tr Z*|/3 (e)",
    "gamma_frequencies": "lowest phonon frequency at Γ (THz)",
}
STANDARD = {
    "id": ("string", "the material's id in this database"),
    "type": ("string", "always 'structures'"),
    "last_modified": ("timestamp", "when the material was stored"),
    "elements": ("list", "element symbols, alphabetical"),
    "nelements": ("integer", "number of distinct elements"),
    "elements_ratios": ("list", "fraction of the atoms of each element, in the order of elements"),
    "chemical_formula_descriptive": ("string", "the stored cell's formula"),
    "chemical_formula_reduced": ("string", "reduced formula, elements alphabetical"),
    "chemical_formula_anonymous": ("string", "reduced formula with elements renamed A, B, … by decreasing count"),
    "dimension_types": ("list", "periodicity along each lattice vector (always periodic)"),
    "nperiodic_dimensions": ("integer", "always 3"),
    "lattice_vectors": ("list", "lattice vectors (Å)"),
    "cartesian_site_positions": ("list", "Cartesian positions of the sites (Å)"),
    "nsites": ("integer", "number of sites in the cell"),
    "species": ("list", "the species the sites refer to"),
    "species_at_sites": ("list", "the species name of each site"),
    "structure_features": ("list", "always empty: ordered, periodic, no assemblies"),
    "space_group_it_number": ("integer", "International Tables space group number (spglib, symprec 0.1 Å)"),
}
SORTABLE = {"id", "last_modified", "nelements", "nsites", "chemical_formula_reduced", "chemical_formula_anonymous",
            "chemical_formula_descriptive", "space_group_it_number"}


def entry_info(property_names: list[str]) -> dict[str, Any]:
    """The body of /info/structures: every field we serve, its type, whether it sorts, and what it means."""
    properties = {name: {"description": text, "type": kind, "sortable": name in SORTABLE}
                  for name, (kind, text) in STANDARD.items()}
    properties[f"_{PREFIX}_source"] = {"description": "where the material came from (an import, a generator)",
                                       "type": "string", "sortable": False}
    properties[f"_{PREFIX}_source_id"] = {"description": "its id there", "type": "string", "sortable": False}
    properties[f"_{PREFIX}_methods"] = {"description": "the method of each _tansaku_ value (how it was obtained)",
                                        "type": "dictionary", "sortable": False}
    for name in property_names:
        field = {"description": DESCRIPTIONS.get(name, f"stored property {name}"), "type": "float",
                 "sortable": False}
        if name in UNITS:
            field["unit"] = UNITS[name]
        properties[f"_{PREFIX}_{name}"] = field
    return {"id": "structures", "type": "info",
            "description": "crystal structures stored in this tansaku database, with their properties",
            "properties": properties, "formats": ["json"], "output_fields_by_format": {"json": list(properties)}}


def _species(site: dict) -> tuple[str, list[str], list[float]]:
    symbols = [s["element"] for s in site["species"]]
    occupancies = [float(s.get("occu", 1.0)) for s in site["species"]]
    return "".join(symbols), symbols, occupancies


def to_entry(material: Material, values: dict[str, tuple[float, str]]) -> dict[str, Any]:
    """One structure entry (JSON:API resource) from a stored material and its measured property values."""
    structure = json.loads(material.structure_json)
    sites = structure["sites"]
    species: dict[str, dict] = {}
    at_sites = []
    for site in sites:
        name, symbols, occupancies = _species(site)
        species.setdefault(name, {"name": name, "chemical_symbols": symbols, "concentration": occupancies})
        at_sites.append(name)
    elements = material.elements.split(",")
    counts = {el: 0.0 for el in elements}
    for site in sites:
        for specie in site["species"]:
            counts[specie["element"]] = counts.get(specie["element"], 0.0) + float(specie.get("occu", 1.0))
    total = sum(counts.values())
    attributes: dict[str, Any] = {
        "last_modified": material.created_at.isoformat(timespec="seconds") + "Z",
        "elements": elements,
        "nelements": material.nelements,
        "elements_ratios": [counts[el] / total for el in elements],
        "chemical_formula_descriptive": material.formula,
        "chemical_formula_reduced": material.formula_alphabetical,
        "chemical_formula_anonymous": material.formula_anonymous,
        "dimension_types": [1, 1, 1],
        "nperiodic_dimensions": 3,
        "lattice_vectors": structure["lattice"]["matrix"],
        "cartesian_site_positions": [site["xyz"] for site in sites],
        "nsites": len(sites),
        "species": list(species.values()),
        "species_at_sites": at_sites,
        "structure_features": [],
        "space_group_it_number": material.spacegroup_number,
        f"_{PREFIX}_source": material.source,
        f"_{PREFIX}_source_id": material.source_id,
        f"_{PREFIX}_methods": {name: method for name, (_, method) in values.items()},
    }
    for name, (value, _) in values.items():
        attributes[f"_{PREFIX}_{name}"] = value
    return {"id": str(material.id), "type": "structures", "attributes": attributes}


def measured_values(session: Session, ids: list[int]) -> dict[int, dict[str, tuple[float, str]]]:
    """material id → property → (first measured value, its method)."""
    found: dict[int, dict[str, tuple[float, str]]] = {i: {} for i in ids}
    query = (select(Property.material_id, Property.name, Property.value, Property.method)
             .where(Property.material_id.in_(ids), Property.value.is_not(None), is_measured())
             .order_by(Property.id))
    for material_id, name, value, method in session.execute(query):
        found[material_id].setdefault(name, (value, method))
    return found
