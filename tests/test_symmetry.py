"""pw.x finds every symmetry operation of the cells we give it, whatever the orientation the user's file had
(issue 34): one oxide per crystal system from the reference database, turned by an arbitrary rotation first."""

import json
import subprocess

import numpy as np
import pytest
import spglib
from pymatgen.core import Lattice, Structure
from scipy.spatial.transform import Rotation

from tansaku.dft.pseudos import load_family
from tansaku.dft.qe.inputs import pw_input
from tansaku.dft.qe.parsers import symmetry_operations
from tansaku.dft.settings import preset, standard_frame, to_input_frame
from tests.conftest import OXI_DB, PSEUDOS, need_shared

ONE_PER_SYSTEM = {  # crystal system: a small oxide of the reference database
    "cubic": "mp-1265",  # MgO, Fm-3m
    "hexagonal": "mp-2133",  # ZnO, P6_3mc (screw axis: fractional translations)
    "trigonal": "mp-5175",  # NaInO2, R-3m (pw.x found 4 of 12 operations in pymatgen's primitive cell)
    "tetragonal": "mp-856",  # SnO2, P4_2/mnm
    "orthorhombic": "mp-676861",  # AlSbO4, Cmmm
    "monoclinic": "mp-754326",  # NaAgO2, C2/m
}
TURN = Rotation.from_euler("zyx", [37, 23, 11], degrees=True).as_matrix()


def oxide(mp_id: str) -> Structure:
    data = json.loads((need_shared(OXI_DB) / "data" / f"{mp_id}.json").read_text())
    return Structure.from_dict(data["structure"])


def turned(structure: Structure, rotation: np.ndarray) -> Structure:
    return Structure(Lattice(structure.lattice.matrix @ rotation.T), structure.species, structure.frac_coords)


def spglib_operations(structure: Structure) -> int:
    cell = (structure.lattice.matrix, structure.frac_coords, [site.specie.Z for site in structure])
    return len(spglib.get_symmetry(cell, symprec=1e-3)["rotations"])


@pytest.mark.parametrize("system", list(ONE_PER_SYSTEM))
def test_pw_x_finds_every_operation_spglib_finds(system, tmp_path):
    structure = turned(oxide(ONE_PER_SYSTEM[system]), TURN)
    cell, _ = standard_frame(structure)
    settings = preset("test", {"kspacing": 1.0, "electron_maxstep": 1, "ecutwfc": 20})
    text = pw_input(cell, "scf", settings, load_family(need_shared(PSEUDOS)), "sym", tmp_path / "out", None)
    (tmp_path / "in").write_text(text)
    log = subprocess.run(["pw.x", "-in", "in"], cwd=tmp_path, capture_output=True, text=True, timeout=300).stdout
    expected = spglib_operations(structure)
    assert symmetry_operations(log) == expected, (system, log[-2000:])
    assert expected == spglib_operations(cell)


def test_tensors_go_back_to_the_users_frame():
    """R takes the user's Cartesian frame to the standard one: the standard cell is the user's cell turned by R
    (an integer change of basis apart), and a tensor computed there comes back as R^T T R, the same physical
    tensor whichever way the user's file was turned."""
    wurtzite = oxide("mp-2133")
    _, plain = standard_frame(wurtzite)
    cell, rotation = standard_frame(turned(wurtzite, TURN))
    basis = cell.lattice.matrix @ np.linalg.inv(turned(wurtzite, TURN).lattice.matrix @ rotation.T)
    assert np.allclose(basis, np.round(basis), atol=1e-6)
    computed = np.diag([4.1, 4.1, 5.3])  # ε∞ of a uniaxial crystal, c along z in the standard frame
    in_plain, in_turned = to_input_frame(computed, plain), to_input_frame(computed, rotation)
    assert np.allclose(in_turned, TURN @ in_plain @ TURN.T)
    assert np.allclose(np.linalg.eigvalsh(in_turned), [4.1, 4.1, 5.3])
    c_axis = turned(wurtzite, TURN).lattice.matrix[2] / turned(wurtzite, TURN).lattice.c
    assert c_axis @ in_turned @ c_axis == pytest.approx(5.3)  # the extraordinary axis is the user's c axis
    born = np.stack([computed, -computed])
    assert np.allclose(to_input_frame(born, rotation)[1], -in_turned)
