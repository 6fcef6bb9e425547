"""Settings, k-meshes, pseudopotential families, input writing and band-gap logic (no DFT run)."""

import json

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from tansaku import TansakuError
from tansaku.dft.magnetism import SpinSetup, spin_setup
from tansaku.dft.pseudos import load_family
from tansaku.dft.qe.inputs import ph_input, pw_input
from tansaku.dft.qe.parsers import (
    band_gap,
    cpu_seconds,
    cpu_seconds_so_far,
    detect_errors,
    qe_error_message,
    read_ph_dielectric,
)
from tansaku.dft.settings import kmesh, parse_hubbard_u, preset, standard_cell
from tests.cells import rocksalt
from tests.conftest import PSEUDOS, need_shared


def mgo(a=4.21):
    return rocksalt(a, "Mg", "O")


def test_kmesh_from_spacing_is_even_and_follows_reciprocal_lengths():
    cell = Structure(Lattice.orthorhombic(3.0, 6.0, 12.0), ["Mg"], [[0, 0, 0]])
    # |b| = 2π/a = 2.094, 1.047, 0.524 Å⁻¹; spacing 0.25 → 9, 5, 3 → rounded up to even
    assert kmesh(cell, 0.25) == (10, 6, 4)
    assert kmesh(cell, 0.25, even=False) == (9, 5, 3)


def test_a_probe_is_compared_with_the_last_mesh_it_refines_in_every_direction():
    """Wurtzite ZnO's probes from 0.4 Å⁻¹ go 6x6x4, 8x8x4, 10x10x6, 12x12x6, 14x14x8: 12x12x6 refines 10x10x6
    only in-plane, and with U their ε∞ agreed to 0.7 % while the 1/N_k limit lay 1.5 % below; it must be compared
    with 8x8x4 (5 % apart), and 14x14x8 with 12x12x6."""
    from tansaku.workflows.kmesh_convergence import Probe, close_enough, probe_spacings, refined_from

    zno = Structure(Lattice.hexagonal(3.29, 5.30), ["Zn", "Zn", "O", "O"],
                    [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, 0.38], [2 / 3, 1 / 3, 0.88]])
    spacings = probe_spacings(zno, 0.4)
    meshes = [kmesh(zno, s) for s in spacings[:5]]
    assert meshes == [(6, 6, 4), (8, 8, 4), (10, 10, 6), (12, 12, 6), (14, 14, 8)]
    eps = [5.275, 4.921, 4.716, 4.685, 4.660]  # measured with U = 14.6 eV (kmesh_probes.md)
    probes = [Probe(s, m, None, 1.23, e, 2.1, 0.0) for s, m, e in zip(spacings, meshes, eps, strict=False)]
    assert refined_from(probes[:1]) is None and refined_from(probes[:2]) is None  # 8x8x4 keeps c
    assert refined_from(probes[:3]) is probes[1]
    assert refined_from(probes[:4]) is probes[1]  # not 10x10x6
    assert refined_from(probes[:5]) is probes[3]
    assert close_enough(probes[2], probes[3], 0.01, 0.05)  # what the consecutive rule settled on
    assert not close_enough(refined_from(probes[:4]), probes[3], 0.01, 0.05)


def test_standard_cell_keeps_the_crystal():
    conventional = mgo()
    primitive = standard_cell(conventional)
    assert len(primitive) == 2
    assert primitive.volume == pytest.approx(conventional.volume / 4)
    assert primitive.matches(conventional)


def test_presets_and_overrides():
    assert preset("standard").ecutwfc_default == 80
    assert preset("test", {"ecutwfc": 20}).ecutwfc == 20
    with pytest.raises(TansakuError, match="unknown setting"):
        preset("test", {"ecutwf": 20})
    with pytest.raises(TansakuError, match="unknown preset 'fast'"):
        preset("fast")
    # each setting takes values of its own kind: a typo in a boolean must not pass as a (true) string
    with pytest.raises(TansakuError, match="setting masses: expected true or false, got 'maybe'"):
        preset("test", {"masses": "maybe"})
    with pytest.raises(TansakuError, match="setting kspacing: expected float, got 'fine'"):
        preset("test", {"kspacing": "fine"})
    with pytest.raises(TansakuError, match="setting relax_nstep: expected int, got 2.5"):
        preset("test", {"relax_nstep": 2.5})
    for bad in ("nan", "inf"):  # as `--set` and TOML read them: floats, which no k-mesh or cut-off can be
        with pytest.raises(TansakuError, match=f"setting kspacing: expected a finite number, got {bad}"):
            preset("test", {"kspacing": float(bad)})
    assert preset("test", {"kspacing": 1, "k_converge": None, "hybrid": "nsc", "masses": False}).kspacing == 1


def test_hubbard_u_from_text_or_table_and_bad_values():
    assert parse_hubbard_u("Zn:5, Cu:4.5") == {"Zn": 5.0, "Cu": 4.5}
    assert parse_hubbard_u({"Ni": 3}) == {"Ni": 3.0}
    assert parse_hubbard_u("") == {} and parse_hubbard_u(None) == {}
    assert parse_hubbard_u("reference") == {"Cr": 3.0, "Mn": 3.0, "Fe": 3.0, "Co": 3.0, "Ni": 5.0, "Cu": 5.0,
                                            "Zn": 5.0, "Eu": 5.0}
    assert preset("test", {"hubbard_u": "Zn:5"}).hubbard_u == {"Zn": 5.0}
    for bad, message in (("Zn5", "expected 'Element:U_eV"), ("Qq:5", "'Qq' is not an element"),
                         ("Zn:five", "U of Zn must be a number"),
                         ("Zn:-1", "must be a finite, non-negative number, got -1.0"),
                         ("Zn:nan", "must be a finite, non-negative number, got nan"),
                         (5, "expected 'Element:U_eV,...' or a table")):
        with pytest.raises(TansakuError, match=message):
            parse_hubbard_u(bad)


def test_settings_for_elements_keep_only_the_u_a_material_uses():
    plain, with_zn = preset("standard"), preset("standard", {"hubbard_u": "Zn:12,Cu:0"})
    assert with_zn.for_elements({"Mg", "O"}) == plain.for_elements({"Mg", "O"})  # MgO's run is unchanged
    assert with_zn.for_elements({"Zn", "O"}).hubbard_u == {"Zn": 12.0}
    assert with_zn.for_elements({"Zn", "O"}) != plain.for_elements({"Zn", "O"})
    # any other override changes every material
    assert preset("standard", {"ecutwfc": 90}).for_elements({"Mg", "O"}) != plain.for_elements({"Mg", "O"})


def test_hubbard_u_reaches_pw_input_for_the_species_present(tmp_path):
    family = load_family(need_shared(PSEUDOS))
    zno = Structure.from_spacegroup("P6_3mc", Lattice.hexagonal(3.25, 5.21), ["Zn", "O"],
                                    [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.38]])
    settings = preset("test", {"hubbard_u": "Zn:5,Cu:5"})
    text = pw_input(zno, "scf", settings, family, "scf", tmp_path)
    # species are written in sorted order (O, Zn): Zn is species 2; Cu is not in the cell
    assert "lda_plus_u = .true." in text and "Hubbard_U(2) = 5" in text and "Hubbard_U(1)" not in text
    assert "lda_plus_u" not in pw_input(mgo(), "scf", settings, family, "scf", tmp_path)


def test_pseudo_family_from_standard_json_and_from_file_names(tmp_path):
    family = load_family(need_shared(PSEUDOS))
    assert family.file_for("Mg") == "Mg-sp.upf" and family.valence("Mg") == 10
    with pytest.raises(TansakuError, match="no pseudopotential for Qq, Zz in family"):
        family.check_covers({"Qq", "Zz", "O"}, "test")
    assert len(family.checksums({"Mg", "O"})["O"]) == 64
    plain = tmp_path / "fam"
    plain.mkdir()
    (plain / "O.upf").write_bytes((PSEUDOS / "O.upf").read_bytes())
    (plain / "Mg.pbe-nc.UPF").write_bytes((PSEUDOS / "Mg.upf").read_bytes())
    assert load_family(plain).files == {"O": "O.upf", "Mg": "Mg.pbe-nc.UPF"}
    (plain / "standard.json").write_text(json.dumps({"O": "missing.upf"}))
    with pytest.raises(TansakuError, match="names missing files"):
        load_family(plain)
    for broken_map, message in (("{not json", "standard.json: malformed JSON"),
                                ('["O.upf"]', "standard.json: expected a JSON object mapping element symbols")):
        (plain / "standard.json").write_text(broken_map)
        with pytest.raises(TansakuError, match=message):
            load_family(plain)
    (plain / "standard.json").unlink()
    (plain / "standard.json").symlink_to("/proc/self/mem")  # exists, cannot be read
    with pytest.raises(TansakuError, match=r"standard.json: cannot be read \(Input/output error\)"):
        load_family(plain)
    (plain / "standard.json").unlink()
    (plain / "Mg.pbe-nc.UPF").write_bytes(b"")  # a truncated download
    broken = load_family(plain)
    with pytest.raises(TansakuError, match="MgO run: .*Mg.pbe-nc.UPF: the pseudopotential file for Mg .* is empty"):
        broken.check_covers({"Mg", "O"}, "MgO run")
    with pytest.raises(TansakuError, match="is empty"):
        broken.valence("Mg")


def test_pw_and_ph_inputs_carry_settings_and_overrides(tmp_path):
    family = load_family(need_shared(PSEUDOS))
    settings = preset("standard")
    text = pw_input(standard_cell(mgo()), "scf", settings, family, "scf", tmp_path,
                    {"electrons": {"mixing_beta": 0.3}})
    assert "input_dft = 'pbesol'" in text and "ecutwfc = 80" in text and "ecutrho = 320" in text
    assert "mixing_beta = 0.3" in text and "occupations = 'fixed'" in text
    assert "nbnd = 16" in text  # 16 valence electrons → 8 occupied + 8 empty bands
    assert "Mg 24.305000 Mg-sp.upf" in text
    # the SCF before DFPT is converged tightly, each relaxation step 100x less (2 atoms)
    assert "conv_thr = 2e-12" in text
    relax = pw_input(standard_cell(mgo()), "vc-relax", settings, family, "relax", tmp_path)
    assert "conv_thr = 2e-10" in relax and "occupations = 'smearing'" in relax
    ph = ph_input(settings, "scf", tmp_path, "gamma.dyn", {"inputph": {"search_sym": False}})
    assert "epsil = .true." in ph and "search_sym = .false." in ph and ph.endswith("0.0 0.0 0.0\n")


def test_band_gap_direct_indirect_and_metal():
    eig = np.array([[-5.0, 1.0, 2.5], [-5.0, 1.5, 3.0]])  # 4 electrons → bands 0,1 occupied
    gap = band_gap(eig, 4)
    assert gap.gap == pytest.approx(1.0) and not gap.direct
    assert band_gap(np.array([[-5.0, 1.0, 3.0]]), 4).direct
    assert band_gap(np.array([[-5.0, 1.0, 0.5], [-5, 0.2, 2]]), 4).is_metal
    with pytest.raises(TansakuError, match="no empty band"):
        band_gap(eig, 6)


def test_spin_polarized_gap_takes_both_channels():
    # per k-point: 4 spin-up bands, then 4 spin-down; 5 electrons with a moment of 1: 3 up and 2 down filled
    eig = np.array([[-5.0, 1.0, 2.0, 4.0, -4.0, 1.5, 3.0, 5.0], [-5.0, 1.2, 2.5, 3.5, -4.0, 1.8, 2.8, 6.0]])
    gap = band_gap(eig, 5, lsda=True, magnetization=1.0)
    # valence: max(up band 3, down band 2) = max(2.5, 1.8); conduction: min(up band 4, down band 3) = min(3.5, 2.8)
    assert gap.vbm == pytest.approx(2.5) and gap.cbm == pytest.approx(2.8) and gap.gap == pytest.approx(0.3)
    assert gap.direct  # both at the second k-point
    assert band_gap(eig, 5, lsda=True, magnetization=0.6).is_metal  # a fractional filling has no gap
    # a moment of -1 fills 2 up and 3 down bands: the down valence band (3.0) lies above the up conduction band
    # (2.0), so the channels must not be swapped or merged
    assert band_gap(eig, 5, lsda=True, magnetization=-1.0).is_metal
    # zero moment, 6 electrons: 3 up and 3 down; VBM 3.0 (down, k-point 0), CBM 3.5 (up, k-point 1): indirect
    even = band_gap(eig, 6, lsda=True, magnetization=0.0)
    assert even.vbm == pytest.approx(3.0) and even.cbm == pytest.approx(3.5) and not even.direct


def test_open_shell_oxides_get_a_fixed_ferromagnetic_moment(tmp_path):
    family = load_family(need_shared(PSEUDOS))
    nio = rocksalt(4.18, "Ni", "O")
    fe2o3 = Structure.from_spacegroup("R-3c", Lattice.hexagonal(5.03, 13.75), ["Fe", "O"],
                                      [[0, 0, 0.355], [0.306, 0, 0.25]]).get_primitive_structure()
    assert spin_setup(nio.get_primitive_structure(), "auto") == SpinSetup(2, ("Ni",))
    assert spin_setup(fe2o3, "auto") == SpinSetup(20, ("Fe",))  # 4 Fe3+ (d5) in the rhombohedral cell
    assert spin_setup(nio, "off") is None and spin_setup(mgo(), "auto") is None
    # mixed valence: two Fe3O4 units, each Fe2+ (d6: 4 unpaired) + 2 Fe3+ (d5: 5 each)
    fe3o4 = Structure(Lattice.cubic(6.0), ["Fe"] * 6 + ["O"] * 8, np.random.default_rng(0).random((14, 3)))
    assert spin_setup(fe3o4, "auto") == SpinSetup(2 * (4 + 2 * 5), ("Fe",))
    text = pw_input(nio.get_primitive_structure(), "scf", preset("test"), family, "scf", tmp_path)
    # species sorted (Ni, O): Ni is species 1; 18 + 6 = 24 electrons, 13 up and 11 down, + 8 empty bands
    assert "nspin = 2" in text and "tot_magnetization = 2" in text and "starting_magnetization(1) = 0.5" in text
    assert "starting_magnetization(2)" not in text and "nbnd = 21" in text
    assert "nspin" not in pw_input(nio.get_primitive_structure(), "scf", preset("test", {"spin": "off"}), family,
                                   "scf", tmp_path)
    with pytest.raises(TansakuError, match="spin='up'"):
        preset("test", {"spin": "up"})


def test_error_detection_in_logs():
    log = "     convergence NOT achieved after 2 iterations: stopping\n"
    assert detect_errors(log) == ["scf_not_converged"]
    box = " %%%%\n     Error in routine electrons (1):\n     charge is wrong\n %%%%\n"
    assert qe_error_message(box) == "charge is wrong (routine electrons)"
    assert "charge_wrong" in detect_errors(box)


def test_ph_not_converged_handler_gives_more_iterations_than_the_attempt_ran_out_of():
    """It once set niter_ph 200 whatever the attempt had: a user's niter_ph 500 came back lowered."""
    from tansaku.workflows.handlers import ph_not_converged
    from tansaku.workflows.state import StepState

    def log(iterations: int) -> str:
        lines = (f"      iter # {i:3d} total cpu time :     {0.1 * i:.1f} secs   av.it.:   9.0\n"
                 for i in range(1, iterations + 1))
        return "".join(lines) + "\n     No convergence has been achieved \n"

    users = StepState(step="phonon")
    assert ph_not_converged(users, log(500)) == {"inputph": {"alpha_mix(1)": 0.3, "niter_ph": 1000}}
    assert ph_not_converged(StepState(step="phonon"), log(100))["inputph"]["niter_ph"] == 200  # QE's default
    assert ph_not_converged(StepState(step="phonon"), log(2))["inputph"]["niter_ph"] == 200


def test_cpu_time_from_the_last_timing_line_in_every_format_qe_prints():
    assert cpu_seconds("     PWSCF        :     13.40s CPU     14.05s WALL\n") == pytest.approx(13.4)
    # ph.x repeats its timing line; the last one is the run's total
    log = "     PHONON       :      0.14s CPU      0.15s WALL\n     PHONON       :  1m50.23s CPU  2m 1.10s WALL\n"
    assert cpu_seconds(log) == pytest.approx(110.23)
    assert cpu_seconds("     PHONON       :  1h 2m CPU  1h 3m WALL\n") == pytest.approx(3720)
    assert cpu_seconds("     PWSCF        :  1d 2h 3m CPU  1d 2h 4m WALL\n") == pytest.approx(93780)
    assert cpu_seconds("     iteration #  3     ecut=    30.00 Ry\n") is None  # killed before the end



def test_cpu_time_so_far_of_a_killed_run_is_its_last_running_total():
    pw = ("     total cpu time spent up to now is        1.2 secs\n\n     iteration #  2\n"
          "     total cpu time spent up to now is       31.7 secs\n     iteration #  3     ecut=    30.00 Ry\n")
    assert cpu_seconds(pw) is None and cpu_seconds_so_far(pw) == pytest.approx(31.7)
    # ph.x: an earlier representation's timing line, then the running total of the one it was killed in
    ph = ("     PHONON       :  1m40.00s CPU  1m45.00s WALL\n"
          "      iter #   1 total cpu time :   112.5 secs   av.it.:   5.0\n"
          "      iter #   2 total cpu time :   130.0 secs   av.it.:   9.3\n")
    assert cpu_seconds(ph) == pytest.approx(100.0) and cpu_seconds_so_far(ph) == pytest.approx(130.0)
    finished = pw + "     PWSCF        :     40.00s CPU     41.05s WALL\n"
    assert cpu_seconds_so_far(finished) == pytest.approx(40.0)
    assert cpu_seconds_so_far("     Program PWSCF v.7.2 starts on  5Dec2026\n") is None

def test_dielectric_from_a_ph_log_without_phonons_and_a_log_cut_short():
    log = """
          Dielectric constant in cartesian axis

          (       3.478048423       0.000000000       0.000000000 )
          (       0.000000000       3.478048423       0.000000000 )
          (       0.000000000       0.000000000       3.578048423 )

          Effective charges (d Force / dE) in cartesian axis

           atom      1   Mg
      Ex  (        2.01675        0.00000       -0.00000 )
      Ey  (       -0.00000        2.01675       -0.00000 )
      Ez  (       -0.00000       -0.00000        2.01675 )
           atom      2   O
      Ex  (       -2.08102       -0.00000       -0.00000 )
      Ey  (       -0.00000       -2.08102       -0.00000 )
      Ez  (       -0.00000        0.00000       -2.08102 )

     PHONON       :      3.13s CPU      3.38s WALL
"""
    eps, born = read_ph_dielectric(log)
    assert eps[2, 2] == pytest.approx(3.578048423) and born.shape == (2, 3, 3)
    assert born[1, 0, 0] == pytest.approx(-2.08102)
    with pytest.raises(TansakuError, match="cut short"):
        read_ph_dielectric(log[: log.index("Ez  (       -0.00000        0.00000")])
    with pytest.raises(TansakuError, match="no dielectric constant"):
        read_ph_dielectric("     Electric Fields Calculation\n")
