"""Candidate generation by substitution: labels, filters, lattice scaling, storage and duplicates (real DB)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymatgen.core import Composition, Lattice, Structure
from sqlalchemy import select

from tansaku import TansakuError
from tansaku.sources.generate import (
    GENERATED_SOURCE,
    Limits,
    Prototype,
    analyse_prototype,
    chemsys_compositions,
    load_prototypes,
    parse_site_elements,
    store_candidates,
    substitute,
)
from tansaku.store import Material, Subset, open_database
from tansaku.store.materials import ImportReport, add_structure_material
from tests.cells import rocksalt
from tests.test_cli import invoke


def perovskite(a: float = 3.905) -> Prototype:
    return Prototype("SrTiO3-cubic", Structure.from_spacegroup(
        "Pm-3m", Lattice.cubic(a), ["Sr", "Ti", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]]))


def rock_salt() -> Prototype:
    return Prototype("MgO", rocksalt(4.21, "Mg", "O").get_primitive_structure())


def test_site_labels_follow_ionic_radius_and_coordination_is_found():
    sites = analyse_prototype(perovskite())
    assert sites.anion == "O"
    assert sites.labels["A"] == "Sr" and sites.labels["B"] == "Ti" and sites.labels["Ti"] == "Ti"
    assert sites.coordination == {"Sr": 12, "Ti": 6}
    assert sites.perovskite == ("Sr", "Ti")
    assert analyse_prototype(rock_salt()).coordination == {"Mg": 6}


def test_perovskite_substitution_filters_and_scales_the_lattice():
    candidates, refused = substitute([perovskite()], parse_site_elements("A=Ca,Ba,K;B=Zr,Si,Nb"))
    made = {c.formula: c for c in candidates}
    # K1+ needs B5+ (Nb); Ca/Ba need B4+ (Zr); Si4+ is too small for an octahedron
    assert set(made) == {"CaZrO3", "BaZrO3", "KNbO3"}
    reasons = {r.formula: r.reason for r in refused}
    assert "charge-balanced" in reasons["KZrO3"] and "charge-balanced" in reasons["CaNbO3"]
    assert "octahedral factor" in reasons["CaSiO3"]
    assert "tolerance factor 1.18" in reasons["BaSiO3"]
    # Goldschmidt t by hand with Shannon radii (Ba2+ XII 1.61, Zr4+ VI 0.72, O2- VI 1.40)
    assert made["BaZrO3"].checks["tolerance_factor"] == pytest.approx((1.61 + 1.40) / (2**0.5 * (0.72 + 1.40)),
                                                                      abs=1e-3)
    # Ba and Zr are bigger than Sr and Ti: the cell grows by the mean bond-length ratio over cation sites
    expected = ((1.61 + 1.40) / (1.44 + 1.40) + (0.72 + 1.40) / (0.605 + 1.40)) / 2
    assert made["BaZrO3"].lattice_scale == pytest.approx(expected, abs=1e-3)
    assert made["BaZrO3"].structure.lattice.a == pytest.approx(3.905 * expected, rel=1e-3)
    assert made["BaZrO3"].substitution == {"Sr": "Ba", "Ti": "Zr"}


def test_anion_swap_radius_ratio_and_cell_cap():
    candidates, refused = substitute([rock_salt()], parse_site_elements("A=Ca,Be,Na"), anion="S")
    assert [c.formula for c in candidates] == ["CaS"]
    reasons = {r.formula: r.reason for r in refused}
    assert "too small for a 6-coordinated site" in reasons["BeS"]
    assert "charge-balanced" in reasons["NaS"]
    _, capped = substitute([rock_salt()], parse_site_elements("A=Ca"), limits=Limits(max_sites=1))
    assert "exceed the cap of 1" in capped[0].reason


def test_bad_requests_name_the_problem(tmp_path):
    with pytest.raises(TansakuError, match="unknown element symbol 'Xx'"):
        parse_site_elements("A=Ca,Xx")
    with pytest.raises(TansakuError, match="expected LABEL=El1"):
        parse_site_elements("A:Ca")
    # a prototype that cannot serve is refused with its reason; the other prototypes go on
    made, refused = substitute([rock_salt(), perovskite()], parse_site_elements("B=Zr"))
    assert [c.formula for c in made] == ["SrZrO3"]
    assert refused[0].prototype == "MgO" and "has no site B" in refused[0].reason
    db = open_database(tmp_path / "g.db")
    broken = tmp_path / "broken.cif"
    broken.write_text("data_nothing\n_cell_length_a 3\n")
    good = tmp_path / "MgO.json"
    good.write_text(json.dumps(rock_salt().structure.as_dict()))
    protos, refused = load_prototypes(db, ["mp-000", str(broken), str(good)])
    assert [p.label for p in protos] == ["MgO"]
    assert "no such file, material id or source id" in refused[0].reason
    assert refused[1].prototype == str(broken) and "cannot read a structure" in refused[1].reason


def test_storage_records_provenance_refuses_known_structures_and_is_idempotent(tmp_path):
    db = open_database(tmp_path / "g.db")
    known = rocksalt(5.69, "Ca", "S")
    with db.session() as session:
        add_structure_material(session, known, "file", "CaS.cif", ImportReport())
    protos = [rock_salt()]
    candidates, _ = substitute(protos, parse_site_elements("A=Ca,Sr"), anion="S")
    refused = store_candidates(db, candidates, protos, subset="sulfides")
    assert [r.formula for r in refused] == ["CaS"] and "already in the database as material 1" in refused[0].reason
    with db.session() as session:
        stored = session.scalars(select(Material).where(Material.source == GENERATED_SOURCE)).all()
        assert [m.reduced_formula for m in stored] == ["SrS"]
        assert stored[0].extra["prototype"] == "MgO"
        assert stored[0].extra["substitution"] == {"Mg": "Sr", "O": "S"}
        assert session.scalars(select(Subset.material_id).where(Subset.name == "sulfides")).all() == [stored[0].id]
    again, _ = substitute(protos, parse_site_elements("A=Sr"), anion="S")
    assert store_candidates(db, again, protos) == [] and again[0].existing
    with db.session() as session:
        assert len(session.scalars(select(Material).where(Material.source == GENERATED_SOURCE)).all()) == 1


def test_cli_generates_from_a_stored_prototype(tmp_path):
    db_path = tmp_path / "cli.db"
    db = open_database(db_path)
    with db.session() as session:
        add_structure_material(session, perovskite().structure, "file", "STO.cif", ImportReport())
    db.dispose()
    out = tmp_path / "gen.json"
    result = invoke("--db", str(db_path), "generate", "substitute", "--prototype", "1", "--site-elements",
                    "Sr=Ca,Ba;Ti=Zr,Hf", "--json", str(out), "--write-dir", str(tmp_path / "cifs"))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert sorted(g["formula"] for g in data["generated"]) == ["BaHfO3", "BaZrO3", "CaHfO3", "CaZrO3"]
    assert all(g["material_id"] for g in data["generated"])
    assert len(list((tmp_path / "cifs").glob("*.cif"))) == 4
    nothing = invoke("--db", str(db_path), "generate", "substitute", "--prototype", "1", "--site-elements", "Sr=K")
    assert nothing.exit_code == 2  # KTiO3 is not charge-balanced: nothing stored, and the exit status says so


def test_chemsys_lists_charge_balanced_compositions_and_skips_known_ones(tmp_path):
    from tansaku.sources.generate import chemsys_compositions, store_compositions

    formulas = [c.reduced_formula for c in chemsys_compositions(["Sr", "Ti", "O"], 12)]
    # Sr2+ Ti4+ O2-: SrO·n TiO2 and n SrO·TiO2 series, all containing the three elements
    assert {"SrTiO3", "Sr2TiO4", "Sr3Ti2O7", "SrTi2O5"} <= set(formulas)
    assert "SrO" not in formulas and "SrTiO2" not in formulas  # a binary, and a charge-unbalanced one
    assert all(Composition(f).num_atoms <= 12 for f in formulas)
    with_sub = [c.reduced_formula for c in chemsys_compositions(["Sr", "Ti", "O"], 12, subsystems=True)]
    assert {"SrO", "TiO2"} <= set(with_sub)
    with pytest.raises(TansakuError, match="unknown element symbol 'Qq'"):
        chemsys_compositions(["Sr", "Qq"], 5)
    db = open_database(tmp_path / "c.db")
    with db.session() as session:
        add_structure_material(session, perovskite().structure, "file", "STO.cif", ImportReport())
    ids, refused = store_compositions(db, chemsys_compositions(["Sr", "Ti", "O"], 12), subset="sto")
    assert [r.formula for r in refused] == ["SrTiO3"]
    assert len(ids) == len(formulas) - 1
    again, _ = store_compositions(db, chemsys_compositions(["Sr", "Ti", "O"], 12))
    assert sorted(again) == sorted(ids)  # stored once
    with db.session() as session:
        stored = session.scalars(select(Material).where(Material.source == GENERATED_SOURCE)).all()
        assert len(stored) == len(ids) and all(m.structure_json is None for m in stored)


def test_a_rank_letter_that_is_also_a_cation_symbol_is_refused_as_ambiguous():
    """In a Ba-Al borate, B ranks Al's site (second largest) and is boron's symbol too: neither is guessed."""
    borate = Prototype("BaAlBO4", Structure(Lattice.cubic(5.0), ["Ba", "Al", "B", "O", "O", "O", "O"],
                                            [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0], [0.25, 0.25, 0],
                                             [0.75, 0.25, 0.5], [0.25, 0.75, 0.5], [0.75, 0.75, 0]]))
    sites = analyse_prototype(borate)
    assert sites.by_radius == ["Ba", "Al", "B"]
    assert "B" not in sites.labels and sites.labels["C"] == "B" and sites.labels["Al"] == "Al"
    _, refused = substitute([borate], parse_site_elements("B=Ga"))
    assert "label B is ambiguous" in refused[0].reason
    assert "it is Al's site, and it is also the element B; write Al for the one, C for the other" in refused[0].reason
    made, _ = substitute([borate], parse_site_elements("Al=Ga"), limits=Limits(radius_ratio_slack=0.0))
    assert [c.formula for c in made] == ["BaGaBO4"]


def test_relax_leaves_candidates_without_forces_or_stress_and_records_how(tmp_path):
    """--relax: a substituted rutile (the prototype's oxygen x and c/a, scaled) relaxed with CHGNet; the stored
    cell is the relaxed one, on which CHGNet finds neither forces nor stress, and its record says so, with the
    space group it kept."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from tansaku.features.mlip import potential

    rutile = Structure.from_spacegroup("P4_2/mnm", Lattice.tetragonal(4.594, 2.959), ["Ti", "O"],
                                       [[0, 0, 0], [0.305, 0.305, 0]])
    db_path = tmp_path / "relax.db"
    db = open_database(db_path)
    with db.session() as session:
        add_structure_material(session, rutile, "file", "TiO2.cif", ImportReport())
    db.dispose()
    made, _ = substitute([Prototype("TiO2", rutile)], parse_site_elements("Ti=Sn,Ge"))
    guess = {c.formula: c.structure for c in made}
    out = tmp_path / "gen.json"
    result = invoke("--db", str(db_path), "generate", "substitute", "--prototype", "1", "--site-elements", "Ti=Sn,Ge",
                    "--relax", "--json", str(out))
    assert result.exit_code == 0, result.output
    assert "ΔV relaxed" in result.output
    generated = {g["formula"]: g for g in json.loads(out.read_text())["generated"]}
    assert set(generated) == {"SnO2", "GeO2"}

    def strain(structure):  # CHGNet's largest force (eV/Å) and largest stress component (GPa)
        p = potential().predict_structure(structure, task="efs")
        return float(np.linalg.norm(p["f"], axis=1).max()), float(np.abs(p["s"]).max())

    with open_database(db_path).session() as session:
        for formula, g in generated.items():
            material = session.get(Material, g["material_id"])
            assert material.extra["relaxed_by"] == "chgnet-0.3.0" and material.extra["relax_converged"] is True
            stored = material.structure()
            assert SpacegroupAnalyzer(stored, symprec=1e-5).get_space_group_symbol() == "P4_2/mnm", formula
            assert material.extra["relax_space_group"] == "P4_2/mnm"
            assert stored.volume / guess[formula].volume - 1 == pytest.approx(material.extra["relax_volume_change"],
                                                                            abs=1e-6)
            force, stress = strain(stored)
            assert force <= 0.05 + 1e-3 and stress < 1.0, (formula, force, stress)
            before_force, before_stress = strain(guess[formula])
            assert before_force > 3 * force or before_stress > 3 * stress, (formula, before_force, before_stress)


def test_cu_plus_delafossites_serve_as_prototypes_and_are_generated():
    # pymatgen's common states hold only Cu2+; CuAlO2 (p-type transparent conductor, mp-3748 in the reference
    # database) was refused as a prototype and as a candidate
    delafossite = Prototype("CuAlO2", Structure.from_spacegroup(
        "R-3m", Lattice.hexagonal(2.858, 16.958), ["Cu", "Al", "O"], [[0, 0, 0], [0, 0, 0.5], [0, 0, 0.1078]]
    ).get_primitive_structure())
    assert analyse_prototype(delafossite).coordination == {"Al": 6, "Cu": 2}  # Cu+ linear between O layers
    candidates, refused = substitute([delafossite], parse_site_elements("Al=Ga,In"))
    assert {c.formula for c in candidates} == {"GaCuO2", "InCuO2"} and not refused
    assert candidates[0].oxidation_states["Cu"] == 1
    assert {"Cu2O", "AlCuO2"} <= {c.reduced_formula for c in chemsys_compositions(["Cu", "Al", "O"], 4, True)}
