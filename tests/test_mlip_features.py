"""Descriptors from the pretrained CHGNet potential, run for real on oxides of the published database."""

import json
import sys

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from tansaku import TansakuError
from tansaku.features import mlip
from tansaku.features.sets import feature_names, raw_features, raw_features_each
from tansaku.sources.generate import Prototype, parse_site_elements, substitute
from tansaku.sources.relax import relax_candidates
from tests.cells import fluorite
from tests.conftest import OXI_DB, need_shared

ROCK_SALTS = {"MgO": "mp-1265", "CaO": "mp-2605", "SrO": "mp-2472", "BaO": "mp-1342"}  # ε_ion 6.8, 12, 16, 62


def published(mp_id: str) -> Structure:
    data = json.loads((need_shared(OXI_DB) / "data" / f"{mp_id}.json").read_text())
    return Structure.from_dict(data["structure"])


@pytest.fixture(scope="module")
def rock_salts() -> dict[str, np.ndarray]:
    rows = mlip.mlip_descriptors([published(mp_id) for mp_id in ROCK_SALTS.values()])
    return dict(zip(ROCK_SALTS, rows, strict=True))


def column(name: str) -> int:
    return mlip.names().index(name)


def test_polar_stiffness_falls_as_the_ionic_dielectric_constant_rises_down_the_alkaline_earths(rock_salts):
    stiffness = [rock_salts[formula][column("polar_stiffness_min")] for formula in ROCK_SALTS]
    softness = [rock_salts[formula][column("polar_softness_max_log10")] for formula in ROCK_SALTS]
    assert stiffness == sorted(stiffness, reverse=True) and stiffness[0] > 1.5 * stiffness[2]
    assert min(stiffness[:3]) > 0  # stable cells: the polar pattern costs energy
    assert softness[-1] == max(softness) and softness[-1] > softness[0] + 1  # BaO's ε_ion is 9× MgO's
    for row in rock_salts.values():  # cubic: the three field directions agree
        assert row[column("polar_stiffness_min")] == pytest.approx(row[column("polar_stiffness_mean")], rel=1e-2)


def test_rows_are_finite_and_do_not_depend_on_site_order_or_origin(rock_salts):
    mgo = published("mp-1265")
    assert all(len(row) == len(mlip.names()) and np.isfinite(row).all() for row in rock_salts.values())
    moved = Structure(mgo.lattice, mgo.species[::-1], mgo.cart_coords[::-1] + 0.37, coords_are_cartesian=True)
    again = mlip.mlip_descriptors([moved])[0]
    assert again == pytest.approx(rock_salts["MgO"], rel=1e-3, abs=1e-4)
    assert not np.allclose(rock_salts["MgO"], rock_salts["BaO"])


def test_the_chgnet_block_joins_the_structure_set_and_refuses_what_it_cannot_read():
    names, start = feature_names("structure+chgnet+ions"), len(feature_names("structure"))
    assert names[start : start + len(mlip.names())] == mlip.names() and names[-1].startswith("ion_fraction:")
    mgo = published("mp-1265")
    X = raw_features([mgo], "structure+chgnet")
    assert X.shape == (1, len(feature_names("structure+chgnet")))
    with pytest.raises(TansakuError, match="chgnet descriptors read crystal structures: use --features structure"):
        feature_names("composition+chgnet")
    with pytest.raises(TansakuError, match="chgnet descriptors read crystal structures"):  # once, not per item
        raw_features_each([mgo, mgo], "composition+chgnet")
    disordered = Structure(Lattice.cubic(4.2), [{"Mg": 0.5, "Ca": 0.5}, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(TansakuError, match="Ca0.5Mg0.5O1: disordered or partially occupied structure"):
        mlip.mlip_descriptors([disordered])
    with pytest.raises(TansakuError, match="CHGNet needs pymatgen Structures"):
        mlip.mlip_descriptors(["MgO"])
    americium = fluorite(5.38, "Am", "O")
    with pytest.raises(TansakuError, match="AmO2: CHGNet was trained on elements up to Pu .* cannot read Am"):
        mlip.mlip_descriptors([americium])


def test_without_chgnet_installed_the_block_says_what_to_install(monkeypatch):
    # the package itself missing is the case to show; None in sys.modules makes its import fail as if it were
    monkeypatch.setitem(sys.modules, "chgnet.model", None)
    mlip.potential.cache_clear()
    try:
        with pytest.raises(TansakuError, match=r"need CHGNet and PyTorch: pip install 'tansaku\[mlip\]'"):
            mlip.mlip_descriptors([published("mp-1265")])
        candidates, _ = substitute([Prototype("MgO", published("mp-1265"))], parse_site_elements("Mg=Ca,Sr"))
        with pytest.raises(TansakuError, match="need CHGNet and PyTorch"):  # once, not a refusal per candidate
            relax_candidates(candidates)
    finally:
        mlip.potential.cache_clear()


def test_a_cell_chgnet_finds_unrelaxed_is_flagged_and_relaxed_ones_are_not(rock_salts):
    """The domain of a model with the CHGNet block knows the force and pressure of its (relaxed) training cells:
    MgO squeezed by 6 % in volume is called unrelaxed, naming the pressure; the database's own cells are not;
    a model without the block says nothing of it."""
    from tansaku.features.sets import base_columns, feature_names, raw_features, strain_columns
    from tansaku.models.domain import Domain

    structures = [published(mp_id) for mp_id in ROCK_SALTS.values()]
    squeezed = published("mp-1265")
    squeezed.scale_lattice(squeezed.volume * 0.94)
    X = raw_features(structures + [squeezed], "structure+chgnet")
    strain = strain_columns(X, "structure+chgnet")
    assert strain.shape == (5, 2) and strain_columns(X[:, : len(feature_names("structure"))], "structure") is None
    pressure = X[-1, feature_names("structure+chgnet").index("mlip_pressure")]
    assert abs(pressure) > 3 and strain[-1, 1] == pytest.approx(abs(pressure))  # GPa (CHGNet's stress sign)
    domain = Domain.fit(list(ROCK_SALTS), base_columns(X[:4], "structure+chgnet"), strain=strain[:4])
    assert [domain.unrelaxed(row) for row in strain[:4]] == [[]] * 4
    [note] = domain.unrelaxed(strain[-1])
    assert note.startswith("CHGNet finds the cell unrelaxed") and f"|pressure| {abs(pressure):.1f} GPa" in note
    assert "generate substitute --relax" in note
    notes = domain.check(["MgO"] * 5, base_columns(X, "structure+chgnet"), strain)
    assert notes[-1][-1] == note and not any("unrelaxed" in n for row in notes[:4] for n in row)
    plain = Domain.fit(list(ROCK_SALTS), base_columns(X[:4], "structure"))
    assert plain.strain_limits is None and plain.unrelaxed(strain[-1]) == []


def test_loading_chgnet_writes_nothing_to_standard_output(capfd):
    # `tansaku predict ... > out.csv` with a CHGNet model: the potential's banner would land in the user's table
    mlip.potential.cache_clear()
    try:
        assert mlip.potential() is not None
        assert capfd.readouterr().out == ""
    finally:
        mlip.potential.cache_clear()


def test_a_relaxed_candidate_keeps_its_prototypes_space_group():
    """TlSbO2 in the α-NaFeO2 type of NaScO2 (R-3m, 12 operations): CHGNet relaxing it freely leaves it Cm even at
    0.01 Å, so pw.x would see 2 operations and relax it in Cm; kept, it is R-3m at the DFT workflow's 1e-3 Å."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    candidates, refused = substitute([Prototype("NaScO2", published("mp-7914"))], parse_site_elements("A=Tl;B=Sb"))
    assert [c.formula for c in candidates] == ["TlSbO2"] and not refused
    assert relax_candidates(candidates) == []
    [relaxed] = candidates
    assert relaxed.relaxation["relax_converged"] and relaxed.relaxation["relax_volume_change"] > 0.1
    assert SpacegroupAnalyzer(relaxed.structure, symprec=1e-3).get_space_group_symbol() == "R-3m"
    assert relaxed.relaxation["relax_space_group"] == "R-3m"
