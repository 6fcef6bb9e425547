import json
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from tansaku import TansakuError
from tansaku.chemistry.structures import read_structure
from tansaku.sources.structures import import_structure_files
from tansaku.store.tables import Material, Subset
from tests.cells import rocksalt


def test_cif_poscar_and_json_import_and_identical_structures_are_linked(db, tmp_path):
    mgo = rocksalt(4.21, "Mg")
    mgo.to(filename=str(tmp_path / "MgO.cif"))
    mgo.to(filename=str(tmp_path / "POSCAR"), fmt="poscar")
    (tmp_path / "CaO.json").write_text(json.dumps(rocksalt(4.81, "Ca").as_dict()))
    report = import_structure_files(db, [tmp_path / "MgO.cif", tmp_path / "POSCAR", tmp_path / "CaO.json"])
    assert report.added == 3 and report.linked == 1 and not report.errors
    with db.session() as session:
        rows = {m.extra["file"]: m for m in session.scalars(select(Material))}
    assert rows["POSCAR"].duplicate_of == rows["MgO.cif"].id
    assert rows["CaO.json"].duplicate_of is None and rows["CaO.json"].spacegroup_number == 225
    again = import_structure_files(db, [tmp_path / "MgO.cif"])
    assert again.added == 0 and again.existing == 1


def test_disordered_structure_refused_unless_allowed(db, tmp_path):
    disordered = rocksalt(4.21, "Mg")
    disordered.replace_species({"Mg": {"Mg": 0.5, "Ca": 0.5}})
    disordered.to(filename=str(tmp_path / "MgCaO.cif"))
    report = import_structure_files(db, [tmp_path / "MgCaO.cif"])
    assert report.added == 0
    assert "disordered or partially occupied" in report.errors[0][1]
    assert import_structure_files(db, [tmp_path / "MgCaO.cif"], allow_disorder=True).added == 1


def test_unreadable_files_are_reported_by_name(db, tmp_path):
    (tmp_path / "bad.cif").write_text("data_x\n_cell_length_a nonsense\n")
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "empty.json").write_text(json.dumps({"hello": 1}))
    rocksalt(4.21, "Mg").to(filename=str(tmp_path / "good.cif"))
    files = [tmp_path / n for n in ("bad.cif", "bad.json", "empty.json", "good.cif")]
    report = import_structure_files(db, files)
    errors = dict(report.errors)
    assert "cannot read a structure" in errors[str(tmp_path / "bad.cif")]
    assert "malformed JSON" in errors[str(tmp_path / "bad.json")]
    assert "holds no pymatgen structure" in errors[str(tmp_path / "empty.json")]
    assert report.added == 1
    with pytest.raises(TansakuError, match="no such file"):
        read_structure(tmp_path / "absent.cif")
    # a file that exists but cannot be read (the kernel refuses /proc/self/mem at offset 0): refused, not a traceback
    unreadable = import_structure_files(db, [Path("/proc/self/mem"), tmp_path / "good.cif"])
    assert unreadable.errors == [("/proc/self/mem", "cannot be read (Input/output error)")] and unreadable.existing == 1


def test_species_come_from_the_user_never_from_a_default(db, tmp_path):
    """A VASP 4 POSCAR names no elements: refused (pymatgen would read H and He), read with --species; an
    unknown symbol is refused before anything is stored; pymatgen's own reason is quoted."""
    from typer.testing import CliRunner

    from tansaku.cli.app import app
    from tansaku.cli.common import State
    from tansaku.store import Material

    corpus = Path(__file__).parent / "data" / "fuzz" / "structures"
    vasp4 = tmp_path / "POSCAR"
    vasp4.write_text((corpus / "POSCAR_vasp4").read_text())
    with pytest.raises(TansakuError, match="names no elements .*--species"):
        read_structure(vasp4)
    assert read_structure(vasp4, ["Mg", "O"]).composition.reduced_formula == "MgO"
    State.db = None
    runner = CliRunner()
    refused = runner.invoke(app, ["--db", db.url, "import", "structures", str(vasp4),
                                  str(corpus / "unknown_element.cif")])
    assert refused.exit_code == 2 and "names no elements" in refused.stderr and "'Xx'" in refused.stderr
    with db.session() as session:
        assert session.query(Material).count() == 0
    done = runner.invoke(app, ["--db", db.url, "import", "structures", str(vasp4), "--species", "Mg,O"])
    assert done.exit_code == 0, done.output
    with db.session() as session:
        assert [m.reduced_formula for m in session.query(Material)] == ["MgO"]
    with pytest.raises(TansakuError, match="pymatgen says: .*Occupancy 1.556 exceeded tolerance"):
        read_structure(corpus / "overfull_occupancy.cif")


PLACEHOLDER_BLOCK = """data_{name}
_cell_length_a 4.21(1)
_cell_length_b 4.21(1)
_cell_length_c 4.21(1)
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
? ? ? ? ?
"""


def several_structures_cif(path: Path, structures: int = 3) -> Path:
    """A journal-style CIF: a 'global' block with no atoms, two structures, a block whose element is made up, and
    a block listing atom sites as '?' only (as a Pauling File CIF's published-cell block does): not a structure."""
    blocks = [rocksalt(4.21, "Mg").to(fmt="cif").replace("data_MgO", "data_I"),
              rocksalt(4.81, "Ca").to(fmt="cif").replace("data_CaO", "data_II"),
              rocksalt(4.5, "Sr").to(fmt="cif").replace("data_SrO", "data_III").replace(" Sr", " Xq")][:structures]
    path.write_text("data_global\n_journal_name_full 'Made up'\n_publ_section_title 'Three oxides'\n\n"
                    + "\n".join(blocks) + "\n" + PLACEHOLDER_BLOCK.format(name="I-published_cell"))
    return path


def test_every_block_of_a_cif_and_every_item_of_a_json_list_is_a_material(db, tmp_path):
    """pymatgen reads only a file's first structure; each block is imported on its own, a bad one refused by name,
    and a second import adds nothing."""
    import gzip

    cif = several_structures_cif(tmp_path / "oxides.cif")
    listed = tmp_path / "two.json.gz"
    two = [rocksalt(4.3, "Mg").as_dict(), rocksalt(5.16, "Ba").as_dict()]
    listed.write_bytes(gzip.compress(json.dumps(two).encode()))
    report = import_structure_files(db, [cif, listed])
    assert report.added == 4, report.as_dict()
    assert [item for item, _ in report.errors] == [f"{cif}#III"]
    assert report.errors[0][1] == "unknown element symbol(s) 'Xq'", report.errors
    with db.session() as session:
        stored = {m.source_id: (m.reduced_formula, m.extra) for m in session.scalars(select(Material))}
    assert stored == {f"{cif.resolve()}#I": ("MgO", {"file": "oxides.cif", "entry": "I"}),
                      f"{cif.resolve()}#II": ("CaO", {"file": "oxides.cif", "entry": "II"}),
                      f"{listed.resolve()}#0": ("MgO", {"file": "two.json.gz", "entry": "0"}),
                      f"{listed.resolve()}#1": ("BaO", {"file": "two.json.gz", "entry": "1"})}
    again = import_structure_files(db, [cif, listed])
    assert again.added == 0 and again.existing == 4
    # one structure among blocks without atom positions is a file holding one structure: no #block, no error
    single = import_structure_files(db, [several_structures_cif(tmp_path / "one.cif", structures=1)])
    assert single.added == 1 and not single.errors, single.as_dict()
    with db.session() as session:
        assert session.scalar(select(Material).where(Material.source_id == str((tmp_path / "one.cif").resolve())))


def test_predictions_and_prototypes_take_every_structure_of_a_file(db, tmp_path):
    from tansaku.models.predictor import read_inputs
    from tansaku.sources.generate import load_prototypes

    cif = several_structures_cif(tmp_path / "oxides.cif")
    items, labels, refused = read_inputs(["SrTiO3"], [cif])
    assert labels == ["SrTiO3", f"{cif}#I", f"{cif}#II"]
    assert [s.composition.reduced_formula for s in items[1:]] == ["MgO", "CaO"]
    assert len(refused) == 1 and refused[0].startswith(f"{cif}#III: ")
    prototypes, refusals = load_prototypes(db, [str(cif)])
    assert [p.label for p in prototypes] == ["oxides#I", "oxides#II"]
    assert [r.prototype for r in refusals] == [f"{cif}#III"]


MGO_RELAX_INPUT = """&control
  calculation = 'relax', prefix = 'mgo', pseudo_dir = '{pseudos}', outdir = '{outdir}', nstep = 30
/
&system
  ibrav = 0, A = 4.21, nat = 2, ntyp = 2, ecutwfc = 25
/
&electrons
  conv_thr = 1e-8
/
&ions
/
ATOMIC_SPECIES
Mg 24.305 Mg-sp.upf
O 15.999 O.upf
CELL_PARAMETERS alat
  0.0 0.5 0.5
  0.5 0.0 0.5
  0.5 0.5 0.0
ATOMIC_POSITIONS crystal
Mg 0.0 0.0 0.0
O 0.46 0.5 0.5
K_POINTS automatic
2 2 2 0 0 0
"""


@pytest.fixture(scope="module")
def mgo_relaxation(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A real pw.x relaxation of MgO with O displaced (about a second): its input, printed output and XML; run
    once for both database back ends."""
    import subprocess

    from tests.conftest import PSEUDOS, need_quantum_espresso, need_shared

    need_quantum_espresso()
    pseudos = need_shared(PSEUDOS)
    folder = tmp_path_factory.mktemp("pw")
    given = folder / "mgo.in"
    given.write_text(MGO_RELAX_INPUT.format(pseudos=pseudos, outdir=folder / "out"))
    printed = folder / "mgo.out"
    with given.open() as stdin, printed.open("w") as stdout:
        subprocess.run(["pw.x"], stdin=stdin, stdout=stdout, cwd=folder, check=True, timeout=300)
    return given, printed, folder / "out" / "mgo.xml"


def test_quantum_espresso_files_are_structures_an_output_its_last(db, tmp_path, mgo_relaxation):
    """A pw.x relaxation's input, printed output and XML: the input gives the cell it starts from (A = ... with
    CELL_PARAMETERS alat, which ASE alone misreads), the two outputs the relaxed one; an ibrav != 0 input is refused
    with what to give instead."""
    given, printed, xml = mgo_relaxation
    start, relaxed, from_xml = (read_structure(p) for p in (given, printed, xml))
    assert start.lattice.abc == pytest.approx([4.21 / 2**0.5] * 3) and start[1].frac_coords[0] == pytest.approx(0.46)
    assert relaxed.lattice.abc == pytest.approx(start.lattice.abc, abs=1e-4)  # 'relax' keeps the cell
    moved = abs(relaxed[1].frac_coords[0] - 0.46)
    assert 0.005 < moved < 0.05, relaxed  # the last structure, not the first: O went towards 0.5
    assert np.allclose(relaxed.frac_coords, from_xml.frac_coords, atol=1e-4)
    si = tmp_path / "si.in"
    si.write_text(MGO_RELAX_INPUT.replace("ibrav = 0, A = 4.21", "ibrav = 2, celldm(1) = 10.2"))
    report = import_structure_files(db, [given, printed, xml, si])
    assert report.added == 3, report.as_dict()
    assert report.errors == [(str(si), "a pw.x input with ibrav = 2; give its cell as CELL_PARAMETERS (ibrav = 0), "
                                       "or import the run's output (the printed .out or the XML), which holds the "
                                       "cell as vectors")]


def test_the_xml_of_an_unfinished_pw_run_is_refused_with_what_to_import_instead(tmp_path, mgo_relaxation):
    """pw.x's XML without its <output> (a run that did not finish) holds no result: refused by name, pointing at
    the input file, where it was read by the workflows' XML parser (now below it, in chemistry.structures)."""
    given, _, xml = mgo_relaxation
    text = xml.read_text()
    unfinished = tmp_path / "killed.xml"
    unfinished.write_text(text[:text.index("<output>")] + text[text.index("</output>") + len("</output>"):])
    with pytest.raises(TansakuError, match=r"killed.xml: the pw.x XML has no output structure \(the run did not "
                                           r"finish\); import its input file instead"):
        read_structure(unfinished)
    assert read_structure(given).composition.reduced_formula == "MgO"


def test_a_directory_stands_for_the_structure_files_under_it(db, tmp_path):
    folder = tmp_path / "export"
    (folder / "nested").mkdir(parents=True)
    (folder / ".cache").mkdir()
    rocksalt(4.21, "Mg").to(filename=str(folder / "MgO.cif"))
    rocksalt(4.81, "Ca").to(filename=str(folder / "nested" / "POSCAR"), fmt="poscar")
    rocksalt(5.16, "Ba").to(filename=str(folder / ".cache" / "BaO.cif"))  # hidden: left out
    (folder / "README.txt").write_text("not a structure")
    several_structures_cif(folder / "nested" / "oxides.cif")
    (tmp_path / "empty").mkdir()
    report = import_structure_files(db, [folder, tmp_path / "empty"], subset="mine")
    with db.session() as session:
        stored = sorted(m.source_id.removeprefix(str(folder.resolve())) for m in session.scalars(select(Material)))
        members = session.scalar(select(func.count()).select_from(Subset).where(Subset.name == "mine"))
    assert stored == ["/MgO.cif", "/nested/POSCAR", "/nested/oxides.cif#I", "/nested/oxides.cif#II"]
    assert members == 4  # every material imported, in the subset --subset names
    assert [item for item, _ in report.errors] == [f"{folder}/nested/oxides.cif#III", str(tmp_path / "empty")]
    assert report.errors[1][1].startswith("a directory with no structure files (*.cif, ")


def test_extended_xyz_frames_are_structures_and_a_molecule_is_refused(db, tmp_path):
    """An extended XYZ trajectory (the format of machine-learned potentials' data) gives a material per frame."""
    import ase.io
    from ase.build import molecule
    from pymatgen.io.ase import AseAtomsAdaptor

    frames = [AseAtomsAdaptor.get_atoms(rocksalt(a, "Mg")) for a in (4.2, 4.25, 4.3)]
    ase.io.write(tmp_path / "md.extxyz", frames, format="extxyz")
    ase.io.write(tmp_path / "water.xyz", molecule("H2O"), format="extxyz")
    report = import_structure_files(db, [tmp_path / "md.extxyz", tmp_path / "water.xyz"])
    assert report.added == 3, report.as_dict()
    assert report.errors == [(str(tmp_path / "water.xyz"), "no periodic cell (a molecule, or an XYZ without "
                                                           "Lattice= in its comment line)")]
    with db.session() as session:
        volumes = {m.source_id.rsplit("#", 1)[1]: m.structure().volume for m in session.scalars(select(Material))}
    assert volumes == pytest.approx({"0": 4.2**3, "1": 4.25**3, "2": 4.3**3})
