"""Several processes writing one database at once: no lost row, no duplicate, no 'database is locked'."""

import multiprocessing

from sqlalchemy import func, select

from tansaku.store import open_database
from tansaku.store.tables import Calculation, Material, Property
from tests.store_workers import finish_calculation, write_materials


def test_eight_writers_lose_nothing(backend_url):
    open_database(backend_url).dispose()  # schema first, as a real campaign does
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(8) as pool:
        written = pool.starmap(write_materials, [(backend_url, w, 15) for w in range(8)])
    assert written == [75] * 8
    db = open_database(backend_url)
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Material)) == 120
        assert session.scalar(select(func.count()).select_from(Calculation)) == 120
        assert session.scalar(select(func.count()).select_from(Property)) == 360
        ids = session.scalars(select(Material.source_id)).all()
    assert len(set(ids)) == 120
    db.dispose()


def test_two_processes_finishing_the_same_calculation_make_one_row(backend_url):
    db = open_database(backend_url)
    with db.session() as session:
        material = Material(formula="CaO", reduced_formula="CaO", elements="Ca,O", nelements=2,
                            source="concurrency", source_id="shared")
        session.add(material)
        session.flush()
        material_id = material.id
    ctx = multiprocessing.get_context("spawn")
    steps = ["relax", "scf", "phonon"]
    for step in steps:
        barrier = ctx.Manager().Barrier(2)
        with ctx.Pool(2) as pool:
            results = pool.starmap(finish_calculation, [(backend_url, material_id, step, w, barrier)
                                                        for w in range(2)])
        assert results == ["ok", "ok"]
    with db.session() as session:
        calcs = session.scalars(select(Calculation).where(Calculation.material_id == material_id)).all()
        props = session.scalars(select(Property).where(Property.material_id == material_id)).all()
    assert sorted(c.step for c in calcs) == sorted(steps)  # one row per step, not two
    assert all(c.status == "done" and c.outputs["finished_by"] in (0, 1) for c in calcs)
    assert sorted(p.name for p in props) == sorted(f"gap_{s}" for s in steps)
    db.dispose()
