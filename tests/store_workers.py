"""Worker functions run in separate processes by the concurrency tests and the store benchmark."""

from __future__ import annotations

import time

from tansaku.store import open_database
from tansaku.store.materials import set_property
from tansaku.store.rows import get_or_create
from tansaku.store.tables import Calculation, Material


def write_materials(url: str, worker: int, count: int) -> int:
    """What a workflow does per material: the material, a calculation row and three properties, one transaction
    per material. Returns the rows written."""
    db = open_database(url)
    for i in range(count):
        with db.session() as session:
            material = Material(formula="MgO", reduced_formula="MgO", elements="Mg,O", nelements=2,
                                source="concurrency", source_id=f"w{worker}-{i}")
            session.add(material)
            session.flush()
            calc = get_or_create(session, Calculation, {"engine": "qe"}, material_id=material.id,
                                 workflow="dielectric", step="analysis", preset="test")
            calc.status, calc.outputs = "done", {"worker": worker}
            session.flush()
            for name, value in (("band_gap", 4.5), ("eps_electronic", 3.1), ("eps_ionic", 9.8)):
                set_property(session, material, name, value, "dft:qe", calculation_id=calc.id)
    db.dispose()
    return 5 * count


def finish_calculation(url: str, material_id: int, step: str, worker: int, barrier, hold: float = 0.3) -> str:
    """Two of these at once on the same (material, step): both must succeed, leaving one row."""
    db = open_database(url)
    barrier.wait()
    with db.session() as session:
        material = session.get(Material, material_id)
        calc = get_or_create(session, Calculation, {"engine": "qe"}, material_id=material_id,
                             workflow="dielectric", step=step, preset="test")
        time.sleep(hold)  # keep the transaction open while the other process tries the same row
        calc.status, calc.outputs = "done", {"finished_by": worker}
        session.flush()
        set_property(session, material, f"gap_{step}", 1.0 + worker, "dft:qe", calculation_id=calc.id)
    db.dispose()
    return "ok"
