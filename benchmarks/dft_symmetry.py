"""Symmetry pw.x finds, and the irreducible k-points it then needs, in the cell tansaku gave it before and now
(issue 34, item 1).

Before: pymatgen's Setyawan-Curtarolo primitive cell. Now: spglib's standardized primitive cell
(`dft.settings.standard_frame`). Standard preset (0.25 Å⁻¹ mesh). pw.x is stopped once it has printed its
symmetry and k-point count (the count is what each SCF iteration, the relaxation and ph.x pay for).

Run: .venv/bin/python benchmarks/dft_symmetry.py
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import spglib

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pymatgen.core import Structure  # noqa: E402
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer  # noqa: E402

from _common import SHARED, no_options, shared_pseudos, write_results  # noqa: E402
from tansaku.dft.qe.inputs import pw_input  # noqa: E402
from tansaku.dft.qe.parsers import symmetry_operations  # noqa: E402
from tansaku.dft.settings import kmesh, preset, standard_frame  # noqa: E402

OXIDES = {"mp-1265": "MgO", "mp-2133": "ZnO", "mp-5175": "NaInO2", "mp-1143": "Al2O3", "mp-856": "SnO2",
          "mp-676861": "AlSbO4", "mp-754326": "NaAgO2"}


def header(cell: Structure, directory: Path) -> tuple[int | None, int | None]:
    """(symmetry operations, irreducible k-points) as pw.x reports them."""
    settings = preset("standard", {"electron_maxstep": 1})
    pseudos = shared_pseudos()
    directory.mkdir(parents=True)
    (directory / "scf.in").write_text(pw_input(cell, "scf", settings, pseudos, "x", directory / "out", None))
    try:
        out = subprocess.run(["pw.x", "-in", "scf.in"], cwd=directory, capture_output=True, text=True,
                             timeout=60).stdout
    except subprocess.TimeoutExpired as expired:  # the header is printed within seconds
        out = (expired.stdout or b"").decode() if isinstance(expired.stdout, bytes) else expired.stdout or ""
    match = re.search(r"number of k points=\s*(\d+)", out)
    return symmetry_operations(out), int(match.group(1)) if match else None


def main() -> None:
    no_options(__doc__)
    work = Path(tempfile.mkdtemp(prefix="dft-symmetry-"))
    rows = []
    for mp_id, formula in OXIDES.items():
        data = json.loads((SHARED / "datasets" / "oxi_diel_db" / "data" / f"{mp_id}.json").read_text())
        structure = Structure.from_dict(data["structure"])
        cell = (structure.lattice.matrix, structure.frac_coords, [site.specie.Z for site in structure])
        expected = len(spglib.get_symmetry(cell, symprec=1e-3)["rotations"])
        before = SpacegroupAnalyzer(structure, symprec=1e-3).get_primitive_standard_structure()
        now, _ = standard_frame(structure)
        ops_before, k_before = header(before, work / mp_id / "before")
        ops_now, k_now = header(now, work / mp_id / "now")
        rows.append({"id": mp_id, "formula": formula, "spacegroup": data["spacegroup"]["symbol"], "spglib": expected,
                     "ops_before": ops_before, "k_before": k_before, "ops_now": ops_now, "k_now": k_now,
                     "mesh": list(kmesh(now, preset("standard").kspacing))})
        print(rows[-1], flush=True)
    lines = ["# Symmetry pw.x finds and the k-points it needs: the cell given before and now", "",
             "Standard preset. Before: pymatgen's Setyawan-Curtarolo primitive cell; now: spglib's standardized "
             "primitive cell (c along z for hexagonal and trigonal lattices).", "",
             "| oxide | space group | operations (spglib) | pw.x before | pw.x now | k-points before | k-points now |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['formula']} ({r['id']}) | {r['spacegroup']} | {r['spglib']} | {r['ops_before']} | {r['ops_now']} | "
              f"{r['k_before']} | {r['k_now']} |" for r in rows]
    write_results("dft_symmetry", {"rows": rows}, "\n".join(lines))


if __name__ == "__main__":
    main()
